"""The command lines end to end on the simulated GPU (--backend cupy-sim): train, resume, evaluate,
finetune. Everything a GPU run does, with CuPy's strictness about host and device data."""

import json

import numpy as np
import pytest
from synthetic_data import write_image_folder

from minivit import backend
from minivit.checkpoint import read_checkpoint
from minivit.evaluate import main as evaluate_main
from minivit.finetune import main as finetune_main
from minivit.train import main as train_main

TINY = ["--image-size", "8", "--patch-size", "4", "--hidden-size", "16", "--num-hidden-layers", "1",
        "--num-attention-heads", "2", "--intermediate-size", "32", "--batch-size", "8", "--val-fraction", "0.25",
        "--no-progress", "--backend", "cupy-sim"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=16, size=8)


@pytest.fixture(autouse=True)
def back_to_numpy():
    yield
    backend.use("numpy")


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_resume_evaluate_and_finetune_on_the_simulated_gpu(images, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--data-dir", str(images), "--out", str(run), "--epochs", "3", *TINY]
    assert train_main([*common, "--max-steps", "5", "--sync-every", "2"]) == 0
    assert last_json(capsys)["step"] == 5
    assert train_main(["--resume", "--out", str(run), "--backend", "cupy-sim", "--no-progress"]) == 0
    result = last_json(capsys)
    assert result["finished"] and result["step"] == 12
    meta, state, optimizer_state = read_checkpoint(run / "checkpoint-last.npz")
    assert meta["step"] == 12 and all(np.isfinite(value).all() for value in state.values())
    assert {key.split("/")[0] for key in optimizer_state if "/" in key} == {"exp_avg", "exp_avg_sq"}

    assert evaluate_main(["--checkpoint", str(run / "checkpoint-last.npz"), "--data-dir", str(images),
                          "--backend", "cupy-sim", "--json"]) == 0
    evaluation = last_json(capsys)
    assert evaluation["num_images"] == 18 and 0.0 <= evaluation["accuracy"] <= 1.0

    finetuned = tmp_path / "finetuned"
    assert finetune_main(["--init-from", str(run / "checkpoint-last.npz"), "--data-dir", str(images), "--out",
                          str(finetuned), "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.25",
                          "--no-progress", "--backend", "cupy-sim", "--classes", "red,blue"]) == 0
    assert last_json(capsys)["finished"]
    assert read_checkpoint(finetuned / "checkpoint-last.npz")[0]["class_names"] == ["red", "blue"]


def test_the_gpu_recipe_runs_on_the_simulated_gpu(images, tmp_path, capsys):
    """cifar-gpu's recipe: RandAugment, mixup, cutmix, dropout (on the GPU kernels' code path)."""
    assert train_main(["--preset", "cifar-gpu", "--data-dir", str(images), "--out", str(tmp_path / "run"),
                       "--epochs", "1", "--test-every-epoch", "--hidden-dropout-prob", "0.1", *TINY]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "test_accuracy" in rows[-1]
