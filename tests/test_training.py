"""Training end to end on tiny generated data: learning, resuming, interruption, NaN, budgets, errors."""

import dataclasses
import io
import json
import signal

import numpy as np
import pytest
from synthetic_data import write_cifar_batches, write_image_folder
from tiny_runs import TINY_MODEL, tiny_config

import minivit
import minivit.optim
from minivit.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from minivit.data import DataError
from minivit.train import Trainer, TrainingDiverged, config_from_args, main, train
from minivit.training.report import Progress


@pytest.fixture
def data_dir(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=16, size=8)


def weights(run_dir, name="checkpoint-last.npz"):
    return read_checkpoint(run_dir / name)[1]


def assert_same_weights(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_learns_an_easy_task(data_dir, tmp_path):
    result = train(tiny_config(data_dir, tmp_path / "run", epochs=8, model={**TINY_MODEL,
                                                                           "hidden_dropout_prob": 0.0}))
    assert result["finished"]
    assert result["best_val_accuracy"] == 1.0  # the classes are colours
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    steps = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert [row["step"] for row in steps] == list(range(1, 33))  # 8 epochs of 4 steps
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    model = minivit.load_checkpoint(tmp_path / "run" / "checkpoint-best.npz")
    assert model.checkpoint_meta["class_names"] == ["blue", "green", "red"]


def test_resume_after_interruption_gives_identical_weights(data_dir, tmp_path):
    """3 epochs at once, against: stop mid-epoch (step 5 of 12), resume to the end."""
    train(tiny_config(data_dir, tmp_path / "straight"))
    stopped = train(tiny_config(data_dir, tmp_path / "resumed", max_steps=5))
    assert not stopped["finished"] and stopped["step"] == 5
    resumed = train(tiny_config(data_dir, tmp_path / "resumed"), resume=True)
    assert resumed["finished"] and resumed["step"] == 12
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))
    assert (tmp_path / "straight" / "steps.jsonl").read_text() == (tmp_path / "resumed" / "steps.jsonl").read_text()
    straight_opt = read_checkpoint(tmp_path / "straight" / "checkpoint-last.npz")[2]
    resumed_opt = read_checkpoint(tmp_path / "resumed" / "checkpoint-last.npz")[2]
    assert_same_weights(straight_opt, resumed_opt)


def test_ctrl_c_saves_a_checkpoint_that_resumes_identically(data_dir, tmp_path):
    def press_ctrl_c(trainer, step):
        if step == 6:
            signal.raise_signal(signal.SIGINT)

    train(tiny_config(data_dir, tmp_path / "straight"))
    interrupted = train(tiny_config(data_dir, tmp_path / "run"), on_step=press_ctrl_c)
    assert interrupted["stop_reason"] == "interrupted" and interrupted["step"] == 6
    assert read_checkpoint(tmp_path / "run" / "checkpoint-last.npz")[0]["step"] == 6
    train(tiny_config(data_dir, tmp_path / "run"), resume=True)
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "run"))


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    def poison(trainer, step):
        if step == 5:  # after epoch 1 (4 steps) was checkpointed
            trainer.model.classifier.weight.data[...] = np.nan

    with pytest.raises(TrainingDiverged, match=r"The loss became nan at step 6 \(epoch 2\).*last good checkpoint"):
        train(tiny_config(data_dir, tmp_path / "run"), on_step=poison)
    meta, state, _ = read_checkpoint(tmp_path / "run" / "checkpoint-last.npz")
    assert meta["step"] == 4
    assert all(np.isfinite(array).all() for array in state.values())


