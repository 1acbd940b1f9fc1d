"""Every lesson notebook runs top to bottom in fast mode with the solutions switched in, on data the
tests generate: the official CIFAR-10 python format and an image folder (each lesson that reads
images runs on both; real CIFAR-10, as an image folder of JPEGs, is how the committed notebooks
are made). A failing check stops the run, so every check's PASS is asserted.

Also asserted: each lesson's structure (goals, exercises with a check, questions with their
answers, a recap), no absolute path of the machine in any output (here or in the committed
notebooks), the committed notebooks built from the current sources, and a learner's passing
function kept and read back into the engine.
"""

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons" / "src").glob("[0-9][0-9]_*.py"))
sys.path.insert(0, str(ROOT / "lessons"))

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("jupytext")

READS_IMAGES = {path.stem for path in LESSONS if re.search(r"\b(load_images|data_dir)\(", path.read_text())}
RUNS = [pytest.param(path, layout, id=f"{path.stem}-{layout}") for path in LESSONS
        for layout in (("cifar-python", "image-folder") if path.stem in READS_IMAGES else ("cifar-python",))]


@pytest.fixture(scope="module")
def lesson_data(tmp_path_factory):
    """CIFAR-10's python batches (random pixels, CIFAR's ten classes), and an image folder that is
    not CIFAR at all (three colour classes, 8 x 8 PNGs): the lessons resize and pick classes."""
    from synthetic_data import write_cifar_batches, write_image_folder

    root = tmp_path_factory.mktemp("lesson-data")
    write_cifar_batches(root / "cifar-python", per_batch=40, test_size=40)
    write_image_folder(root / "image-folder")
    return root


@pytest.fixture(scope="module")
def lesson_runs(tmp_path_factory):
    """The lessons' training runs, one folder per data layout (lesson 11 caches its own model there)."""
    return tmp_path_factory.mktemp("lesson-runs")


