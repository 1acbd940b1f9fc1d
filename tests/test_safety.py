"""Nothing lost, nothing silently wrong: run folders, locks, temporary files, NaN, resuming, advice.

Tiny models on tiny generated data; each test takes a second or two.
"""

import functools
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
from synthetic_data import write_image_folder
from tiny_runs import TINY_ARCHITECTURE
from tiny_runs import TINY_FLAGS as TINY_ARCHITECTURE_FLAGS
from tiny_runs import tiny_config as shared_tiny_config

import minivit
from minivit import atomic
from minivit.adapt import FinetuneError
from minivit.checkpoint import CheckpointError, NonFiniteWeights, read_checkpoint, save_checkpoint
from minivit.data import DataError
from minivit.train import TrainConfig, Trainer, TrainingDiverged, main, train
from minivit.training.run_folder import LOCK_NAME, RunFolder, RunFolderError

TINY_MODEL = TINY_ARCHITECTURE  # no dropout; the number of classes from the data
TINY_FLAGS = [*TINY_ARCHITECTURE_FLAGS, "--val-fraction", "0.25"]
tiny_config = functools.partial(shared_tiny_config, model=TINY_MODEL)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=16, size=8)


def listing(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def dead_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --- run folders -------------------------------------------------------------------------------------

@pytest.mark.parametrize("contents", [{"metrics.jsonl": b"mine\n"}, {"steps.jsonl": b"x", "notes.txt": b"y"},
                                      {"train_config.json": b"{}"}, {".hidden": b"z"}])
def test_a_folder_that_is_not_a_run_is_refused_and_left_as_it_was(data_dir, tmp_path, capsys, contents):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    assert main(["--data-dir", str(data_dir), "--out", str(folder), *TINY_FLAGS]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert f"--out {folder}" in error and "not a minivit run folder" in error
    assert listing(folder) == contents  # nothing written, nothing removed, no lock file


def test_the_current_folder_is_refused_when_it_holds_anything(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("my own metrics\n")
    assert main(["--data-dir", str(data_dir), "--out", "", *TINY_FLAGS]) == 2
    error = capsys.readouterr().err
    assert "--out '' (the current folder" in error and str(tmp_path) in error
    assert listing(tmp_path) == {"metrics.jsonl": b"my own metrics\n"}


def test_the_current_folder_is_used_when_empty(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--data-dir", str(data_dir), "--out", "", "--max-steps", "1", *TINY_FLAGS]) == 0
    assert (tmp_path / "checkpoint-last.npz").is_file() and (tmp_path / LOCK_NAME).is_file()


def test_a_file_as_run_folder_is_refused(data_dir, tmp_path):
    (tmp_path / "run").write_text("a file")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        Trainer(tiny_config(data_dir, tmp_path / "run"))
    assert (tmp_path / "run").read_text() == "a file"


def test_a_run_that_fails_to_start_leaves_no_folder_behind(tmp_path):
    with pytest.raises(DataError):
        Trainer(tiny_config(tmp_path / "no-data", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_run_folder_without_checkpoint_may_start_over(data_dir, tmp_path):
    """A run that crashed before its first checkpoint left only its own files: a new run may use them."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text("{}")
    (folder / "steps.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    result = train(tiny_config(data_dir, folder, max_steps=2))
    assert result["step"] == 2
    assert [json.loads(line)["step"] for line in (folder / "steps.jsonl").read_text().splitlines()] == [1, 2]


def test_a_second_run_is_kept_out_of_a_folder_in_use(data_dir, tmp_path):
    first = Trainer(tiny_config(data_dir, tmp_path / "run"))
    with pytest.raises(RunFolderError, match=r"is in use by another run \(.*pid"):
        Trainer(tiny_config(data_dir, tmp_path / "run"))
    first.run_folder.release()
    Trainer(tiny_config(data_dir, tmp_path / "run")).run_folder.release()  # free again


def test_the_lock_of_a_killed_run_is_gone_with_it(data_dir, tmp_path):
    """kill -9 leaves the lock file, but not the lock: the operating system drops it with the process."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from minivit.training.run_folder import RunFolder; "
         "folder = RunFolder(sys.argv[1]).claim(resume=False); print('locked', flush=True); time.sleep(120)",
         str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"in use by another run.*{holder.pid}"):
            Trainer(tiny_config(data_dir, tmp_path / "run"))
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).is_file()
    result = train(tiny_config(data_dir, tmp_path / "run", max_steps=1))
    assert result["step"] == 1


def test_temporary_files_of_killed_writes_are_removed_and_live_ones_kept(data_dir, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text("{}")
    stale = folder / f".checkpoint-last.npz.{dead_pid()}.k3x9.tmp"
    live = folder / f".curves.png.{os.getpid()}.a1b2.tmp"  # a write in progress in this process
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"half a figure")
    RunFolder(folder).claim(resume=False).release()
    assert not stale.exists() and live.exists()
    live.unlink()


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = atomic.atomic_write_text(tmp_path / "config.json", "old")

    def fail(file):
        file.write(b"new, half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write(path, fail)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_atomic_write_removes_what_a_killed_writer_left(tmp_path):
    stale = tmp_path / f".data.npz.{dead_pid()}.zz.tmp"
    stale.write_bytes(b"x")
    atomic.atomic_write(tmp_path / "data.npz", lambda file: np.savez(file, values=np.arange(3)))
    assert not stale.exists()
    np.testing.assert_array_equal(np.load(tmp_path / "data.npz")["values"], np.arange(3))


def test_written_files_get_a_normal_mode_not_a_private_one(tmp_path):
    previous = os.umask(0o022)
    try:
        path = atomic.atomic_write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_log_line_cut_short_by_a_crash_does_not_stop_the_resume(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "run", max_steps=5))
    with open(tmp_path / "run" / "steps.jsonl", "a") as log:
        log.write('{"step": 6, "lo')  # killed mid-write
    assert train(tiny_config(data_dir, tmp_path / "run"), resume=True)["finished"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))


# --- non-finite values stop the run ------------------------------------------------------------------

def test_weights_that_turn_nan_at_the_end_of_the_first_epoch_are_never_saved(data_dir, tmp_path):
    def poison(trainer, step):
        if step == 4:  # the last step of epoch 1: its loss was finite, the weights are not
            trainer.model.classifier.weight.data[...] = np.nan

    with pytest.raises(TrainingDiverged, match=r"at step 4 \(epoch 1\).*No checkpoint was written"):
        train(tiny_config(data_dir, tmp_path / "run"), on_step=poison)
    assert not list((tmp_path / "run").glob("checkpoint-*.npz"))


def test_nan_at_the_end_of_an_epoch_names_the_checkpoint_that_is_really_good(data_dir, tmp_path):
    def poison(trainer, step):
        if step == 8:  # the end of epoch 2; epoch 1's checkpoint (step 4) is good
            trainer.optimizer.exp_avg["classifier.bias"][...] = np.inf

    with pytest.raises(TrainingDiverged, match=r"weights became non-finite .*exp_avg.* at step 8 \(epoch 2\).*"
                                               r"last good checkpoint is .*checkpoint-last\.npz \(step 4\)"):
        train(tiny_config(data_dir, tmp_path / "run"), on_step=poison)
    meta, state, optimizer_state = read_checkpoint(tmp_path / "run" / "checkpoint-last.npz")
    assert meta["step"] == 4
    assert all(np.isfinite(array).all() for array in [*state.values(), *optimizer_state.values()]
               if np.asarray(array).dtype.kind == "f")


@pytest.mark.filterwarnings("ignore:overflow", "ignore:invalid value")
def test_a_non_finite_validation_loss_stops_the_run(data_dir, tmp_path):
    def poison(trainer, step):
        if step == 4:  # finite weights whose logits overflow float32
            trainer.model.classifier.weight.data[...] = 3e38

    with pytest.raises(TrainingDiverged, match=r"validation loss became nan at step 4 \(epoch 1\)"):
        train(tiny_config(data_dir, tmp_path / "run"), on_step=poison)
    assert not (tmp_path / "run" / "checkpoint-last.npz").exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no row of NaN logged as an epoch


def test_save_checkpoint_refuses_non_finite_weights(tmp_path):
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY_MODEL, num_labels=3))
    model.classifier.bias.data[1] = np.nan
    with pytest.raises(NonFiniteWeights, match="classifier.bias"):
        save_checkpoint(tmp_path / "c.npz", model)
    assert not list(tmp_path.iterdir())


def nan_checkpoint(tmp_path, data_dir):
    """A run's checkpoint with NaN weights, as an older minivit could write it."""
    train(tiny_config(data_dir, tmp_path / "run", max_steps=1))
    path = tmp_path / "run" / "checkpoint-last.npz"
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["model/classifier.weight"] = np.full_like(arrays["model/classifier.weight"], np.nan)
    np.savez(tmp_path / "nan.npz", **arrays)
    return tmp_path / "nan.npz"


def test_nan_weights_are_refused_by_evaluate_visualize_resume_and_finetune(data_dir, tmp_path, capsys):
    from minivit.evaluate import main as evaluate_main
    from minivit.finetune import main as finetune_main
    from minivit.visualize import main as visualize_main

    path = nan_checkpoint(tmp_path, data_dir)
    assert evaluate_main(["--checkpoint", str(path), "--data-dir", str(data_dir)]) == 2
    assert "non-finite weights" in capsys.readouterr().err
    assert visualize_main(["--checkpoint", str(path), "--data-dir", str(data_dir),
                           "--out", str(tmp_path / "figures")]) == 2
    assert "non-finite weights" in capsys.readouterr().err and not (tmp_path / "figures").exists()
    assert finetune_main(["--init-from", str(path), "--data-dir", str(data_dir), "--out", str(tmp_path / "ft"),
                          "--no-progress"]) == 2
    assert "non-finite weights" in capsys.readouterr().err
    os.replace(path, tmp_path / "run" / "checkpoint-last.npz")
    with pytest.raises(CheckpointError, match="non-finite values.*cannot be continued"):
        train(tiny_config(data_dir, tmp_path / "run"), resume=True)
    assert minivit.load_checkpoint(tmp_path / "run" / "checkpoint-last.npz", allow_non_finite=True)


# --- resume and finetune check what they continue ------------------------------------------------------

def test_resume_refuses_data_with_other_classes(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "run", max_steps=2))
    other = write_image_folder(tmp_path / "other", per_class=16, size=8, classes=("blue", "green", "black"))
    with pytest.raises(DataError, match="has the classes black, blue, green, but the run .* blue, green, red"):
        train(tiny_config(other, tmp_path / "run"), resume=True)


