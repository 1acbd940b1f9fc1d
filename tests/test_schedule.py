"""The learning-rate schedule (minivit.training.schedule): warmup, cosine, the clock, the warmup cut once."""

import pytest

from minivit.training.options import TrainConfig
from minivit.training.schedule import Schedule


def test_a_warmup_longer_than_half_the_run_is_cut_once_and_said():
    schedule, note = Schedule.for_run(TrainConfig(epochs=4, warmup_epochs=3, lr=1e-3, min_lr=0.0), steps_per_epoch=10)
    assert (schedule.total_steps, schedule.warmup_steps) == (40, 20)
    assert "cut to 20 steps" in note and "--" not in note  # no flag: the value may come from a recipe
    assert schedule.learning_rate(19) == pytest.approx(1e-3)  # the last warmup step reaches the peak
    assert schedule.learning_rate(30) == pytest.approx(0.5e-3)  # halfway down the cosine
    schedule, note = Schedule.for_run(TrainConfig(epochs=4, warmup_epochs=1), steps_per_epoch=10)
    assert note is None and schedule.warmup_steps == 10


def test_on_the_clock_the_schedule_is_as_far_along_as_the_budget_spent():
    schedule, _ = Schedule.for_run(TrainConfig(epochs=100, warmup_epochs=10, lr=2e-3, min_lr=0.0,
                                               time_budget=100.0), steps_per_epoch=4)
    assert schedule.position(3, 50.0) == 200 and schedule.position(300, 50.0) == 300
    assert schedule.learning_rate(0, 5.0) == pytest.approx(2e-3 * 21 / 40)  # the warmup, half done on the clock
    assert schedule.learning_rate(0, 100.0) == pytest.approx(0.0, abs=1e-12)  # the budget spent: the end
    assert not schedule.warmup_done(0, 9.0) and schedule.warmup_done(0, 10.0)
