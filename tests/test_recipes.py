"""What pays in short runs (issue 26): the moving average of the weights, flip test-time augmentation,
mean pooling from the command line, mixing that stops before the end, a schedule that ends at zero
with the budget, and the recipe that follows the budget. Tiny generated data; no timing."""

import itertools
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from synthetic_data import write_image_folder
from tiny_runs import TINY_MODEL, tiny_config

import minivit
from minivit import backend
from minivit.augment import AugmentConfig, augment_batch
from minivit.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, read_ema_weights
from minivit.cli import UsageError
from minivit.ema import WeightAverage
from minivit.evaluate import evaluate_model
from minivit.evaluate import main as evaluate_main
from minivit.train import TrainConfig, Trainer, config_from_args, train
from minivit.training import budget_recipe
from minivit.training import randomness as randomness_module
from minivit.training import trainer as trainer_module
from minivit.training.schedule import Schedule

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"  # the scripts some tests import


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=16, size=8)


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def fake_clock(monkeypatch):
    """The trainer's time.perf_counter advancing 10 ms per call: the clock-driven schedule without timing
    anything. Only the trainer's clock: other modules' calls (matplotlib's, the first time it draws in a
    process) would otherwise move it by an amount that depends on the tests run before."""
    ticks = itertools.count()
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks) * 0.01))


# --- the moving average of the weights -----------------------------------------------------------

def test_weight_average_follows_its_formula():
    """average = d_t average + (1 - d_t) w, with d_t = min(decay, (1 + t) / (10 + t)): exact in float32."""
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY_MODEL))
    ema = WeightAverage(model.flat, model.flat.data, decay=0.9)
    expected = model.flat.data.astype(np.float64)
    for t in range(30):
        model.flat.data[...] += np.float32(0.01 * (t + 1))
        decay = min(0.9, (1 + t) / (10 + t))
        assert ema.current_decay() == decay
        ema.update()
        expected = decay * expected + (1 - decay) * model.flat.data
    assert ema.updates == 30
    np.testing.assert_allclose(ema.average, expected, rtol=1e-5, atol=1e-6)  # float32 rounding over 30 updates
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(model.flat, model.flat.data, decay=1.0)


def test_weight_average_swaps_into_the_model_and_back():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY_MODEL))
    ema = WeightAverage(model.flat, model.flat.data, decay=0.99)
    own = model.flat.data.copy()
    ema.average[...] = 0.5
    with ema.in_model(model):
        assert (model.flat.data == 0.5).all()
    np.testing.assert_array_equal(model.flat.data, own)
    assert sorted(ema.state_dict()) == sorted(model.state_dict())


def test_ema_is_validated_and_checkpointed_beside_the_weights(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "run", ema=0.9))
    last = rows(tmp_path / "run" / "metrics.jsonl")[-1]
    assert 0 <= last["ema_val_accuracy"] <= 1 and "ema_val_loss" in last
    path = tmp_path / "run" / "checkpoint-last.npz"
    raw, ema = read_checkpoint(path)[1], read_ema_weights(path)
    assert sorted(raw) == sorted(ema)
    assert any(not np.array_equal(raw[name], ema[name]) for name in raw)  # two sets of weights
    model = load_checkpoint(path, weights="ema")
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, ema[name])
    # the validation logged for the EMA is the EMA checkpoint's, evaluated afresh
    trainer = Trainer(tiny_config(data_dir, tmp_path / "again", ema=0.9))
    val = evaluate_model(model, trainer.val_set.images, trainer.val_set.labels, trainer.mean, trainer.std)
    assert val["accuracy"] == last["ema_val_accuracy"]
    trainer.run_folder.release()


def test_ema_resumes_exactly(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "straight", ema=0.9))
    train(tiny_config(data_dir, tmp_path / "resumed", ema=0.9, max_steps=5))
    train(tiny_config(data_dir, tmp_path / "resumed", ema=0.9), resume=True)
    straight = read_ema_weights(tmp_path / "straight" / "checkpoint-last.npz")
    resumed = read_ema_weights(tmp_path / "resumed" / "checkpoint-last.npz")
    for name in straight:
        np.testing.assert_array_equal(straight[name], resumed[name], err_msg=name)


def test_resume_refuses_a_moving_average_that_is_not_finite(data_dir, tmp_path):
    """The average is read with the weights, in the same read, and checked before any step."""
    train(tiny_config(data_dir, tmp_path / "run", ema=0.9, max_steps=2))
    path = tmp_path / "run" / "checkpoint-last.npz"
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["ema/classifier.weight"][0, 0] = np.nan
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=r"non-finite values \(ema/classifier\.weight\).*cannot be continued"):
        train(tiny_config(data_dir, tmp_path / "run", ema=0.9), resume=True)
    assert read_checkpoint(path)[0]["step"] == 2  # refused before any step: the checkpoint is as it was
    assert [row["step"] for row in map(json.loads, (tmp_path / "run" / "steps.jsonl").read_text().splitlines())] \
        == [1, 2]


def test_evaluate_uses_either_weights_and_says_when_there_is_no_average(data_dir, tmp_path, capsys):
    train(tiny_config(data_dir, tmp_path / "plain", epochs=1))
    train(tiny_config(data_dir, tmp_path / "ema", epochs=1, ema=0.9))
    common = ["--data-dir", str(data_dir), "--json", "--figure", str(tmp_path / "confusion.png"), "--overwrite"]
    assert evaluate_main(["--checkpoint", str(tmp_path / "ema" / "checkpoint-last.npz"), "--weights", "ema",
                          *common]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == "ema"
    assert evaluate_main(["--checkpoint", str(tmp_path / "plain" / "checkpoint-last.npz"), "--weights", "ema",
                          *common]) != 0
    assert "trained without --ema" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="trained without --ema"):
        load_checkpoint(tmp_path / "plain" / "checkpoint-last.npz", weights="ema")


# --- flip test-time augmentation ---------------------------------------------------------------------