def outputs_of(notebook) -> str:
    """Everything a reader sees in the outputs: streams, errors, text and Markdown displays."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(str(output.get("text", "")))
            texts.append("\n".join(output.get("traceback", [])) + str(output.get("evalue", "")))
            data = output.get("data", {})
            texts += [str(data.get(kind, "")) for kind in ("text/plain", "text/markdown", "text/html")]
    return "\n".join(texts)


ABSOLUTE_PATH = re.compile(r"(?<![\w.~$])(/(home|root|tmp|work|Users|var|opt|usr|private)/|[A-Z]:\\\\)")


def test_every_lesson_has_a_source():
    assert [path.stem[:2] for path in LESSONS] == [f"{n:02d}" for n in range(1, len(LESSONS) + 1)]
    assert len(LESSONS) >= 11


def test_every_lesson_has_its_support_module_and_solution_names_are_unique():
    """A lesson is its source and its module lessons/support/lessonNN.py (checks, solutions, answers);
    a second solution of the same name in another lesson is refused (an exercise names one)."""
    from support import exercises

    assert exercises.lesson_numbers() == [int(path.stem[:2]) for path in LESSONS]

    def linear_backward(dout, cache):
        return None

    linear_backward.__module__ = "support.lesson99"
    exercises.solution_of("linear_backward")  # every lesson's solutions registered
    with pytest.raises(ValueError, match="two solutions named linear_backward"):
        exercises.solution(linear_backward)
    assert exercises.solution_of("linear_backward").__module__ == "support.lesson02"


@pytest.mark.parametrize("source", LESSONS, ids=[path.stem for path in LESSONS])
def test_lesson_structure(source):
    """Goals, exercises (each checked: test_lesson_checks.py), staged hints, questions with as many
    answers, the answers cell, a recap."""
    import build
    from support.exercises import lesson_module

    number = int(source.stem[:2])
    notebook = build.build(source)
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert notebook.cells[0].source.startswith(f"# Lesson {number} ")
    assert "**Goals.**" in markdown and "@exercise" in code
    assert "<details><summary>" in markdown, "an exercise needs hints that unfold"
    questions = markdown.split("## Questions", 1)[1].split("## What you built")[0]
    assert len(re.findall(r"^\d+\. ", questions, flags=re.M)) == len(lesson_module(number).ANSWERS)
    assert f"show_answers({number})" in code
    assert notebook.cells[-1].cell_type == "markdown" and notebook.cells[-1].source.startswith("## What you built")


@pytest.mark.slow
@pytest.mark.parametrize("source, layout", RUNS)
def test_lesson_runs_top_to_bottom(source, layout, lesson_data, lesson_runs, monkeypatch):
    import build

    monkeypatch.setenv("MINIVIT_FAST", "1")
    monkeypatch.setenv("MINIVIT_SOLUTIONS", "1")
    monkeypatch.setenv("MINIVIT_DATA_DIR", str(lesson_data / layout))
    monkeypatch.setenv("MINIVIT_RUNS_DIR", str(lesson_runs / layout))  # not the repository's runs/
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "lessons")]))
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "MINIVIT_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")  # fast mode's models are tiny: threads only contend for the cores
    notebook = build.build(source)
    build.run(notebook, timeout=300)
    text = outputs_of(notebook)
    assert "PASS" in text and "NOT YET" not in text
    for path in {str(ROOT), str(lesson_data), sys.prefix, os.path.realpath(sys.prefix)}:
        assert path not in text, f"an output shows the absolute path {path}"
    assert not ABSOLUTE_PATH.search(text), ABSOLUTE_PATH.search(text)


@pytest.mark.parametrize("notebook_path", sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda path: path.stem)
def test_committed_notebooks_are_built_from_the_sources_and_name_no_machine_paths(notebook_path):
    import build
    import nbformat

    committed = nbformat.read(notebook_path, as_version=4)
    source = ROOT / "lessons" / "src" / f"{notebook_path.stem}.py"
    assert source.is_file(), f"{notebook_path.name} has no source in lessons/src/"
    built = build.build(source)
    assert [cell.source for cell in committed.cells] == [cell.source for cell in built.cells], \
        f"{notebook_path.name} is not the output of lessons/build.py for {source.name}: rebuild it"
    match = ABSOLUTE_PATH.search(outputs_of(committed))
    assert match is None, f"{notebook_path.name} shows a machine path: ...{outputs_of(committed)[match.start():][:80]}"
    assert "NOT YET" not in outputs_of(committed)


def test_markdown_only_copies_the_prose_and_keeps_code_and_outputs(tmp_path, capsys):
    """--markdown-only updates a committed notebook's Markdown when its code is the source's, keeping
    every output; when a code cell changed it refuses and says to rebuild the lesson."""
    import build
    import nbformat

    source = tmp_path / "src" / "01_tiny.py"
    source.parent.mkdir()
    source.write_text("# %% [markdown]\n# # Lesson 1 — tiny\n\n# %%\nprint(6 * 7)\n\n"
                      "# %% [markdown]\n# It printed 42.\n")
    committed = build.build(source)
    committed.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    committed.cells[1].execution_count = 1
    nbformat.write(committed, tmp_path / "01_tiny.ipynb")

    source.write_text(source.read_text().replace("It printed 42.", "It printed 42, six times seven."))
    updated = build.sync_markdown(source, nbformat.read(tmp_path / "01_tiny.ipynb", as_version=4))
    assert [cell.source for cell in updated.cells] == [cell.source for cell in build.build(source).cells]
    assert updated.cells[1].outputs[0].text == "42\n" and updated.cells[1].execution_count == 1

    source.write_text(source.read_text().replace("print(6 * 7)", "print(7 * 6)"))
    with pytest.raises(build.CodeChanged, match=r"code cell 2 .*rebuild it in full \(python lessons/build.py 01\)"):
        build.sync_markdown(source, nbformat.read(tmp_path / "01_tiny.ipynb", as_version=4))
    source.write_text(source.read_text() + "\n# %%\nprint('one more cell')\n")
    with pytest.raises(build.CodeChanged, match="4 cells where its notebook has 3"):
        build.sync_markdown(source, nbformat.read(tmp_path / "01_tiny.ipynb", as_version=4))


def test_exercises_raise_until_solved(monkeypatch):
    """Without the solutions an exercise is the learner's stub, and it says what to do; with them it
    is the solution from the lesson's own module."""
    import support
    from support import settings

    monkeypatch.setattr(settings, "SOLUTIONS", False)

    @support.exercise
    def patches_by_reshape(x, patch_size):
        raise NotImplementedError("Exercise 1: write patches_by_reshape")

    with pytest.raises(NotImplementedError, match="Exercise 1"):
        patches_by_reshape(None, 4)
    monkeypatch.setattr(settings, "SOLUTIONS", True)
    assert support.exercise(patches_by_reshape).__module__ == "support.lesson01"