def test_resume_refuses_another_model_shape(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "run", max_steps=2))
    with pytest.raises(CheckpointError, match="model.num_attention_heads: checkpoint 2, requested 4"):
        train(tiny_config(data_dir, tmp_path / "run", model={**TINY_MODEL, "num_attention_heads": 4}), resume=True)


def test_resume_refuses_a_checkpoint_that_holds_no_run(tmp_path, capsys):
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY_MODEL, num_labels=3))
    save_checkpoint(tmp_path / "run" / "checkpoint-last.npz", model)  # weights, but no training options
    assert main(["--resume", "--out", str(tmp_path / "run")]) == 2
    assert "was not written by minivit.train" in capsys.readouterr().err
    with pytest.raises(ValueError, match="options this minivit does not know .*learning_rate"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "learning_rate": 0.1})


def test_finetuning_refuses_a_head_count_other_than_the_checkpoints(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "pre", max_steps=2))
    source = str(tmp_path / "pre" / "checkpoint-last.npz")
    with pytest.raises(FinetuneError, match="num_attention_heads: pretrained 2, requested 4"):
        train(tiny_config(data_dir, tmp_path / "ft", init_from=source, model={"num_attention_heads": 4}))
    with pytest.raises(FinetuneError, match="hidden_act: pretrained 'gelu', requested 'gelu_new'"):
        minivit.finetune.finetune_model(source, hidden_act="gelu_new")
    model = minivit.finetune.finetune_model(source, image_size=12, num_labels=5, hidden_dropout_prob=0.1)
    assert model.config.num_attention_heads == 2  # what finetuning may change, it changes