def test_tta_averages_the_logits_of_each_image_and_its_mirror():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**{**TINY_MODEL, "hidden_dropout_prob": 0.0,
                                                                   "attention_probs_dropout_prob": 0.0}))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 3, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 3, 10)
    mean, std = np.full(3, 0.5, np.float32), np.full(3, 0.25, np.float32)
    result = evaluate_model(model, images, labels, mean, std, batch_size=4, tta=True)
    pixels = ((images / 255.0 - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
    model.eval()
    with minivit.no_grad():
        logits = 0.5 * (model.forward(pixels) + model.forward(np.ascontiguousarray(pixels[..., ::-1])))
    np.testing.assert_array_equal(result["predictions"], logits.argmax(axis=1))
    # a mirror-symmetric image is its own mirror: TTA changes nothing
    symmetric = np.concatenate([images[..., :4], images[..., :4][..., ::-1]], axis=-1)
    plain = evaluate_model(model, symmetric, labels, mean, std)
    flipped = evaluate_model(model, symmetric, labels, mean, std, tta=True)
    assert flipped["loss"] == pytest.approx(plain["loss"], rel=1e-5)


def test_the_trainer_uses_tta_for_its_test_evaluations_only_when_asked(data_dir, tmp_path):
    for tta in (False, True):
        out = tmp_path / f"tta-{tta}"
        train(tiny_config(data_dir, out, epochs=2, test_every_epoch=True, tta=tta))
        last = rows(out / "metrics.jsonl")[-1]
        model = load_checkpoint(out / "checkpoint-last.npz")
        test = minivit.data.load_split(data_dir, "test", image_size=8)
        meta = model.checkpoint_meta
        expected = evaluate_model(model, test.images, test.labels, np.array(meta["mean"], np.float32),
                                  np.array(meta["std"], np.float32), tta=tta)
        assert last["test_loss"] == pytest.approx(expected["loss"], rel=1e-6)


# --- mean pooling, reachable from the command line ---------------------------------------------------

def test_mean_pooling_is_a_command_line_option(data_dir, tmp_path):
    config, _ = config_from_args(["--pooling", "mean", "--data-dir", str(data_dir), "--out", str(tmp_path / "run")])
    assert config.model == {"pooling": "mean"} and config.model_config().pooling == "mean"
    train(tiny_config(data_dir, tmp_path / "run", epochs=1, model={**TINY_MODEL, "pooling": "mean"}))
    assert load_checkpoint(tmp_path / "run" / "checkpoint-last.npz").config.pooling == "mean"


def test_position_embeddings_off_is_a_command_line_option(data_dir, tmp_path):
    config, _ = config_from_args(["--position-embedding-type", "none", "--data-dir", str(data_dir),
                                  "--out", str(tmp_path / "run")])
    assert config.model == {"position_embedding_type": "none"}
    train(tiny_config(data_dir, tmp_path / "run", epochs=1, model={**TINY_MODEL, "position_embedding_type": "none"}))
    model = load_checkpoint(tmp_path / "run" / "checkpoint-last.npz")
    assert model.config.position_embedding_type == "none" and model.embeddings.position_embeddings is None
    with pytest.raises(UsageError, match="--position-embedding-type: invalid choice: 'sincos'"):
        config_from_args(["--position-embedding-type", "sincos"])


# --- mixup and cutmix that stop before the end ---------------------------------------------------

def test_augment_batch_leaves_mixing_out_when_told():
    rng, host_rng = backend.default_rng(0), np.random.default_rng(0)
    images = np.zeros((4, 3, 8, 8), np.uint8)
    labels = np.array([0, 1, 2, 0])
    config = AugmentConfig(mixup_alpha=0.8, cutmix_alpha=1.0)
    mean, std = np.zeros(3, np.float32), np.ones(3, np.float32)
    _, mixed = augment_batch(images, labels, config, mean, std, 3, rng, host_rng)
    _, unmixed = augment_batch(images, labels, config, mean, std, 3, rng, host_rng, mix=False)
    assert mixed.shape == (4, 3) and unmixed.shape == (4,)


def test_mixing_stops_at_its_share_of_the_schedule(data_dir, tmp_path, monkeypatch):
    seen = []

    def recording(*args, mix=True, **kwargs):
        seen.append(mix)
        return augment_batch(*args, mix=mix, **kwargs)

    monkeypatch.setattr(randomness_module, "augment_batch", recording)
    train(tiny_config(data_dir, tmp_path / "run", epochs=2, mixing_stops_at=0.75,
                      augment=AugmentConfig(mixup_alpha=0.8, cutmix_alpha=1.0)))
    assert seen == [True] * 6 + [False] * 2  # 8 steps; the last quarter unmixed


# --- a schedule that ends at zero as the budget runs out --------------------------------------------

def test_with_min_lr_0_the_last_step_of_a_budget_takes_almost_no_step(data_dir, tmp_path, fake_clock):
    result = train(tiny_config(data_dir, tmp_path / "run", epochs=1000, time_budget=3.0, min_lr=0.0))
    assert result["stop_reason"] == "time budget spent"
    rates = [row["lr"] for row in rows(tmp_path / "run" / "steps.jsonl")]
    assert len(rates) > 20 and max(rates) == pytest.approx(3e-3, rel=0.05)
    assert rates[-1] < 0.01 * 3e-3  # the cosine's last hundredth: (pi x share left)^2 / 4 of the peak
    meta = read_checkpoint(tmp_path / "run" / "checkpoint-last.npz")[0]
    position = max(meta["step"], meta["elapsed"] / 3.0 * 4000)
    assert minivit.optim.warmup_cosine(position, 4000, 4, 3e-3, 0.0) == pytest.approx(0.0, abs=1e-12)


def test_the_first_steps_one_time_costs_are_not_on_the_schedules_clock(data_dir, tmp_path, monkeypatch):
    """The H200's cifar-gpu run spent 5.7 s in its first step (kernels built for its own shapes): on
    the clock, a 15-s warmup was three quarters done before the second step. The clock starts after
    the first step, so a slow first step leaves the warmup to the steps that follow it."""
    ticks, offset = itertools.count(), [0.0]
    monkeypatch.setattr(trainer_module, "time",
                        types.SimpleNamespace(perf_counter=lambda: next(ticks) * 0.01 + offset[0]))
    original_step = Trainer.train_step

    def first_step_compiles(self):
        if self.step == 0:
            offset[0] += 30.0  # 30 s of a 100-s budget, where the warmup is 10 s
        return original_step(self)

    monkeypatch.setattr(Trainer, "train_step", first_step_compiles)
    train(tiny_config(data_dir, tmp_path / "run", epochs=1000, warmup_epochs=100, time_budget=100.0, max_steps=3))
    rates = [row["lr"] for row in rows(tmp_path / "run" / "steps.jsonl")]
    assert rates[0] == pytest.approx(3e-3 / 400)  # warmup step 0 of 400
    assert rates[1] < 0.05 * 3e-3  # with the 30 s on the clock: the peak, 3e-3


# --- the recipe that follows the budget ----------------------------------------------------------------

@pytest.mark.parametrize("epochs, crop, randaugment, magnitude, cutmix, stops", [
    (5, 0, 0, None, 0.0, 1.0), (16.5, 0, 0, None, 0.0, 1.0), (21.2, 0, 0, None, 0.0, 1.0), (26, 4, 0, None, 0.0, 1.0),
    (45, 4, 0, None, 0.0, 1.0), (65, 4, 2, 5.0, 0.0, 1.0), (150, 4, 2, 5.0, 0.0, 1.0),
    (240, 4, 2, 9.0, 1.0, 0.9)])
def test_the_epochs_choose_the_row(epochs, crop, randaugment, magnitude, cutmix, stops):
    config = TrainConfig(epochs=100, budget_recipe=True, time_budget=600)
    choice = budget_recipe.choose(epochs, 1000.0, config)
    chosen = budget_recipe.apply(config, choice)
    assert chosen.augment.crop_padding == crop and chosen.augment.randaugment_ops == randaugment
    if magnitude is not None:
        assert chosen.augment.randaugment_magnitude == magnitude
    assert chosen.augment.cutmix_alpha == cutmix and chosen.augment.mixup_alpha == 0.0
    assert chosen.mixing_stops_at == stops and chosen.min_lr == 0.0 and chosen.label_smoothing == 0.1
    schedule_epochs = max(100, math.ceil(2 * epochs))  # lengthened where the budget allows over half of 100
    assert chosen.epochs == schedule_epochs and ("epochs" in choice["chose"]) == (schedule_epochs > 100)
    assert chosen.warmup_epochs == pytest.approx((0.1 if epochs >= 200 else 0.05) * schedule_epochs)
    assert chosen.budget_choice == choice and choice["epochs"] == epochs
    assert chosen.lr == pytest.approx(config.lr * (0.5 if epochs < 25 else 1.0))


def test_the_few_epochs_row_halves_the_recipes_own_rate_unless_the_rate_was_given():
    """Round 3 of benchmarks/results/cpu-recipe-sweep.md: at 16 epochs --lr 1e-3 beat cifar-cpu's 2e-3."""
    for preset in ("cifar-cpu", "cifar-gpu", "cifar-tiny"):
        config, _ = config_from_args(["--preset", preset, "--time-budget", "600"])
        lr = config.lr  # the recipe's own rate (2e-3 for cifar-cpu, the rate round 3 halved)
        chosen = budget_recipe.apply(config, budget_recipe.choose(16, 1000.0, config))
        assert chosen.lr == pytest.approx(lr / 2) and chosen.budget_choice["chose"]["lr"] == pytest.approx(lr / 2)
        assert budget_recipe.apply(config, budget_recipe.choose(29, 1000.0, config)).lr == lr
    config, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "600", "--lr", "3e-3"])
    choice = budget_recipe.choose(16, 1000.0, config)
    assert budget_recipe.apply(config, choice).lr == 3e-3 and choice["kept"]["lr"] == 3e-3
    assert "lr" not in choice["chose"]
    # not below a --min-lr the user gave: the cosine still ends at or under the peak, and the run resumes
    config, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "600", "--min-lr", "1.5e-3"])
    chosen = budget_recipe.apply(config, budget_recipe.choose(16, 1000.0, config))
    assert chosen.lr == 1.5e-3 and chosen.min_lr == 1.5e-3
    chosen.validate()
    # the choice holds the rate itself, so applying it again (a resumed run) does not halve it twice
    config, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "600"])
    once = budget_recipe.apply(config, budget_recipe.choose(16, 1000.0, config))
    assert budget_recipe.apply(once, once.budget_choice).lr == pytest.approx(1e-3)