def test_time_budget_stops_cleanly_at_the_end_of_its_schedule(data_dir, tmp_path):
    """Only what no machine's pace can change: how many steps fit is the machine's business."""
    result = train(tiny_config(data_dir, tmp_path / "run", epochs=1000, time_budget=2.0))
    assert result["stop_reason"] == "time budget spent" and not result["finished"]
    assert result["elapsed"] >= 2.0
    meta = read_checkpoint(tmp_path / "run" / "checkpoint-last.npz")[0]
    assert meta["step"] == result["step"] and meta["elapsed"] == result["elapsed"]
    # The schedule's position only moves forward (steps and clock both grow), so the rate rises
    # through the warmup and then only falls, within [min_lr, lr], whatever the pace.
    rates = [json.loads(line)["lr"] for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert len(rates) == result["step"]
    peak = rates.index(max(rates))
    assert all(a <= b for a, b in zip(rates[:peak], rates[1:peak + 1]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:]))
    assert all(1e-5 <= rate <= 3e-3 for rate in rates)
    # Where the run stopped, its schedule has ended: the rate a next step would get is min_lr.
    total = 1000 * 4
    position = max(meta["step"], meta["elapsed"] / 2.0 * total)
    assert minivit.optim.warmup_cosine(position, total, 4, 3e-3, 1e-5) == pytest.approx(1e-5)


def test_under_a_time_budget_the_progress_bar_measures_the_budget(data_dir, tmp_path, capsys):
    """Seconds of the budget, not the recipe's steps (a 40-second run once showed 31/17550 steps)."""
    train(tiny_config(data_dir, tmp_path / "budget", epochs=1000, time_budget=1.0, progress=True))
    shown = capsys.readouterr().err.replace("\r", "\n")
    assert "% of the 1 s budget" in shown and "min left" in shown
    assert "/4000" not in shown  # 1000 epochs of 4 steps
    train(tiny_config(data_dir, tmp_path / "steps", epochs=2, progress=True))
    shown = capsys.readouterr().err.replace("\r", "\n")
    assert "/8 steps" in shown and "s budget" not in shown  # without a budget: the steps of the recipe


@pytest.mark.parametrize("time_budget", [600.0, None])
def test_at_80_columns_the_progress_bar_shows_loss_accuracy_and_images_per_second(time_budget):
    """A terminal cuts a line at its edge: the numbers a user watches come first, the rest may go."""
    shown = io.StringIO()
    progress = Progress.open("vit-base-patch16-224 on cupy-sim", total_steps=17550, step=0, elapsed=0.0,
                             time_budget=time_budget, file=shown, ncols=80)
    progress.show(step=5851, elapsed=372.4, loss=1.23456, accuracy=0.5678, images_per_second=12345.6)
    progress.close()
    lines = [line for line in shown.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert lines and all(len(line) <= 80 for line in lines), lines
    assert "loss 1.235 acc 0.568 12346 img/s" in lines[-1]


def test_time_budget_schedule_runs_on_the_clock(data_dir, tmp_path):
    """Position on the schedule = max(step, elapsed / budget * total steps); no timing involved."""
    trainer = Trainer(tiny_config(data_dir, tmp_path / "run", epochs=1000, warmup_epochs=100, time_budget=100.0,
                                  min_lr=0.0))
    total, warmup, lr = trainer.total_steps, trainer.schedule.warmup_steps, 3e-3  # 4000 and 400 steps
    assert (total, warmup) == (4000, 400)

    def rate_at(step, elapsed):
        trainer.elapsed = elapsed
        return trainer.learning_rate(step)

    assert rate_at(0, 0.0) == pytest.approx(lr / warmup)  # the first warmup step
    assert rate_at(0, 5.0) == pytest.approx(lr * 201 / 400)  # 5% of the budget: halfway up the warmup
    assert rate_at(0, 10.0) == pytest.approx(lr)  # 10%: warmup done, the cosine starts
    assert rate_at(3, 55.0) == pytest.approx(lr / 2)  # halfway down the cosine
    assert rate_at(3, 100.0) == pytest.approx(0.0, abs=1e-12)  # the budget spent: the end of the schedule
    assert rate_at(2200, 10.0) == pytest.approx(lr / 2)  # steps ahead of the clock count instead
    trainer.schedule = dataclasses.replace(trainer.schedule, time_budget=None)
    assert rate_at(2200, 99.0) == pytest.approx(lr / 2)  # without a budget, only steps count


def test_resume_refuses_a_different_config(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "run", max_steps=2))
    message = r"does not match the requested run: lr: checkpoint 0.003, requested 0.01"
    with pytest.raises(CheckpointError, match=message):
        train(tiny_config(data_dir, tmp_path / "run", lr=0.01), resume=True)


