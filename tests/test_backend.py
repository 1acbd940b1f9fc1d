"""The backend switch, and the rule that only backend.py picks the array library."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HAS_CUPY

from minivit import backend

PACKAGE = Path(__file__).resolve().parents[1] / "minivit"

# Host-side modules import NumPy on purpose: they read files, decode images,
# unpickle, save checkpoints or draw initial values on the CPU. Everything else
# (ops, modules, optimizers, augmentation, losses) must use backend.xp.
HOST_SIDE = {"backend.py", "init.py", "convert.py", "checkpoint.py", "data", "plots.py",
             "evaluate.py", "train.py"}
# visualize.py analyses a trained model after the fact (PCA, distances, rollout) on the host.
HOST_SIDE |= {"visualize.py"}
# minivit/fused/cpu.py holds numba kernels, which take NumPy arrays by definition; the
# readable path they replace (minivit/ops) stays backend-agnostic and is tested against them.
HOST_SIDE |= {"fused"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_modules_do_not_import_numpy_or_cupy():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in HOST_SIDE:
            continue
        imports = imported_modules(path) & {"numpy", "cupy", "cupyx", "scipy"}
        if imports:
            offenders.append(f"{relative}: imports {', '.join(sorted(imports))}")
    assert not offenders, "array math must go through minivit.backend.xp:\n" + "\n".join(offenders)


def test_the_check_would_catch_an_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\nfrom cupy import asarray\n")
    assert imported_modules(bad) == {"numpy", "cupy"}


def test_numpy_is_the_default():
    assert backend.name == "numpy" and backend.xp is np


def test_asarray_and_to_numpy_round_trip():
    host = np.arange(6.0).reshape(2, 3)
    device = backend.asarray(host, dtype="float32")
    assert device.dtype == np.float32
    np.testing.assert_array_equal(backend.to_numpy(device), host)


@pytest.mark.skipif(HAS_CUPY, reason="CuPy and a GPU are present here")
def test_asking_for_cupy_without_it_says_how_to_fix_it():
    with pytest.raises(RuntimeError, match=r"(needs CuPy, which is not installed|cannot reach a GPU|found no GPU)"):
        backend.use("cupy")
    assert backend.name == "numpy"  # a failed switch changes nothing


@pytest.mark.skipif(HAS_CUPY, reason="CuPy and a GPU are present here")
def test_environment_variable_selects_the_backend():
    env = {**os.environ, "MINIVIT_BACKEND": "cupy"}
    result = subprocess.run([sys.executable, "-c", "import minivit"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "cupy backend" in result.stderr


def test_same_seed_same_weights_on_every_backend(backend_name):
    """Initial values are drawn on the host, so the backend does not change them."""
    import minivit

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=8, num_labels=3)
    backend.use("numpy")
    on_numpy = minivit.ViTForImageClassification(config, seed=3).state_dict()
    backend.use(backend_name)
    here = minivit.ViTForImageClassification(config, seed=3).state_dict()
    for name in on_numpy:
        np.testing.assert_array_equal(here[name], on_numpy[name], err_msg=name)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batched_matmul_splits_the_stack_and_gives_the_same_result(monkeypatch, threads):
    monkeypatch.setattr(backend, "num_threads", threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 2, 4, 3)).astype("float32")
    b = rng.standard_normal((5, 2, 3, 6)).astype("float32")
    np.testing.assert_array_equal(backend.batched_matmul(a, b), a @ b)
    out = np.zeros((5, 2, 8, 6), dtype="float32")[:, :, ::2]  # a strided view, as attention passes
    assert backend.batched_matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, a @ b)
    np.testing.assert_array_equal(backend.batched_matmul(a, b[:1]), a @ b[:1])  # broadcasting


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_addmm_adds_the_bias_inside_the_product(dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5)).astype(dtype)
    b = rng.standard_normal((5, 3)).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    expected = a.astype("float64") @ b.astype("float64") + bias
    tolerance = 1e-5 if dtype == "float32" else 1e-13
    out = backend.addmm(bias, a, b)
    assert out.shape == (7, 3) and out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    # layouts BLAS cannot take without a copy go the plain way, with the same result
    np.testing.assert_allclose(backend.addmm(bias, a, np.asfortranarray(b)), expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(backend.addmm(bias, a[::2], b), expected[::2], rtol=tolerance, atol=tolerance)
    assert backend.addmm(bias, a[:0], b).shape == (0, 3)
