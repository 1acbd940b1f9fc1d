"""What a run says when it goes wrong or ends: a finite divergence, a model stuck at chance, a full disk or a
file-size limit, the next command to run, notes without flags nobody passed, and the finetuning command's labels.

Tiny models on tiny generated data, as in test_safety.py.
"""

import errno
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_data import write_image_folder
from test_safety import TINY_FLAGS, tiny_config  # the same tiny runs

from minivit import checkpoint
from minivit.checkpoint import read_checkpoint
from minivit.evaluate import main as evaluate_main
from minivit.finetune import main as finetune_main
from minivit.train import TrainConfig, TrainingDiverged, main, train


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=16, size=8)




def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def command_after(stderr: str, label: str) -> list[str]:
    """The words of the command that follows ``label`` in a message."""
    return shlex.split(stderr.split(label)[1].strip().splitlines()[0])


# --- 25.3: a run that diverges without NaN ---------------------------------------------------------------

def test_a_finite_but_enormous_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    def blow_up(trainer, step):
        if step == 5:  # inside epoch 2: logits of about 1e5, a loss far above ln(3) but finite
            trainer.model.classifier.weight.data[...] *= 1e5

    with pytest.raises(TrainingDiverged, match=r"The training loss reached .* more than 10 times the 1\.10 of a model "
                                               r"that guesses .* at step 8 \(epoch 2\): training stopped, and the "
                                               r"diverged weights were not saved\. The last good checkpoint is "
                                               r".*checkpoint-last\.npz \(step 4\)\. The likely cause is a learning "
                                               r"rate too high"):
        train(tiny_config(data_dir, tmp_path / "run", grad_clip=0.0), on_step=blow_up)
    meta, state, _ = read_checkpoint(tmp_path / "run" / "checkpoint-last.npz")
    assert meta["step"] == 4 and np.abs(state["classifier.weight"]).max() < 100
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["step"] for row in rows] == [4]  # the diverged epoch is not logged as one


def test_a_model_at_chance_after_the_warmup_is_warned_about_once_naming_the_step(data_dir, tmp_path, capsys):
    def guess(trainer, step):  # a head of zeros: every prediction the same, the loss exactly ln(3)
        trainer.model.classifier.weight.data[...] = 0
        trainer.model.classifier.bias.data[...] = 0

    result = train(tiny_config(data_dir, tmp_path / "run", epochs=4), on_step=guess)
    assert result["finished"]  # a warning, not a stop: small data can take a while to start
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, warnings
    assert "stayed at chance" in warnings[0] and "for 3 evaluations after the warmup, up to step 12" in warnings[0]
    assert "training loss 1.099" in warnings[0] and "learning rate" in warnings[0]


def test_a_learning_run_gets_no_warning(data_dir, tmp_path, capsys):
    train(tiny_config(data_dir, tmp_path / "run", epochs=4, lr=1e-2))
    assert "warning:" not in capsys.readouterr().err


# --- 25.4: a full disk or a file-size limit while saving ---------------------------------------------------

def test_a_full_disk_while_saving_names_the_file_the_step_the_intact_checkpoint_and_how_to_continue(
        data_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    saves = []
    write = checkpoint.atomic_write

    def disk_full_at_the_second_epoch(path, *args, **kwargs):
        saves.append(path.name)
        if saves.count("checkpoint-last.npz") == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "atomic_write", disk_full_at_the_second_epoch)
    assert main(["--data-dir", str(data_dir), "--out", str(out), "--epochs", "3", *TINY_FLAGS]) == 1
    stderr = capsys.readouterr().err
    error = one_error_line(stderr)
    assert f"Could not write {out / 'checkpoint-last.npz'} at step 8 (epoch 2.00): " in error
    assert "No space left on device: the disk is full" in error
    assert f"The previous checkpoint, {out / 'checkpoint-last.npz'} (step 4), is intact" in error
    assert read_checkpoint(out / "checkpoint-last.npz")[0]["step"] == 4
    assert not list(out.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint, "atomic_write", write)  # space freed: the advice continues the run
    assert main(command_after(error, "continue from it with: ")[3:]) == 0
    assert read_checkpoint(out / "checkpoint-last.npz")[0]["step"] == 12