def test_every_row_cites_its_evidence_and_the_rows_cover_every_count():
    assert [row.below_epochs for row in budget_recipe.ROWS] == sorted(row.below_epochs for row in budget_recipe.ROWS)
    assert budget_recipe.ROWS[-1].below_epochs == float("inf")
    for row in budget_recipe.ROWS:
        assert "benchmarks/results/" in row.evidence or "omihub777/ViT-CIFAR" in row.evidence \
            or "Small-Size Datasets" in row.evidence, row.name


def test_options_the_user_gave_win():
    config, _ = config_from_args(["--preset", "cifar-cpu", "--crop-padding", "2", "--label-smoothing", "0.2",
                                  "--warmup-epochs", "3", "--time-budget", "600"])
    assert config.budget_recipe  # on in the cifar-cpu recipe
    assert {"augment.crop_padding", "label_smoothing", "warmup_epochs"} <= set(config.given_options)
    chosen = budget_recipe.apply(config, budget_recipe.choose(30, 2000.0, config))
    assert chosen.augment.crop_padding == 2 and chosen.label_smoothing == 0.2 and chosen.warmup_epochs == 3
    assert chosen.budget_choice["kept"] == {"augment.crop_padding": 2, "label_smoothing": 0.2, "warmup_epochs": 3}
    assert chosen.min_lr == 0.0  # not given: the row's


