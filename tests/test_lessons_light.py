"""The lessons run in the light environment of requirements-lessons.txt: without torch, transformers,
CuPy or MPI, the lessons that use them (6 and 10 compare with PyTorch, 9 runs on a GPU, 12 starts
MPI ranks) still run top to bottom, and say what they skipped.

The environment is made by hiding those packages (tests/light_environment/sitecustomize.py on the
kernel's PYTHONPATH); the lessons run in fast mode with the solutions, as in test_lessons.py.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lessons"))

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("jupytext")

# lesson: what it says in place of what it skips
SAYS_WHAT_IT_SKIPS = {
    "06_whole_model": "against golden file",
    "09_gpu": "No GPU here",
    "10_pretrain_finetune": "PyTorch is not installed here",
    "12_data_parallel": "",  # without MPI: "No MPI here" (mpiexec absent) or the ranks' failure (mpi4py absent)
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SAYS_WHAT_IT_SKIPS))
def test_lesson_runs_without_torch_cupy_or_mpi(name, tmp_path, monkeypatch):
    import build
    from synthetic_data import write_cifar_batches
    from test_lessons import outputs_of

    write_cifar_batches(tmp_path / "data", per_batch=40, test_size=40)
    monkeypatch.setenv("MINIVIT_FAST", "1")
    monkeypatch.setenv("MINIVIT_SOLUTIONS", "1")
    monkeypatch.setenv("MINIVIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MINIVIT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests" / "light_environment"), str(ROOT),
                                                      str(ROOT / "lessons")]))
    notebook = build.build(ROOT / "lessons" / "src" / f"{name}.py")
    build.run(notebook, timeout=300)
    text = outputs_of(notebook)
    assert "PASS" in text and "NOT YET" not in text
    assert SAYS_WHAT_IT_SKIPS[name] in text


def test_the_light_environment_hides_the_heavy_packages(tmp_path):
    import subprocess

    code = "import importlib.util, numpy\ntry:\n    import torch\nexcept ImportError as e:\n    print('hidden', e)\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "tests" / "light_environment")})
    assert run.stdout.startswith("hidden No module named 'torch'"), run.stdout + run.stderr
