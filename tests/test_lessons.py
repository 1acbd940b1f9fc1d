"""Every lesson notebook runs top to bottom: fast mode, solutions switched in, on generated data.

Each notebook is built from lessons/src/ (as lessons/build.py does) and executed with nbclient;
any cell that raises, a failing check included, fails the test.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons" / "src").glob("[0-9][0-9]_*.py"))
sys.path.insert(0, str(ROOT / "lessons"))

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


@pytest.fixture(scope="module")
def lesson_data(tmp_path_factory):
    from datasets import write_cifar_batches

    root = tmp_path_factory.mktemp("lesson-data")
    write_cifar_batches(root, per_batch=40, test_size=40)
    return root


def test_every_lesson_has_a_source():
    assert [path.stem[:2] for path in LESSONS] == [f"{n:02d}" for n in range(1, len(LESSONS) + 1)]
    assert len(LESSONS) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("source", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_runs_top_to_bottom(source, lesson_data, monkeypatch, tmp_path):
    import build

    monkeypatch.setenv("MINIVIT_FAST", "1")
    monkeypatch.setenv("MINIVIT_SOLUTIONS", "1")
    monkeypatch.setenv("MINIVIT_DATA_DIR", str(lesson_data))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "lessons")]))
    notebook = build.build(source)
    assert any(cell.cell_type == "markdown" and "Goals" in cell.source for cell in notebook.cells)
    assert any("@exercise" in cell.source for cell in notebook.cells), "a lesson needs an exercise"
    build.run(notebook, timeout=300)
    outputs = "".join(str(output.get("text", "")) for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.get("outputs", []))
    assert "PASS" in outputs


def test_exercises_raise_until_solved(monkeypatch):
    """Without the solutions an exercise is the learner's stub, and it says what to do."""
    monkeypatch.delenv("MINIVIT_SOLUTIONS", raising=False)
    import importlib

    import lesson_support

    importlib.reload(lesson_support)

    @lesson_support.exercise
    def patches_by_reshape(x, patch_size):
        raise NotImplementedError("Exercise 1: write patches_by_reshape")

    with pytest.raises(NotImplementedError, match="Exercise 1"):
        patches_by_reshape(None, 4)
    monkeypatch.setenv("MINIVIT_SOLUTIONS", "1")
    importlib.reload(lesson_support)
    assert lesson_support.exercise(patches_by_reshape).__module__ == "solutions"