def test_the_test_split_of_test_every_epoch_is_labelled_by_class_name(tmp_path):
    """Image-folder classes are numbered by their sorted names: a test split without 'green' must
    not call 'red' class 1."""
    data = write_image_folder(tmp_path / "data", per_class=16, size=8)
    import shutil

    shutil.rmtree(data / "test" / "green")
    trainer = Trainer(tiny_config(data, tmp_path / "run", test_every_epoch=True))
    assert trainer.test_set.class_names == ["blue", "green", "red"]
    assert sorted(set(trainer.test_set.labels.tolist())) == [0, 2]
    trainer.run_folder.release()


# --- the advice at the end of a run continues it -----------------------------------------------------

def advice(stderr: str) -> list[str]:
    """The arguments of the 'continue with:' command, for minivit.train.main."""
    command = stderr.split("continue with: ")[1].strip().splitlines()[0]
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "minivit.train"]
    return words[3:]


def test_following_the_advice_after_max_steps_trains_further(data_dir, tmp_path, capsys):
    out = tmp_path / "my run"  # a space: the advice must quote it
    assert main(["--data-dir", str(data_dir), "--out", str(out), "--max-steps", "3", "--epochs", "3",
                 *TINY_FLAGS]) == 0
    continue_args = advice(capsys.readouterr().err)
    assert "--max-steps" in continue_args and "6" in continue_args
    assert main(continue_args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 6 and read_checkpoint(out / "checkpoint-last.npz")[0]["step"] == 6
    assert main(["--resume", "--out", str(out)]) == 0  # without --max-steps: to the end of the schedule
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["finished"]


def test_following_the_advice_after_a_time_budget_trains_further(data_dir, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["--data-dir", str(data_dir), "--out", out, "--time-budget", "0.5", "--epochs", "1000",
                 *TINY_FLAGS]) == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out.strip().splitlines()[-1])
    continue_args = advice(captured.err)
    new_budget = float(continue_args[continue_args.index("--time-budget") + 1])
    assert new_budget > first["elapsed"]
    assert main(["--resume", "--out", out]) == 2  # the same budget again would allow no step: refused, and why
    refusal = capsys.readouterr().err
    assert "--time-budget 0.5" in refusal and "already trained" in refusal and "Give a larger budget" in refusal
    assert main(continue_args) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["elapsed"] >= new_budget  # it trained until the new budget was spent
    assert resumed["step"] > first["step"] and resumed["stop_reason"] == "time budget spent"


def test_a_resumed_limit_that_allows_no_step_is_refused(data_dir, tmp_path):
    train(tiny_config(data_dir, tmp_path / "run", max_steps=3))
    with pytest.raises(ValueError, match=r"--max-steps 3: the run in .* is already at step 3"):
        train(tiny_config(data_dir, tmp_path / "run", max_steps=3), resume=True)
