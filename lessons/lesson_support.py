"""Helpers shared by the lessons: data, fast mode, exercises, your functions in the engine, answers.

Environment variables (set them before starting Jupyter, or in a notebook's first cell with
``os.environ[...] = ...`` before this module is imported):

    MINIVIT_DATA_DIR     CIFAR-10: the official python folder (cifar-10-batches-py, or the folder
                         holding it) or an image folder DIR/train/<class>/*.png|jpg. Without it the
                         lessons download CIFAR-10 (170 MB) into data/ at the repository's root.
    MINIVIT_FAST=1       tiny models and few steps: every lesson runs in seconds.
    MINIVIT_SOLUTIONS=1  the exercises use the solutions in lessons/solutions.py (and the answers
                         to the questions are shown).
    MINIVIT_ANSWERS=1    show the answers to the questions, without switching in the solutions.
    MINIVIT_RUNS_DIR     where the lessons' training runs go (default: runs/ at the repository's root).

Your functions in the engine: when an exercise that writes one of the engine's operations
(linear_backward, softmax_backward, attention_forward, ...) passes its check, its source is kept
in lessons/mine/<name>.py. ``my_functions()`` reads them back, and ``use_mine(**my_functions())``
(minivit.dispatch.use_mine) runs the whole model on them: lesson 6 checks and overfits with your
code, lesson 8 trains with it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import textwrap
from pathlib import Path

import numpy as np

FAST = os.environ.get("MINIVIT_FAST") == "1"
SOLUTIONS = os.environ.get("MINIVIT_SOLUTIONS") == "1"
ANSWERS = SOLUTIONS or os.environ.get("MINIVIT_ANSWERS") == "1"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MINE = HERE / "mine"  # your passing exercises that are engine operations (not committed)
RUNS = Path(os.environ.get("MINIVIT_RUNS_DIR", "").strip() or REPO / "runs")  # the lessons' training runs

# The exercises whose functions the engine can run, by the engine's name, and the lesson that writes each.
ENGINE_EXERCISES = {
    "linear_backward": 2,
    "cls_concat_backward": 3,
    "softmax_backward": 4,
    "attention_forward": 4,
    "attention_backward": 4,
    "layernorm_backward": 5,
}


# --- exercises ------------------------------------------------------------------------------------

def exercise(learner_function):
    """Decorator for an exercise: with MINIVIT_SOLUTIONS=1 the solution of the same name replaces it."""
    if not SOLUTIONS:
        return learner_function
    import solutions

    return getattr(solutions, learner_function.__name__)


def check(passed: bool, what: str, detail: str = "", yours=None, expected=None, hint: str = "") -> None:
    """Print PASS with your value beside the expected one, or raise NotYet with what is off
    (a notebook run stops there, loudly)."""
    from checks import check_true

    check_true(passed, what, yours, expected, " ".join(part for part in (detail, hint) if part))


def check_close(actual, expected, what: str, atol: float = 1e-6, **hints) -> None:
    """Arrays equal to within ``atol`` (shape first, then a diagnosis; see checks.diagnose)."""
    from checks import check_array

    check_array(actual, expected, what, rtol=0.0, atol=atol, **hints)


# --- data -----------------------------------------------------------------------------------------

HOW_TO_SET = ("Set MINIVIT_DATA_DIR to a folder holding CIFAR-10 (cifar-10-batches-py from "
              "https://www.cs.toronto.edu/~kriz/cifar.html, or an image folder DIR/train/<class>/*.png|jpg "
              "and DIR/test/<class>/...): `export MINIVIT_DATA_DIR=/path/to/cifar10` before "
              "`jupyter lab`, or `import os; os.environ['MINIVIT_DATA_DIR'] = '/path/to/cifar10'` in the "
              "first cell, then restart the kernel.")


def shown_path(path) -> str:
    """``path`` as a notebook should print it: relative to the repository, never the machine's absolute path."""
    path = Path(path)
    for root, name in ((REPO, "."), (Path.home(), "~")):
        try:
            return str(Path(name) / path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    data = os.environ.get("MINIVIT_DATA_DIR")
    if data:
        try:
            return str(Path("$MINIVIT_DATA_DIR") / path.resolve().relative_to(Path(data).expanduser().resolve()))
        except ValueError:
            pass
    return f".../{path.name}"


def data_dir() -> str:
    """Where CIFAR-10 is: MINIVIT_DATA_DIR, or data/ at the repository's root (downloaded there if missing).

    Every error says how to set MINIVIT_DATA_DIR."""
    from minivit.data import DataError, download_cifar10, find_data

    setting = os.environ.get("MINIVIT_DATA_DIR", "").strip()
    if setting:
        path = Path(setting).expanduser()
        if not path.is_absolute() and not path.exists():
            path = REPO / path  # notebooks run in lessons/; a relative path is taken from the repository
        try:
            find_data(path)
        except DataError as error:
            raise DataError(f"MINIVIT_DATA_DIR={setting} holds no data the lessons can read: {error} "
                            f"{HOW_TO_SET}") from None
        return str(path)
    default = REPO / "data"
    try:
        find_data(default)
    except DataError:
        try:
            download_cifar10(default)
        except Exception as error:  # no network, a proxy, a full disk
            raise DataError(f"MINIVIT_DATA_DIR is not set, and downloading CIFAR-10 into data/ failed "
                            f"({type(error).__name__}: {error}). {HOW_TO_SET}") from None
    return str(default)


def describe_data() -> str:
    """Where the lessons' images come from, in words (no absolute paths)."""
    from minivit.data import find_data

    layout, path = find_data(data_dir())
    source = "MINIVIT_DATA_DIR" if os.environ.get("MINIVIT_DATA_DIR", "").strip() else "data/ (downloaded)"
    kind = ("CIFAR-10's official python batches (cifar-10-batches-py)" if layout == "cifar10"
            else "an image folder (train/<class>/*.png|jpg, test/<class>/...)")
    return f"data from {source}: {kind}"


def load_images(split: str = "train", count: int | None = None, seed: int = 0, image_size: int | None = None):
    """A Dataset from the lessons' data; ``count`` images drawn at random (all when None), at
    ``image_size`` (by default CIFAR-10's 32 x 32: an image folder of another size is resized)."""
    from minivit.data import DataError, load_split

    try:
        dataset = load_split(data_dir(), split, image_size=image_size)
    except DataError as error:
        message = str(error).replace("--data-dir", "MINIVIT_DATA_DIR")
        raise DataError(f"{message} {HOW_TO_SET}") from None
    if count is not None and count < len(dataset):
        dataset = dataset.subset(np.sort(np.random.default_rng(seed).permutation(len(dataset))[:count]))
    if image_size is None and dataset.images.shape[2:] != (32, 32):
        dataset = dataset.resized(32)  # the lessons' models see 32 x 32 images
    return dataset


# --- your functions, inside the engine ------------------------------------------------------------

def use_mine(**functions):
    """minivit.dispatch.use_mine: run the engine on your functions (a ``with`` block, or a plain call
    that lasts until ``use_mine()``); the fast kernels are off while they are in."""
    from minivit import dispatch

    return dispatch.use_mine(**functions)


def remember(function, name: str | None = None) -> None:
    """Keep the source of a learner's passing engine function in lessons/mine/<name>.py.

    Only functions written in a notebook (module ``__main__``) are kept: the solutions and the
    tests' functions never overwrite a learner's work."""
    name = name or function.__name__
    if getattr(function, "__module__", None) != "__main__" or name not in ENGINE_EXERCISES:
        return
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return
    lines = [line for line in source.splitlines() if not line.lstrip().startswith("@exercise")]
    MINE.mkdir(exist_ok=True)
    (MINE / f"{name}.py").write_text(
        f"# Your {name} from lesson {ENGINE_EXERCISES[name]}, kept when it passed its check.\n"
        + "\n".join(lines) + "\n")
    print(f"  kept in lessons/mine/{name}.py: lesson 6 and lesson 8 run the engine on it")


def _mine_namespace() -> dict:
    """What a kept function may use by name, as in the lessons: np, math, backend, ops and its names."""
    import math

    import minivit
    from minivit import backend, ops
    from minivit.ops.attention import AttentionCache

    namespace = {"np": np, "math": math, "minivit": minivit, "backend": backend, "ops": ops,
                 "AttentionCache": AttentionCache}
    namespace.update({name: getattr(ops, name) for name in ops.__all__})
    return namespace


def my_functions(names=None, verbose: bool = True) -> dict:
    """Your engine functions, by name: the solutions with MINIVIT_SOLUTIONS=1, else those kept in
    lessons/mine/ (one module, so your attention_backward calls your softmax_backward)."""
    names = list(names or ENGINE_EXERCISES)
    found = {}
    if SOLUTIONS:
        import solutions

        found = {name: getattr(solutions, name) for name in names}
        origin = "lessons/solutions.py (MINIVIT_SOLUTIONS=1)"
    else:
        namespace = _mine_namespace()
        for name in names:
            path = MINE / f"{name}.py"
            if path.is_file():
                exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 (your own code)
        found = {name: namespace[name] for name in names if (MINE / f"{name}.py").is_file()}
        origin = "your lessons (lessons/mine/)"
    if verbose:
        missing = [name for name in names if name not in found]
        if found:
            print(f"yours, from {origin}: " + ", ".join(f"{name} (lesson {ENGINE_EXERCISES[name]})" for name in found))
        if missing:
            print("the engine's reference (that lesson's exercise has not passed yet): " + ", ".join(missing))
    return found


class CallCounter:
    """Wraps functions to count how often the engine calls them: proof that yours ran."""

    def __init__(self, functions: dict):
        import functools

        self.calls = dict.fromkeys(functions, 0)
        self.functions = {}
        for name, function in functions.items():
            @functools.wraps(function)
            def counted(*args, _name=name, _function=function, **kwargs):
                self.calls[_name] += 1
                return _function(*args, **kwargs)

            self.functions[name] = counted

    def __str__(self) -> str:
        return ", ".join(f"{name} {count:,d}x" for name, count in self.calls.items())


@contextlib.contextmanager
def no_grad():
    """Forwards that keep no activations (evaluation only): minivit.no_grad()."""
    import minivit

    with minivit.no_grad():
        yield


# --- questions and answers ------------------------------------------------------------------------

def show_answers(lesson: int) -> None:
    """The answers to a lesson's questions, folded away, when MINIVIT_ANSWERS=1 or MINIVIT_SOLUTIONS=1."""
    from answers import ANSWERS as ALL_ANSWERS

    answers = ALL_ANSWERS[lesson]
    if not ANSWERS:
        print(f"The answers to these {len(answers)} questions are hidden. Try them first; then set "
              "MINIVIT_ANSWERS=1 (or MINIVIT_SOLUTIONS=1), restart the kernel and run this cell again, "
              "or read lessons/answers.py.")
        return
    from IPython.display import Markdown, display

    items = "\n".join(f"{number}. {' '.join(answer.split())}" for number, answer in enumerate(answers, 1))
    display(Markdown(f"<details><summary><b>Answers</b> (click to open)</summary>\n\n{items}\n\n</details>"))