def test_a_file_size_limit_while_saving_is_said_in_one_line(data_dir, tmp_path):
    """A real limit (ulimit -f), in a process of its own: the checkpoint is the first file larger than it."""
    script = (
        "import resource, sys\n"
        "from minivit.train import main\n"
        "warm = main(sys.argv[3:] + ['--out', sys.argv[2] + '-warm'])  # compiled loops cached before the limit\n"
        "limit = int(sys.argv[1])\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
        "sys.exit(main(sys.argv[3:] + ['--out', sys.argv[2]]))\n")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    finished = subprocess.run([sys.executable, "-c", script, "8192", str(out), "--data-dir", str(data_dir),
                               "--epochs", "2", *TINY_FLAGS], capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 1, finished.stderr
    error = one_error_line(finished.stderr)
    assert f"Could not write {out / 'checkpoint-last.npz'} at step 4 (epoch 1.00): File too large: a limit on the " \
           "size of files was reached. No checkpoint had been written yet" in error
    assert (tmp_path / "run-warm" / "checkpoint-last.npz").stat().st_size > 8192  # the limit was the cause
    assert not (out / "checkpoint-last.npz").exists() and not list(out.glob(".*.tmp"))


# --- 28.3: the end of a run names the next command -------------------------------------------------------

def test_the_end_of_a_run_names_the_evaluate_command_and_it_runs(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--data-dir", str(data_dir), "--out", str(out), "--epochs", "1", *TINY_FLAGS]) == 0
    stderr = capsys.readouterr().err
    assert "next: evaluate the model (its best validation checkpoint) on the test split: " in stderr
    command = command_after(stderr, "on the test split: ")
    assert command[:3] == ["python", "-m", "minivit.evaluate"]
    assert evaluate_main([*command[3:], "--figure", str(tmp_path / "confusion.png")]) == 0


# --- 28.7 and 28.8: finetuning's labels and defaults; notes without flags -----------------------------------

@pytest.fixture(scope="module")
def cifar_cpu_checkpoint(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained") / "run"
    train(tiny_config(data_dir, out, preset="cifar-cpu", epochs=1))
    return out / "checkpoint-best.npz"


def test_a_model_finetuned_from_a_cifar_cpu_checkpoint_is_labelled_cifar_cpu(cifar_cpu_checkpoint, data_dir,
                                                                             tmp_path, capsys):
    out = tmp_path / "finetuned"
    assert finetune_main(["--init-from", str(cifar_cpu_checkpoint), "--data-dir", str(data_dir), "--out", str(out),
                          "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.25"]) == 0
    stderr = capsys.readouterr().err
    assert json.loads((out / "train_config.json").read_text())["preset"] == "cifar-cpu"
    assert "cifar-cpu on numpy" in stderr and "cifar-tiny" not in stderr  # the progress bar's name
    assert "next: evaluate the finetuned model" in stderr
    saved = json.loads((out / "train_config.json").read_text())  # resumed as a notebook would: the default preset
    assert train(TrainConfig.from_dict({**saved, "preset": "cifar-tiny"}), resume=True)["finished"]


def test_the_finetuning_help_shows_the_finetuning_recipe(capsys):
    with pytest.raises(SystemExit):
        finetune_main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for flag, default in (("--epochs EPOCHS", "30"), ("--lr LR", "0.0005"), ("--batch-size BATCH_SIZE", "64"),
                          ("--warmup-epochs WARMUP_EPOCHS", "3")):
        assert f"{flag} default: {default} " in shown, flag
    assert "(default runs/finetune)" in shown and "runs/<preset>" not in shown


def test_a_note_names_no_flag_the_user_did_not_pass(data_dir, tmp_path, capsys):
    """The warmup of a recipe (or of a notebook's TrainConfig) cut to half the run: said without a flag."""
    train(tiny_config(data_dir, tmp_path / "run", epochs=2, warmup_epochs=3))
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert notes == ["note: a warmup of 3 epochs is more than half of this run's 2 epochs: the warmup is cut to "
                     "4 steps, half the schedule."]


# --- 23.2: a resumed run reads its checkpoint once ---------------------------------------------------------

def test_resuming_from_the_command_line_reads_the_checkpoint_once(data_dir, tmp_path, monkeypatch):
    """Once in all: the weights, the optimizer's state and the moving average of the weights (--ema)."""
    from minivit import checkpoint

    out = str(tmp_path / "run")
    assert main(["--data-dir", str(data_dir), "--out", out, "--epochs", "2", "--max-steps", "4", "--ema", "0.9",
                 *TINY_FLAGS]) == 0
    reads = []
    read = checkpoint.read_npz
    monkeypatch.setattr(checkpoint, "read_npz", lambda path: reads.append(Path(path)) or read(path))
    assert main(["--resume", "--out", out]) == 0
    assert [path.name for path in reads] == ["checkpoint-last.npz"]
    assert read_checkpoint(tmp_path / "run" / "checkpoint-last.npz")[0]["step"] == 8
