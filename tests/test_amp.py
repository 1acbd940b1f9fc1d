"""float16 mixed precision (--precision float16): loss scaling on the device, float32 master weights,
skipped steps on overflow; run on the simulated GPU (the float16 kernels compute in float32)."""

import json

import numpy as np
import pytest
from synthetic_data import write_image_folder

from minivit import amp, backend, ops
from minivit.checkpoint import read_checkpoint
from minivit.train import main as train_main


@pytest.fixture(params=["numpy", "cupy-sim"])
def on_backend(request):
    backend.use(request.param)
    yield request.param
    backend.use("numpy")


def test_unscaling_divides_out_the_scale_and_flags_an_overflow(on_backend):
    xp = backend.xp
    scaler = amp.LossScaler(init_scale=1024.0)
    grad = backend.asarray(np.array([1024.0, -2048.0, 512.0], dtype=np.float16))
    out = xp.zeros(3, dtype=xp.float32)
    scaler.unscale(grad, out)
    np.testing.assert_array_equal(backend.to_numpy(out), [1.0, -2.0, 0.5])
    assert float(backend.to_numpy(scaler.found_inf)[0]) == 0.0
    scaler.unscale(backend.asarray(np.array([1.0, np.inf, 0.0], dtype=np.float16)), out)
    assert float(backend.to_numpy(scaler.found_inf)[0]) == 1.0


def test_the_scale_backs_off_on_overflow_and_grows_after_clean_steps(on_backend):
    scaler = amp.LossScaler(init_scale=8.0, growth_interval=3)
    scaler.found_inf[...] = 1.0
    scaler.update()
    assert scaler.state_dict() == {"scale": 4.0, "growth_tracker": 0}
    assert float(backend.to_numpy(scaler.found_inf)[0]) == 0.0  # cleared for the next step
    for expected in (1, 2):
        scaler.update()
        assert scaler.state_dict() == {"scale": 4.0, "growth_tracker": expected}
    scaler.update()
    assert scaler.state_dict() == {"scale": 8.0, "growth_tracker": 0}


def test_a_skipped_step_changes_nothing(on_backend):
    xp = backend.xp
    arrays = [backend.asarray(np.linspace(0.1, 1, 7)) for _ in range(4)]
    before = [backend.to_numpy(a).copy() for a in arrays]
    ops.adamw_update(*arrays, 0.1, 1.0, 0.05, 0.9, 0.999, 1e-8, 3, skip=xp.ones(1, dtype=xp.float32))
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(backend.to_numpy(a), b)
    ops.adamw_update(*arrays, 0.1, 1.0, 0.05, 0.9, 0.999, 1e-8, 3, skip=xp.zeros(1, dtype=xp.float32))
    assert not np.array_equal(backend.to_numpy(arrays[0]), before[0])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=16, size=8)


def test_float16_training_learns_saves_float32_weights_and_resumes(images, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--data-dir", str(images), "--out", str(run), "--image-size", "8", "--patch-size", "4",
              "--hidden-size", "16", "--num-hidden-layers", "1", "--num-attention-heads", "2",
              "--intermediate-size", "32", "--batch-size", "8", "--val-fraction", "0.25", "--no-progress",
              "--backend", "cupy-sim", "--precision", "float16", "--lr", "3e-3"]
    assert train_main([*common, "--epochs", "12", "--max-steps", "20"]) == 0
    capsys.readouterr()
    meta, weights, _ = read_checkpoint(run / "checkpoint-last.npz")
    assert meta["dtype"] == "float32" and all(w.dtype == np.float32 for w in weights.values())
    assert meta["loss_scale"]["scale"] > 0
    assert train_main(["--resume", "--out", str(run), "--backend", "cupy-sim", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["finished"] and result["best_val_accuracy"] >= 0.9  # three colours: easy, also in float16
    rows = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert all(np.isfinite(row["loss"]) for row in rows)


def test_float16_is_refused_on_numpy(images, tmp_path, capsys):
    assert train_main(["--data-dir", str(images), "--out", str(tmp_path / "run"), "--precision", "float16",
                       "--no-progress"]) == 2
    assert "--precision float16 is for a GPU" in capsys.readouterr().err
