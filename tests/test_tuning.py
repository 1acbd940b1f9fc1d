"""The CPU kernels' process settings (minivit/kernels/tuning.py): applied on the first use of the fast
kernels, not on import; said once; refused with MINIVIT_TUNE=0. Each case runs in a fresh interpreter,
as a notebook or a script starts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from minivit.kernels import tuning

pytest.importorskip("numba")

FIRST_USE = """
import json, resource, sys, time
first = sys.argv[1]
if first == "torch":
    import torch  # noqa: F401
import numpy as np
import minivit
import numba
from minivit.kernels import tuning

def cpu_seconds_while_asleep():
    a = np.random.default_rng(0).random((400, 400))
    a @ a  # wakes OpenBLAS's worker threads
    before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(0.1)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

model = minivit.ViTForImageClassification("cifar-tiny").eval()
after_build = {"tuned": tuning._done is not None, "layer": numba.config.THREADING_LAYER}
images = np.zeros((1, 3, 32, 32), dtype="float32")
with minivit.no_grad():
    model.forward(images)
    model.forward(images)
import ctypes
cores = {path: tuning._corename(ctypes.CDLL(path)) for path in tuning._loaded_openblas_paths()}

def blas_threads(library):
    for name in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads"):
        if hasattr(library, name):
            return getattr(library, name)()

blas = {path: blas_threads(ctypes.CDLL(path)) for path in tuning._loaded_openblas_paths()}
scipy_own = tuning._scipy_openblas()
print(json.dumps({"after_build": after_build, "layer": numba.config.THREADING_LAYER, "done": tuning._done,
                  "moved": tuning.products_on_loop_threads(), "blas_threads": blas,
                  "scipy_blas": scipy_own._name if scipy_own is not None else None,
                  "spin": min(cpu_seconds_while_asleep() for _ in range(3)), "cores": cores,
                  "avx512": tuning._cpu_has_avx512()}))
"""

ANNOUNCEMENT = "minivit: set this process up for the CPU kernels"


def run_first_use(first: str, **environment) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "MINIVIT_KERNELS", "MINIVIT_TUNE", "NUMBA_THREADING_LAYER",
                         "OPENBLAS_CORETYPE", "MINIVIT_PRODUCTS")}
    env.update(environment)
    result = subprocess.run([sys.executable, "-c", FIRST_USE, first], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


@pytest.mark.parametrize("first", ["numpy", "torch"])
def test_the_first_forward_tunes_the_process_and_says_so_once(first):
    if first == "torch":
        pytest.importorskip("torch")
    report, stderr = run_first_use(first)
    assert report["after_build"] == {"tuned": False, "layer": "default"}, \
        f"building a model must change nothing yet: {report['after_build']}"
    # numba's OpenMP threads take the products too where libgomp and an OpenBLAS of SciPy's own are there;
    # else numba's workqueue threads, which sleep between loops
    assert report["layer"] == ("omp" if report["moved"] else "workqueue"), report
    if report["moved"]:
        assert report["done"]["numba_threading_layer"].startswith("omp, the products on its threads"), report
        for path, threads in report["blas_threads"].items():  # SciPy's on one thread, NumPy's left as it was
            scipy_own = os.path.realpath(path) == os.path.realpath(report["scipy_blas"])
            expected = 1 if scipy_own else len(os.sched_getaffinity(0))
            assert threads == expected, (path, report["blas_threads"])
    assert "refused" not in report["done"], report["done"]
    assert stderr.count(ANNOUNCEMENT) == 1, f"expected the settings said once on stderr; got:\n{stderr}"
    if len(os.sched_getaffinity(0)) >= 2:  # one core: OpenBLAS runs no worker threads to spin
        assert report["spin"] < 0.02, f"OpenBLAS's workers still spin: {report['spin']:.3f} s of CPU while asleep"


def test_the_line_says_which_kernels_openblas_runs():
    """With no OPENBLAS_CORETYPE, OpenBLAS chooses from the CPU: its AVX-512 kernels where the CPU has
    them. The line names them, and says nothing about the environment when the environment set nothing."""
    report, stderr = run_first_use("numpy")
    assert report["cores"], "no OpenBLAS loaded after a forward: NumPy's was expected"
    for path, core in report["cores"].items():
        assert f"{core} in {os.path.basename(path)}" in stderr, stderr
        if report["avx512"]:
            assert core.lower() in tuning.AVX512_CORES, report["cores"]
    assert "unset OPENBLAS_CORETYPE" not in stderr


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="Haswell is an x86-64 core type")
def test_an_older_coretype_in_the_environment_is_kept_and_the_fix_is_said():
    report, stderr = run_first_use("numpy", OPENBLAS_CORETYPE="Haswell")
    assert all(core == "Haswell" for core in report["cores"].values()), report["cores"]
    if report["avx512"]:
        assert "OPENBLAS_CORETYPE=Haswell in the environment" in stderr, stderr
        assert "unset OPENBLAS_CORETYPE" in stderr, stderr
    else:
        assert "unset OPENBLAS_CORETYPE" not in stderr, stderr


@pytest.mark.parametrize("choice", ["blas", "loops"])
def test_minivit_products_chooses_where_the_matrix_products_run(choice):
    """blas: the products on OpenBLAS's threads, numba's loops on its workqueue threads. loops: both on
    numba's OpenMP threads, where numba can load GNU OpenMP and SciPy has an OpenBLAS of its own."""
    report, stderr = run_first_use("numpy", MINIVIT_PRODUCTS=choice)
    line = report["done"]["numba_threading_layer"]
    assert stderr.count(ANNOUNCEMENT) == 1, stderr
    if choice == "blas":
        assert not report["moved"] and report["layer"] == "workqueue", report
        assert "MINIVIT_PRODUCTS=blas" in line, line
    elif report["moved"]:
        assert report["layer"] == "omp" and "MINIVIT_PRODUCTS=loops" in line, report
    else:
        assert report["layer"] == "workqueue" and "cannot load GNU OpenMP" in line, report