def test_a_budget_that_allows_more_than_the_recipes_epochs_lengthens_the_schedule():
    """Round 4 of benchmarks/results/cpu-recipe-sweep.md: an hour that allowed 144 epochs stopped at the recipe's
    100 after 56 minutes. The schedule becomes twice the estimate, so that the clock ends it, with its shares."""
    config, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "3600"])
    chosen = budget_recipe.apply(config, budget_recipe.choose(144, 1800.0, config))
    assert chosen.epochs == 288 and chosen.warmup_epochs == pytest.approx(0.05 * 288)
    schedule = Schedule.for_run(chosen, 100)[0]
    assert schedule.total_steps == 28_800 and schedule.warmup_steps == pytest.approx(0.05 * 28_800)
    assert budget_recipe.apply(config, budget_recipe.choose(45, 1800.0, config)).epochs == 100  # under half: kept
    # a warmup the user gave keeps its share of the schedule; epochs the user gave are kept as the cap
    config, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "3600", "--warmup-epochs", "10"])
    chosen = budget_recipe.apply(config, budget_recipe.choose(144, 1800.0, config))
    assert chosen.epochs == 288 and chosen.warmup_epochs == pytest.approx(28.8)
    assert not set(chosen.budget_choice["chose"]) & set(chosen.budget_choice["kept"])  # said once, as set
    config, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "3600", "--epochs", "120"])
    choice = budget_recipe.choose(144, 1800.0, config)
    assert "epochs" not in choice["chose"] and budget_recipe.apply(config, choice).epochs == 120


def test_the_message_says_what_was_chosen_and_why():
    config = TrainConfig(epochs=100, budget_recipe=True, time_budget=600, given_options=["label_smoothing"],
                         label_smoothing=0.2)
    text = budget_recipe.describe(budget_recipe.choose(16.47, 1235.0, config), 600)
    assert "1,235 images/s" in text and "about 16.47 epochs in 600 s" in text and "flips only" in text
    assert "crop_padding 0" in text and "as given: label_smoothing 0.2" in text and "warmup_epochs 5" in text
    assert f"lr {config.lr / 2:g}" in text and "half the rate" in text
    assert "why: benchmarks/results/cpu-recipe-sweep.md" in text and "--no-budget-recipe" in text


def test_the_pace_is_measured_after_two_steps_over_twenty():
    """Steps of 0.5 s each: 16 images/s at batch 8, measured from the end of step 2 to the end of step 22."""
    now = {"seconds": 0.0}

    def observe(meter, steps):
        results = []
        for step in steps:
            now["seconds"] = step * 0.5
            results.append(meter.observe(step))
        return results

    results = observe(budget_recipe.PaceMeter(start_step=0, batch_size=8, budget=1e6, clock=lambda: now["seconds"]),
                      range(1, 30))
    assert results[:21] == [None] * 21 and results[21] == pytest.approx(16.0)
    # a short budget: the window closes once it has taken 2% of the budget (2 s of 100 s: 4 steps)
    results = observe(budget_recipe.PaceMeter(start_step=10, batch_size=8, budget=100.0, clock=lambda: now["seconds"]),
                      range(11, 20))
    assert results[:5] == [None] * 5 and results[5] == pytest.approx(16.0)  # steps 11 to 15; step 16 decides
    # the ranks of a distributed run measure the same steps, whatever their clocks say
    results = observe(budget_recipe.PaceMeter(start_step=0, batch_size=8, budget=100.0, share=None,
                                              clock=lambda: now["seconds"]), range(1, 30))
    assert results.index(pytest.approx(16.0)) == 21


def test_the_pace_is_measured_over_at_least_a_hundredth_of_the_budget_up_to_ten_seconds():
    """Twenty fast steps are not enough: one slow second among them would decide the run's recipe."""
    now = {"seconds": 0.0}

    def first_result(meter, step_seconds):
        for step in range(1, 10_000):
            now["seconds"] = step * step_seconds(step)
            result = meter.observe(step)
            if result is not None:
                return step, result

    fast = budget_recipe.PaceMeter(start_step=0, batch_size=8, budget=600.0, clock=lambda: now["seconds"])
    assert first_result(fast, lambda step: 0.05) == (122, pytest.approx(160.0))  # 6 s of 600 s: 120 steps
    hour = budget_recipe.PaceMeter(start_step=0, batch_size=8, budget=3600.0, clock=lambda: now["seconds"])
    assert first_result(hour, lambda step: 0.05) == (202, pytest.approx(160.0))  # at most 10 s: 200 steps
    # one step of a second among steps of 0.05 s (160 images/s): twenty steps would say 82, ten seconds 145
    now["seconds"] = 0.0
    meter = budget_recipe.PaceMeter(start_step=0, batch_size=8, budget=3600.0, clock=lambda: now["seconds"])
    for step in range(1, 10_000):
        now["seconds"] += 1.0 if step == 5 else 0.05
        pace = meter.observe(step)
        if pace is not None:
            break
    assert 140 < pace < 150 and 8 * 20 / (1.0 + 19 * 0.05) < 83


class FixedCosts(budget_recipe.Costs):
    """Costs whose timings are given, not measured: a batch takes 1 ms to flip, 0.2 ms more with crops, 9 ms
    more with RandAugment, 1 ms more with cutmix; a validation 0.5 s. It notes the options it was asked about."""

    def __init__(self):
        super().__init__(augment=None, validate=None, validation_batches=1)
        self.asked = []

    def augment_seconds(self, augment):
        self.asked.append(augment)
        return 1e-3 + 0.2e-3 * (augment.crop_padding > 0) + 9e-3 * (augment.randaugment_ops > 0) \
            + 1e-3 * (augment.cutmix_alpha > 0)

    def validation_seconds(self):
        return 0.5