def test_a_passing_function_is_kept_and_runs_inside_the_engine(monkeypatch, tmp_path, capsys):
    """A learner's notebook function that passes its check is kept in lessons/mine/ and read back by
    my_functions(); use_mine then runs the model on it."""
    import numpy as np
    import support
    from support import settings

    monkeypatch.setattr(settings, "SOLUTIONS", False)
    monkeypatch.setattr(settings, "MINE", tmp_path / "mine")
    cell = tmp_path / "cell.py"  # a notebook cell: a function of module __main__, with its source
    cell.write_text("@exercise\ndef layernorm_backward(dout, cache):\n"
                    "    xhat, rstd, gamma = cache\n"
                    "    D = dout.shape[-1]\n"
                    "    dxhat = dout * gamma\n"
                    "    dx = rstd * (dxhat - dxhat.mean(-1, keepdims=True)\n"
                    "                 - xhat * (dxhat * xhat).mean(-1, keepdims=True))\n"
                    "    return dx, (dout * xhat).reshape(-1, D).sum(0), dout.reshape(-1, D).sum(0)\n")
    namespace = {"__name__": "__main__", "exercise": support.exercise}
    exec(compile(cell.read_text(), str(cell), "exec"), namespace)
    from support import lesson05

    lesson05.check_layernorm_backward(namespace["layernorm_backward"])
    assert (tmp_path / "mine" / "layernorm_backward.py").is_file()
    mine = support.my_functions()
    assert list(mine) == ["layernorm_backward"] and "layernorm_backward (lesson 5)" in capsys.readouterr().out

    import minivit
    from minivit.gradcheck import check_model

    counter = support.CallCounter(mine)
    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=12, num_labels=3, initializer_range=0.5)
    with support.use_mine(**counter.functions):
        report = check_model(minivit.ViTForImageClassification(config, dtype="float64").eval(),
                             np.random.default_rng(0).standard_normal((2, 3, 8, 8)), max_elements=8)
    assert counter.calls["layernorm_backward"] > 0 and report.max_rel_error < 1e-6


def test_no_data_names_minivit_data_dir(monkeypatch, tmp_path):
    import support

    monkeypatch.setenv("MINIVIT_DATA_DIR", str(tmp_path / "nowhere"))
    from minivit.data import DataError

    with pytest.raises(DataError, match="MINIVIT_DATA_DIR"):
        support.load_images("train", count=4)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("MINIVIT_DATA_DIR", str(empty))
    with pytest.raises(DataError, match="MINIVIT_DATA_DIR"):
        support.data_dir()
    with pytest.raises(DataError) as failure:
        support.load_images("train", count=4)
    assert str(failure.value).count(support.data.HOW_TO_SET) == 1, "how to set MINIVIT_DATA_DIR, said twice"


def test_a_redrawn_progress_bar_is_kept_as_its_last_state():
    """build.py joins a cell's stream outputs and keeps what a terminal shows after carriage returns."""
    import build
    import nbformat

    outputs = [nbformat.v4.new_output("stream", name="stderr", text="bar 10%\r"),
               nbformat.v4.new_output("stream", name="stderr", text="bar 50%\rbar 100%\ndone\n"),
               nbformat.v4.new_output("stream", name="stdout", text="printed\n")]
    settled = build.settled_streams(outputs)
    assert [output["name"] for output in settled] == ["stderr", "stdout"]
    assert settled[0]["text"] == "bar 100%\ndone\n"
