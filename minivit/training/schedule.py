"""The learning rate of every step: a linear warmup, then a cosine decay, over the run's epochs.

    schedule = Schedule.for_run(config, steps_per_epoch)
    lr = schedule.learning_rate(step, elapsed)

With a time budget the schedule runs on the clock: the run is as far along the schedule as
the larger of its share of the steps done and its share of the budget spent (validation
included). The whole warmup and decay then fit into the budget, and the rate reaches its
minimum as the budget runs out, whatever the pace of the machine; without a budget the steps
alone decide, so resumed runs repeat exactly.

A warmup longer than half the run is cut to half (here, once, and said in a note).
The shape itself is ``minivit.optim.warmup_cosine`` (lesson 8 writes it).
"""

from __future__ import annotations

from dataclasses import dataclass

from minivit.optim import warmup_cosine


@dataclass(frozen=True)
class Schedule:
    """Warmup to ``peak_lr`` over ``warmup_steps``, then cosine to ``min_lr`` at ``total_steps``."""

    total_steps: int
    warmup_steps: int  # at most half of total_steps
    peak_lr: float
    min_lr: float
    time_budget: float | None = None  # seconds: the schedule follows the clock

    @classmethod
    def for_run(cls, config, steps_per_epoch: int) -> tuple[Schedule, str | None]:
        """The schedule of a TrainConfig's run, and a note if its warmup had to be cut (else None)."""
        total_steps = config.epochs * steps_per_epoch
        warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
        note = None
        if warmup_steps > total_steps // 2:  # the note names no flag: the value may come from a recipe
            note = (f"note: a warmup of {config.warmup_epochs:g} epochs is more than half of this run's "
                    f"{config.epochs} epochs: the warmup is cut to {total_steps // 2} steps, half the schedule.")
            warmup_steps = total_steps // 2
        return cls(total_steps, warmup_steps, config.lr, config.min_lr, config.time_budget), note

    def position(self, step: int, elapsed: float) -> float:
        """How far along the schedule the run is, in steps (fractional on the clock)."""
        if self.time_budget:
            return max(step, elapsed / self.time_budget * self.total_steps)
        return step

    def learning_rate(self, step: int, elapsed: float = 0.0) -> float:
        rate = warmup_cosine(self.position(step, elapsed), self.total_steps, self.warmup_steps, self.peak_lr,
                             self.min_lr)
        # warmup_cosine's warmup gives lr * (step + 1) / warmup_steps, which passes the peak between the
        # last warmup step and the cosine's start when the position is fractional (the clock's)
        return min(rate, self.peak_lr)

    def warmup_done(self, step: int, elapsed: float) -> bool:
        return self.position(step, elapsed) >= self.warmup_steps