def test_each_row_is_estimated_at_its_own_augmentation_and_the_validations():
    """Round 12 of benchmarks/results/cpu-recipe-sweep.md: an hour whose first steps estimated 177.5 epochs ran
    153.7 (RandAugment slowed every step after them, and the validations are on the clock). A pace at which the
    hour allows 210 epochs (the last row, alone) allows under 200 once the rows' augmentation and the
    validations are counted: the sixty-to-two-hundred row, estimated at its own cost."""
    config, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "3600"])  # flips only until it chooses
    train_images = 45_000
    images_per_second = 210 * train_images / 3600
    assert budget_recipe.estimate(images_per_second, config, train_images)["row"].startswith("two hundred")
    costs = FixedCosts()
    choice = budget_recipe.estimate(images_per_second, config, train_images, costs)
    assert choice["row"].startswith("sixty to two hundred")
    step = config.batch_size / images_per_second - 1e-3 + 10.2e-3  # the measured step, less flips, plus the row's
    steps_per_epoch = train_images // config.batch_size  # (the last partial batch is left out)
    assert choice["epochs"] == pytest.approx(3600 / (steps_per_epoch * step + 0.5), abs=0.005)
    assert choice["costs"] == {"pace_epochs": 210.0, "augment_ms_per_step": pytest.approx(9.2),
                               "validation_seconds": 0.5}
    assert budget_recipe.apply(config, choice).augment.randaugment_magnitude == 5.0  # the row's own options
    text = " ".join(budget_recipe.describe(choice, 3600).split())  # (the message is wrapped)
    assert "counted: 210 epochs at that pace" in text and "(+9.2 ms a step)" in text and "end (0.50 s)" in text
    assert f"about {choice['epochs']:g} epochs in 3600 s -> sixty to two hundred" in text
    # a moving average the user asked for is validated beside the weights: two validations an epoch
    with_ema, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "3600", "--ema", "0.999"])
    assert budget_recipe.estimate(images_per_second, with_ema, train_images, FixedCosts())["epochs"] == \
        pytest.approx(3600 / (steps_per_epoch * step + 1.0), abs=0.005)
    # ten minutes at the same pace: the crops row at its cost, and RandAugment never timed (the rows are tried
    # from the fewest epochs, and the first that its own cost keeps under its limit is taken)
    short, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "600"])
    costs = FixedCosts()
    choice = budget_recipe.estimate(images_per_second, short, train_images, costs)
    assert choice["row"] == "tens of epochs: crops and flips"
    assert choice["epochs"] < choice["costs"]["pace_epochs"] == 35.0
    assert all(augment.randaugment_ops == 0 for augment in costs.asked)


def test_a_model_under_a_million_parameters_keeps_light_randaugment_past_two_hundred_epochs(data_dir, tmp_path,
                                                                                            monkeypatch):
    """Round 13 of benchmarks/results/cpu-recipe-sweep.md: cifar-cpu (425,994 parameters) under-fit with the last
    row's RandAugment 2/9 and cutmix. That row's evidence is of models of 2.7 million parameters and more."""
    config, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "3600"])
    small, large = 425_994, 2_697_610  # cifar-cpu's, cifar-gpu's
    assert budget_recipe.row_for(240, large).name.startswith("two hundred epochs and more")
    assert budget_recipe.row_for(240).name.startswith("two hundred epochs and more")  # (a model not said: any)
    for epochs in (150, 240, 5000):
        chosen = budget_recipe.apply(config, budget_recipe.choose(epochs, 1000.0, config, parameters=small))
        assert chosen.augment.randaugment_magnitude == 5.0 and chosen.augment.cutmix_alpha == 0.0
        assert chosen.budget_choice["row"].startswith("sixty to two hundred epochs (and more, for a model under")
    assert budget_recipe.row_for(30, small).name == "tens of epochs: crops and flips"  # the shorter rows as before
    # estimated at each row's cost: the last row is never tried for a small model, however fast the pace
    costs = FixedCosts()
    choice = budget_recipe.estimate(1e6, config, 45_000, costs, parameters=small)
    assert choice["row"].startswith("sixty to two hundred") and choice["epochs"] > 200
    assert all(augment.cutmix_alpha == 0 for augment in costs.asked)
    assert budget_recipe.estimate(1e6, config, 45_000, FixedCosts(), parameters=large)["row"].startswith("two hundred")
    # the trainer says how large its model is: the tiny model at a pace of a million images a second
    monkeypatch.setattr(budget_recipe.PaceMeter, "observe", lambda self, step: 1e6 if step == 3 else None)
    trainer = Trainer(tiny_config(data_dir, tmp_path / "run", epochs=1000, time_budget=600, budget_recipe=True,
                                  max_steps=5))
    trainer.run()
    assert trainer.model.num_parameters() < 1_000_000
    assert trainer.config.budget_choice["row"].startswith("sixty to two hundred")
    assert trainer.config.augment.cutmix_alpha == 0.0 and trainer.config.augment.randaugment_ops == 2


def test_a_row_whose_own_cost_puts_it_below_its_range_gives_way_to_the_row_before():
    """Crops counted at 61 epochs (too many for their row, under 60), RandAugment 2/5 at its cost under 60 (too few
    for its row, from 60): the lighter row, with its own count."""
    config, _ = config_from_args(["--preset", "cifar-cpu", "--time-budget", "3600"])
    train_images = 45_000
    steps_per_epoch = train_images // config.batch_size
    seconds_per_epoch = 3600 / 61 - 0.5  # the crops row's step: 61 epochs with a 0.5-s validation each
    crops_step = seconds_per_epoch / steps_per_epoch
    images_per_second = config.batch_size / (crops_step - 0.2e-3)  # the first steps flip; crops cost 0.2 ms more
    choice = budget_recipe.estimate(images_per_second, config, train_images, FixedCosts())
    assert choice["row"] == "tens of epochs: crops and flips"
    assert choice["epochs"] == pytest.approx(61.0, abs=0.01) and choice["costs"]["augment_ms_per_step"] == \
        pytest.approx(0.2)
    assert budget_recipe.apply(config, choice).augment.randaugment_ops == 0


def test_the_costs_are_averaged_after_a_first_run_on_a_synchronised_clock(monkeypatch):
    """The first run builds kernels (a GPU's for new shapes, numba's): off the average. Each option set is
    timed once per run."""
    now = {"seconds": 0.0}
    calls = []
    synchronised = []
    monkeypatch.setattr(budget_recipe.backend, "synchronize", lambda: synchronised.append(now["seconds"]))

    def augment(augment_config, draw):
        calls.append(("augment", augment_config.randaugment_ops, draw))
        now["seconds"] += 5.0 if draw == 0 else 0.01 * (1 + augment_config.randaugment_ops)

    def validate():
        calls.append(("validate",))
        now["seconds"] += 7.0 if len(calls) == 1 else 0.2

    costs = budget_recipe.Costs(augment, validate, validation_batches=10, clock=lambda: now["seconds"])
    assert costs.validation_seconds() == pytest.approx(10 * 0.2) and len(calls) == 4
    assert costs.augment_seconds(AugmentConfig(randaugment_ops=2)) == pytest.approx(0.03)
    assert [draw for *_, draw in calls[4:]] == [0, 1, 2, 3]  # its own draws, the first off the average
    assert costs.augment_seconds(AugmentConfig(randaugment_ops=2)) == pytest.approx(0.03) and len(calls) == 8
    assert costs.augment_seconds(AugmentConfig(randaugment_ops=0)) == pytest.approx(0.01) and len(calls) == 12
    assert len(synchronised) == 6  # before and after each timed window


