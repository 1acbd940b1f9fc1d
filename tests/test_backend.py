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
             "evaluate.py", "train.py", "training", "atomic.py", "weight_readers.py"}
# visualize.py analyses a trained model after the fact (PCA, distances, rollout) on the host.
HOST_SIDE |= {"visualize.py"}
# minivit/kernels/cpu*.py hold the CPU's fast kernels, which take NumPy arrays by definition;
# the references they replace (minivit/ops) stay backend-agnostic and are tested against them.
# kernels/gpu/ and kernels/nvrtc.py hold CUDA kernels, which take CuPy arrays by definition.
# minivit/sim/ is the simulated GPU: it wraps NumPy arrays by definition.
HOST_SIDE |= {"kernels", "sim"}
# sample_random.py makes the counter-based streams' integer keys on the host (ops.sample_uniform draws on the backend).
HOST_SIDE |= {"sample_random.py"}
# minivit/distributed moves buffers between processes: MPI takes NumPy arrays, NCCL CuPy's (CuPy's NCCL
# bindings, or their simulation's, which is host memory).
HOST_SIDE |= {"distributed"}


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


# What minivit/ops (the reference) may import: the backend's namespace, its sibling ops, and the
# standard library's math and typing. No fast path, no BLAS, no thread pools.
OPS_MAY_IMPORT = {"minivit.backend", "minivit", "minivit.ops", "math", "typing", "__future__"}


def ops_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # a relative import stays inside minivit.ops
                module = "minivit.ops"
            if module == "minivit":
                names.update(f"minivit.{alias.name}" for alias in node.names)
            else:
                names.add(module)
    return names


def test_the_reference_imports_nothing_but_the_backend_and_itself():
    offenders = []
    for path in sorted((PACKAGE / "ops").glob("*.py")):
        for name in ops_imports(path):
            if name in OPS_MAY_IMPORT or name.startswith("minivit.ops."):
                continue
            offenders.append(f"ops/{path.name}: imports {name}")
    assert not offenders, "minivit/ops is the plain reference:\n" + "\n".join(offenders)


def test_the_reference_rule_would_catch_a_fast_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from minivit.kernels import cpu\nfrom minivit import dispatch\nimport scipy.linalg\n")
    assert ops_imports(bad) == {"minivit.kernels", "minivit.dispatch", "scipy.linalg"}


NO_SIDE_EFFECTS = """
import os, sys
before = dict(os.environ)
import numpy
import minivit, minivit.dispatch, minivit.kernels, minivit.kernels.cpu, minivit.train, minivit.optim
import numba
assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
assert numba.config.THREADING_LAYER == "default", numba.config.THREADING_LAYER
print("ok")
"""


def test_importing_minivit_changes_nothing_in_the_process():
    """No environment variables, no numba threading layer (and no allocator settings: see tuning.py)."""
    pytest.importorskip("numba")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "MINIVIT_KERNELS")}
    result = subprocess.run([sys.executable, "-c", NO_SIDE_EFFECTS], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


SPIN_PROBE = """
import resource, sys, time
import numpy as np
a = np.random.default_rng(0).random((400, 400))
def cpu_seconds_while_asleep():
    a @ a  # wakes OpenBLAS's worker threads
    before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(0.1)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
from minivit.kernels import tune_process
if sys.argv[1] == "tune":
    tune_process()
print(min(cpu_seconds_while_asleep() for _ in range(3)))
"""


def test_tune_process_works_after_numpy_was_imported():
    """OpenBLAS's idle workers spin for ~0.1 s after a product, burning a core while the main thread
    sleeps; after tune_process() (NumPy imported first, as in a notebook) they sleep at once."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: OpenBLAS runs no worker threads to spin")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    untuned = float(subprocess.run([sys.executable, "-c", SPIN_PROBE, "leave"], env=env, capture_output=True,
                                   text=True, check=True).stdout)
    tuned = float(subprocess.run([sys.executable, "-c", SPIN_PROBE, "tune"], env=env, capture_output=True,
                                 text=True, check=True).stdout)
    assert tuned < 0.02, f"tuned: {tuned:.3f} s of CPU while asleep for 0.1 s"
    assert untuned > 0.03, f"untuned: {untuned:.3f} s (expected OpenBLAS's spinning, i.e. no side effect of import)"