def test_a_minivit_products_that_names_neither_choice_is_refused_with_both():
    env = {k: v for k, v in os.environ.items() if k not in ("MINIVIT_KERNELS", "MINIVIT_TUNE", "NUMBA_THREADING_LAYER")}
    result = subprocess.run([sys.executable, "-c", FIRST_USE, "numpy"], env={**env, "MINIVIT_PRODUCTS": "fast"},
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "MINIVIT_PRODUCTS='fast' in the environment" in result.stderr, result.stderr
    assert "'loops'" in result.stderr and "'blas'" in result.stderr, result.stderr


def test_minivit_tune_0_leaves_the_process_alone():
    report, stderr = run_first_use("numpy", MINIVIT_TUNE="0")
    assert report["layer"] == "default", report
    assert list(report["done"]) == ["refused"], report["done"]
    assert ANNOUNCEMENT not in stderr, stderr


def test_the_reference_path_leaves_the_process_alone():
    """MINIVIT_KERNELS=reference runs no fast kernel, so nothing needs tuning."""
    report, stderr = run_first_use("numpy", MINIVIT_KERNELS="reference")
    assert report["layer"] == "default" and report["done"] is None, report
    assert ANNOUNCEMENT not in stderr, stderr


LOGGED = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")
import numpy as np
import minivit
model = minivit.ViTForImageClassification("cifar-tiny").eval()
with minivit.no_grad():
    model.forward(np.zeros((2, 3, 32, 32), dtype="float32"))
"""


def test_the_announcement_goes_to_the_minivit_logger_where_logging_shows_it():
    env = {k: v for k, v in os.environ.items() if k not in ("MINIVIT_KERNELS", "MINIVIT_TUNE")}
    result = subprocess.run([sys.executable, "-c", LOGGED], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("minivit " + ANNOUNCEMENT) == 1, result.stdout
    assert ANNOUNCEMENT not in result.stderr, result.stderr