def test_a_new_run_never_overwrites_an_old_one(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "run", max_steps=2))
    before = (tmp_path / "run" / "checkpoint-last.npz").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run.*--resume"):
        train(tiny_config(data_dir, tmp_path / "run"))
    assert (tmp_path / "run" / "checkpoint-last.npz").read_bytes() == before


def test_resume_without_a_checkpoint(data_dir, tmp_path):
    with pytest.raises(CheckpointError, match="--resume: no checkpoint"):
        train(tiny_config(data_dir, tmp_path / "empty"), resume=True)


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(CheckpointError, match="not a readable minivit checkpoint"):
        minivit.load_checkpoint(path)


def test_truncated_checkpoint_gives_a_clear_error(tmp_path):
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY_MODEL))
    path = save_checkpoint(tmp_path / "checkpoint.npz", model)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        minivit.load_checkpoint(path)


def test_checkpoint_round_trip_and_no_pickle(tmp_path):
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY_MODEL), seed=4)
    path = save_checkpoint(tmp_path / "c.npz", model, meta={"note": "x"})
    with np.load(path, allow_pickle=False) as archive:  # would raise if anything needed pickle
        assert all(archive[key].dtype != object for key in archive.files)
    loaded = minivit.load_checkpoint(path)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype("float32")
    np.testing.assert_array_equal(loaded.forward(x), model.eval().forward(x))
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed into place


@pytest.mark.parametrize("argv,message", [
    (["--lr", "-1"], "--lr must be a finite number > 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--label-smoothing", "1.5"], "--label-smoothing must be in"),
    (["--hidden-size", "10", "--num-attention-heads", "3"], "not a multiple of the number of attention heads"),
])
def test_bad_options_fail_before_any_work(argv, message, capsys, tmp_path):
    assert main(argv + ["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_data_dir_with_nothing_usable(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "holds nothing usable" in capsys.readouterr().err


def test_images_that_do_not_fit_the_model(tmp_path):
    """CIFAR's 32 px images are resized to the model's 8 px; its 3 channels cannot become 1."""
    write_cifar_batches(tmp_path / "data")
    with pytest.raises(DataError, match="images are 3x8x8 but the model expects 1x8x8"):
        train(tiny_config(tmp_path / "data", tmp_path / "run", model={**TINY_MODEL, "num_channels": 1}))


def test_image_folders_are_resized_to_the_model(data_dir, tmp_path):
    result = train(tiny_config(data_dir, tmp_path / "run", epochs=1,
                               model={**TINY_MODEL, "image_size": 16}))
    assert result["finished"]


def test_cli_overrides_every_kind_of_field(tmp_path):
    config, resume = config_from_args(["--preset", "cifar-gpu", "--hidden-size", "96", "--no-qkv-bias",
                                       "--mixup-alpha", "0.2", "--no-horizontal-flip", "--epochs", "3",
                                       "--time-budget", "60", "--out", str(tmp_path)])
    assert not resume
    assert config.model == {"hidden_size": 96, "qkv_bias": False}
    assert config.model_config().num_hidden_layers == 9  # from the preset
    assert config.augment.mixup_alpha == 0.2 and not config.augment.horizontal_flip
    assert config.augment.cutmix_alpha == 1.0  # from the recipe
    assert config.epochs == 3 and config.time_budget == 60.0


def test_cli_train_then_evaluate_on_cifar_format(tmp_path, capsys):
    write_cifar_batches(tmp_path / "data", per_batch=20, test_size=30)
    argv = ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--batch-size", "16", "--hidden-size", "16", "--num-hidden-layers", "1",
            "--num-attention-heads", "2", "--intermediate-size", "32", "--patch-size", "8", "--no-progress",
            "--val-fraction", "0.25"]  # the smallest class has 4 images: 0.1 would leave it no validation image
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["finished"] and summary["step"] == 4  # 74 training images // 16
    from minivit.evaluate import main as evaluate_main

    checkpoint = str(tmp_path / "run" / "checkpoint-last.npz")
    assert evaluate_main(["--checkpoint", checkpoint, "--data-dir", str(tmp_path / "data"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["num_images"] == 30
    assert set(result["per_class"]) == set(minivit.data.CIFAR10_CLASSES)
    assert sum(map(sum, result["confusion_matrix"])) == 30
    assert (tmp_path / "run" / "confusion-test.png").is_file()