def test_the_trainer_times_the_rows_on_its_own_data_without_touching_the_runs_draws(data_dir, tmp_path,
                                                                                   monkeypatch):
    """The trainer's Costs augment the current batch and validate a batch of the validation split; the run
    trains exactly as it would have without them (their draws are their own; the model is back in training
    mode). A pace of 1 image/s keeps either run in the first row, so the two runs train the same options."""
    monkeypatch.setattr(budget_recipe.PaceMeter, "observe", lambda self, step: 1.0 if step == 3 else None)
    losses, weights = {}, {}
    for timed in (True, False):
        if not timed:
            monkeypatch.setattr(Trainer, "_budget_costs", lambda self: budget_recipe.Costs(
                lambda augment, draw: None, lambda: None, validation_batches=0))
        out = tmp_path / f"timed-{timed}"
        Trainer(tiny_config(data_dir, out, epochs=1000, time_budget=600, budget_recipe=True, max_steps=8)).run()
        losses[timed] = [row["loss"] for row in rows(out / "steps.jsonl")]
        weights[timed] = read_checkpoint(out / "checkpoint-last.npz")[1]
        choice = json.loads((out / "train_config.json").read_text())["budget_choice"]
        assert choice["row"] == "a few epochs: flips only, half the rate"
        assert choice["costs"]["pace_epochs"] == pytest.approx(600 / 36, abs=0.01)
        if timed:  # the tiny model validates its 12 images in well under a second, and that counts
            costs = choice["costs"]
            assert 0 < costs["validation_seconds"] < 5
            step = 8 / 1.0 + costs["augment_ms_per_step"] / 1e3  # batch 8 at 1 image/s, plus the row's augmentation
            assert choice["epochs"] == pytest.approx(600 / (36 // 8 * step + costs["validation_seconds"]), abs=0.01)
    assert losses[True] == losses[False] and len(losses[True]) == 8
    assert weights[True].keys() == weights[False].keys()
    for name, value in weights[True].items():
        np.testing.assert_array_equal(value, weights[False][name], err_msg=name)


def choose_after_three_steps(epochs):
    def observe(self, step):
        return budget_recipe.choose(epochs, 1234.0, self.config) if step == 3 else None
    return observe


def test_the_trainer_applies_the_choice_and_a_resumed_run_keeps_it(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(budget_recipe.BudgetRecipe, "observe", choose_after_three_steps(26))
    config = tiny_config(data_dir, tmp_path / "run", epochs=1000, time_budget=600, budget_recipe=True, max_steps=6,
                         augment=AugmentConfig(crop_padding=0), progress=True)
    trainer = Trainer(config)
    trainer.run()
    said = capsys.readouterr().err
    assert "budget recipe: 1,234 images/s over the first steps: about 26 epochs" in said
    # built in Python without given_options: the message says how to keep options (not a flag to pass)
    assert "TrainConfig(given_options=[...])" in said and "--no-budget-recipe" not in said
    assert trainer.config.augment.crop_padding == 4 and trainer.schedule.warmup_steps == 0.05 * 1000 * 4
    saved = read_checkpoint(tmp_path / "run" / "checkpoint-last.npz")[0]["train_config"]
    assert saved["budget_choice"]["row"] == "tens of epochs: crops and flips"
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["augment"]["crop_padding"] == 4

    def never(self, step):
        raise AssertionError("a resumed run measured its pace again")

    monkeypatch.setattr(budget_recipe.BudgetRecipe, "observe", never)
    resumed = Trainer(tiny_config(data_dir, tmp_path / "run", epochs=1000, time_budget=600, budget_recipe=True,
                                  max_steps=8, augment=AugmentConfig(crop_padding=0)), resume=True)
    assert resumed.config.budget_choice == saved["budget_choice"] and resumed.config.augment.crop_padding == 4
    resumed.run()
    config, resume = config_from_args(["--resume", "--out", str(tmp_path / "run"), "--max-steps", "10"])
    assert resume and config.budget_choice == saved["budget_choice"] and config.augment.crop_padding == 4
    assert train(config, resume=True)["step"] == 10


def test_the_trainer_trains_past_the_recipes_epochs_and_a_resumed_run_keeps_the_longer_schedule(
        data_dir, tmp_path, monkeypatch):
    """A recipe of 2 epochs where the budget allows 26: the schedule becomes 52 epochs from the next step,
    and a resumed run keeps 52 (it does not measure and lengthen again)."""
    monkeypatch.setattr(budget_recipe.BudgetRecipe, "observe", choose_after_three_steps(26))
    trainer = Trainer(tiny_config(data_dir, tmp_path / "run", epochs=2, time_budget=600, budget_recipe=True,
                                  max_steps=12))
    trainer.run()
    assert trainer.config.epochs == 52 and trainer.total_steps == 52 * trainer.steps_per_epoch
    assert trainer.step == 12 > 2 * trainer.steps_per_epoch  # past the recipe's own 2 epochs
    monkeypatch.setattr(budget_recipe.BudgetRecipe, "observe", choose_after_three_steps(40))
    resumed = Trainer(tiny_config(data_dir, tmp_path / "run", epochs=2, time_budget=600, budget_recipe=True,
                                  max_steps=14), resume=True)
    assert resumed.config.epochs == 52 and resumed.total_steps == 52 * resumed.steps_per_epoch
    resumed.run()
    assert resumed.step == 14 and resumed.config.epochs == 52
    config, resume = config_from_args(["--resume", "--out", str(tmp_path / "run"), "--max-steps", "16"])
    assert resume and config.epochs == 52 and train(config, resume=True)["step"] == 16


def test_the_rate_the_row_chose_is_the_schedules_peak_from_the_next_step(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(budget_recipe.BudgetRecipe, "observe", choose_after_three_steps(10))
    trainer = Trainer(tiny_config(data_dir, tmp_path / "run", epochs=1000, time_budget=600, budget_recipe=True,
                                  max_steps=6, warmup_epochs=0, given_options=["warmup_epochs"]))
    trainer.run()
    assert trainer.config.lr == pytest.approx(1.5e-3) and trainer.schedule.peak_lr == pytest.approx(1.5e-3)
    rates = [row["lr"] for row in rows(tmp_path / "run" / "steps.jsonl")]
    assert rates[0] == pytest.approx(3e-3, rel=1e-3)  # the measured steps: the recipe's own rate
    assert all(rate <= 1.5e-3 for rate in rates[3:]) and rates[3] == pytest.approx(1.5e-3, rel=1e-3)


def test_without_a_budget_or_with_the_recipe_off_nothing_is_chosen(data_dir, tmp_path):
    assert budget_recipe.BudgetRecipe.for_run(TrainConfig(budget_recipe=True), 100, 0) is None
    assert budget_recipe.BudgetRecipe.for_run(TrainConfig(budget_recipe=False, time_budget=60), 100, 0) is None
    config, _ = config_from_args(["--preset", "cifar-cpu", "--no-budget-recipe", "--time-budget", "60"])
    assert not config.budget_recipe


# --- the PyTorch side of benchmarks/cpu_training_budget.py follows the same choices ---------------------

def test_the_pytorch_reference_follows_ema_tta_mixing_and_mean_pooling(data_dir, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from torch_reference import TorchTrainer

    model = {**TINY_MODEL, "pooling": "mean", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    config = tiny_config(data_dir, tmp_path / "torch", epochs=2, model=model, ema=0.9, mixing_stops_at=0.5,
                         augment=AugmentConfig(mixup_alpha=0.8), tta=True, test_every_epoch=True)
    trainer = TorchTrainer(config, threads=1)
    # the same initial weights: PyTorch's logits (mean pooling, with and without TTA) are minivit's
    val = trainer.val_set
    ours = evaluate_model(trainer.model, val.images, val.labels, trainer.mean, trainer.std, tta=True)
    theirs = trainer.evaluate(val.images, val.labels, tta=True)
    assert theirs["loss"] == pytest.approx(ours["loss"], rel=1e-4)
    mixes = []

    def recording(*args, mix=True, **kwargs):
        mixes.append(mix)
        return augment_batch(*args, mix=mix, **kwargs)

    monkeypatch.setattr(randomness_module, "augment_batch", recording)
    trainer.run()
    assert mixes == [True] * 4 + [False] * 4
    last = trainer.history[-1]
    assert "ema_val_accuracy" in last and "ema_test_accuracy" in last and trainer.ema.updates == 8
    parameters = torch.nn.utils.parameters_to_vector(trainer.torch_model.parameters())
    assert not torch.equal(parameters, trainer.ema.average)  # an average, not the weights


def test_the_budget_benchmark_names_pytorchs_file_apart_and_checks_choice_from_first(tmp_path):
    """--only torch must not replace minivit's results file of the same seed; a --choice-from folder with no
    run in it is refused before an hour of training, not after it."""
    script = BENCHMARKS / "cpu_training_budget.py"
    common = ["--data-dir", "no-such-data", "--preset", "cifar-cpu", "--results-dir", str(tmp_path)]
    (tmp_path / "cpu-training-cifar-cpu-600s.json").write_text("{}")  # minivit's file of seed 0
    run = subprocess.run([sys.executable, str(script), *common, "--only", "torch", "--choice-from",
                          str(tmp_path / "no-run")], capture_output=True, text=True, cwd=BENCHMARKS.parent, timeout=120)
    assert run.returncode != 0 and "--choice-from" in run.stderr and "train_config.json" in run.stderr
    (tmp_path / "cpu-training-cifar-cpu-600s-torch.json").write_text("{}")  # PyTorch's own file: refused
    run = subprocess.run([sys.executable, str(script), *common, "--only", "torch"], capture_output=True, text=True,
                         cwd=BENCHMARKS.parent, timeout=120)
    assert run.returncode != 0 and "600s-torch.json already exist" in run.stderr, run.stderr


def test_the_benchmarks_say_what_share_of_the_cpu_time_the_hypervisor_stole(monkeypatch):
    """A virtual machine's cores may be given to other machines (steal): the benchmarks report the share of
    a run's CPU time so lost, from two readings of /proc/stat."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from machine import cpu_times, describe_steal, stolen_share

    before = {"user": 1000, "nice": 0, "system": 100, "idle": 500, "iowait": 0, "irq": 0, "softirq": 0, "steal": 50}
    after = {**before, "user": 1600, "system": 140, "idle": 700, "steal": 250}  # 1,040 ticks, 200 of them stolen
    assert stolen_share(before, after) == pytest.approx(200 / 1040)
    assert "19.2%" in describe_steal(stolen_share(before, after))
    assert stolen_share(before, before) is None and stolen_share(None, after) is None
    assert "not measured" in describe_steal(None)
    if Path("/proc/stat").exists():  # Linux: every kind of time read, none negative
        reading = cpu_times()
        assert list(reading) == ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]
        assert all(ticks >= 0 for ticks in reading.values())


# --- two ranks: one average, one choice -------------------------------------------------------------------

@pytest.mark.slow
def test_two_ranks_keep_one_average_and_choose_one_recipe(data_dir, tmp_path):
    from test_distributed import tiny_values, train_on_ranks

    values = tiny_values(data_dir, tmp_path / "straight", epochs=3, ema=0.9)
    train_on_ranks(2, values, tmp_path / "straight-reports")
    resumed_values = {**values, "out": str(tmp_path / "resumed")}
    train_on_ranks(2, {**resumed_values, "max_steps": 4}, tmp_path / "stopped-reports")
    train_on_ranks(2, resumed_values, tmp_path / "resumed-reports", resume=True)
    straight = read_ema_weights(tmp_path / "straight" / "checkpoint-last.npz")
    resumed = read_ema_weights(tmp_path / "resumed" / "checkpoint-last.npz")
    for name in straight:
        np.testing.assert_array_equal(straight[name], resumed[name], err_msg=name)
    # rank 1 validates its shard with the average rank 0 read from the checkpoint: the sums agree
    losses = [{row["step"]: row["ema_val_loss"] for row in rows(tmp_path / run / "metrics.jsonl")}
              for run in ("straight", "resumed")]
    assert [losses[1][step] for step in (3, 6, 9)] == pytest.approx([losses[0][step] for step in (3, 6, 9)],
                                                                    rel=1e-12)

    # the budget recipe: the ranks measure the same 20 steps, and rank 0's pace decides for both
    budget = tiny_values(data_dir, tmp_path / "budget", epochs=1000, time_budget=600, budget_recipe=True,
                         max_steps=24)
    reports = train_on_ranks(2, budget, tmp_path / "budget-reports")
    assert [report["summary"]["step"] for report in reports] == [24, 24]
    choice = json.loads((tmp_path / "budget" / "train_config.json").read_text())["budget_choice"]
    assert choice["row"] in [row.name for row in budget_recipe.ROWS]


# --- on the simulated GPU --------------------------------------------------------------------------

def test_ema_tta_mixing_and_the_budget_recipe_on_the_simulated_gpu(data_dir, tmp_path, capsys, monkeypatch):
    from minivit.train import main as train_main

    monkeypatch.setattr(budget_recipe.BudgetRecipe, "observe", choose_after_three_steps(240))
    tiny = ["--image-size", "8", "--patch-size", "4", "--hidden-size", "16", "--num-hidden-layers", "1",
            "--num-attention-heads", "2", "--intermediate-size", "32", "--batch-size", "8", "--val-fraction", "0.25",
            "--no-progress", "--backend", "cupy-sim", "--sync-every", "2"]
    try:
        assert train_main(["--preset", "cifar-gpu", "--data-dir", str(data_dir), "--out", str(tmp_path / "run"),
                           "--epochs", "3", "--time-budget", "600", "--ema", "0.9", "--tta", "--test-every-epoch",
                           *tiny]) == 0
        last = rows(tmp_path / "run" / "metrics.jsonl")[-1]
        assert "ema_val_accuracy" in last and "ema_test_accuracy" in last
        config = json.loads((tmp_path / "run" / "train_config.json").read_text())
        assert config["mixing_stops_at"] == 0.9 and config["augment"]["cutmix_alpha"] == 1.0
        assert config["ema"] == 0.9  # given: the row's "no EMA" does not apply
        capsys.readouterr()
        assert evaluate_main(["--checkpoint", str(tmp_path / "run" / "checkpoint-last.npz"), "--data-dir",
                              str(data_dir), "--backend", "cupy-sim", "--weights", "ema", "--tta", "--json",
                              "--figure", str(tmp_path / "confusion.png")]) == 0
        assert json.loads(capsys.readouterr().out)["tta"] is True
    finally:
        backend.use("numpy")


def test_in_float16_training_the_average_is_of_the_float32_master_weights(data_dir, tmp_path):
    try:
        trainer = Trainer(tiny_config(data_dir, tmp_path / "run", epochs=1, ema=0.9, backend="cupy-sim",
                                      precision="float16"))
        assert trainer.ema.weights is trainer.optimizer.master and trainer.ema.average.dtype == np.float32
        trainer.run()
        ema = read_ema_weights(tmp_path / "run" / "checkpoint-last.npz")
        assert all(array.dtype == np.float32 and np.isfinite(array).all() for array in ema.values())
        assert "ema_val_accuracy" in rows(tmp_path / "run" / "metrics.jsonl")[-1]
    finally:
        backend.use("numpy")


def test_the_sweep_judges_a_run_on_the_validation_split_the_trainer_used(data_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from cpu_recipe_sweep import validation_accuracies

    train(tiny_config(data_dir, tmp_path / "run", epochs=1, ema=0.9, lr=1e-4))  # barely trained: some right
    last = rows(tmp_path / "run" / "metrics.jsonl")[-1]
    assert 0 < last["val_accuracy"] < 1  # (another split would score otherwise)
    accuracies = validation_accuracies(tmp_path / "run")
    assert sorted(accuracies) == ["ema", "ema tta", "raw", "raw tta"]
    assert accuracies["raw"] == last["val_accuracy"] and accuracies["ema"] == last["ema_val_accuracy"]
    from cpu_recipe_sweep import table_line, test_accuracies

    from minivit.evaluate import evaluate_checkpoint

    tests = test_accuracies(tmp_path / "run", str(data_dir))  # the test split, not the validation one again
    assert tests["test"] == evaluate_checkpoint(tmp_path / "run" / "checkpoint-last.npz", data_dir)["accuracy"]
    result = {"name": "x", "options": "", "seed": 0, "row": "r", "steps": 1, "epochs": 1.0, "load": 1.0,
              "stolen": 0.25, "images_per_second": 10.0, "accuracies": accuracies, "tests": tests}
    line = table_line(result)
    assert line.count("|") == 16 and line.split(" | ")[-4] == f"{100 * tests['test']:.2f}%"
    assert line.endswith(" | 1.0 | 25.0% |") and "(the preset)" in line
    base = "--num-hidden-layers 4 --intermediate-size 512"  # a run of the base options is not the preset's
    with_base = table_line({**result, "stolen": None}, base)  # (no /proc/stat: an empty cell)
    assert "(the preset)" not in with_base and f"`{base}`" in with_base and with_base.count("|") == 16
    assert with_base.endswith(" | 1.0 |  |")
    failed = table_line({"name": "x", "options": "", "seed": 0, "error": "boom"})
    assert failed.count("|") == 16


def test_the_sweep_runs_the_extra_candidates_alone_unless_only_names_others(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from cpu_recipe_sweep import CANDIDATES, chosen_candidates

    extra = "D128 L3 MLP256=--num-hidden-layers 3 --intermediate-size 256"
    assert chosen_candidates(None, [extra]) == {"D128 L3 MLP256": ["--num-hidden-layers", "3",
                                                                   "--intermediate-size", "256"]}
    assert list(chosen_candidates(["lr 1e-3"], [extra])) == ["lr 1e-3", "D128 L3 MLP256"]
    assert list(chosen_candidates(None, [])) == list(CANDIDATES)
