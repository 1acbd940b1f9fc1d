"""The exercise mechanism: ``@exercise`` in a notebook, ``@solution`` in a lesson's module, the
answers to a lesson's questions.

Each lesson's checks, solutions and answers live together in ``support/lessonNN.py``. With
MINIVIT_SOLUTIONS=1 an exercise is replaced by the solution of the same name (solution names are
unique across the lessons: ``solution`` refuses a second one).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

from . import settings
from .diagnosis import NotYet

SOLUTIONS: dict = {}  # name -> the solution function, filled as the lesson modules are imported


def solution(function):
    """Mark a function of a lesson module as the solution of the exercise of the same name."""
    known = SOLUTIONS.get(function.__name__)
    if known is not None and known.__module__ != function.__module__:
        raise ValueError(f"two solutions named {function.__name__}: in {known.__module__} and "
                         f"{function.__module__}; an exercise's name must say which one it is")
    SOLUTIONS[function.__name__] = function
    return function


def lesson_numbers() -> list[int]:
    """The lessons that have a module here (support/lessonNN.py), in order."""
    from . import __path__ as package_path

    return sorted(int(found[1]) for module in pkgutil.iter_modules(package_path)
                  if (found := re.fullmatch(r"lesson(\d\d)", module.name)))


def lesson_module(lesson: int) -> ModuleType:
    """support.lessonNN: lesson ``lesson``'s checks, solutions and answers."""
    return importlib.import_module(f"{__package__}.lesson{lesson:02d}")


def solution_of(name: str):
    """The solution of the exercise ``name``, from whichever lesson writes it."""
    for lesson in lesson_numbers():
        lesson_module(lesson)
    if name not in SOLUTIONS:
        raise KeyError(f"no lesson has a solution named {name}")
    return SOLUTIONS[name]


def exercise(learner_function):
    """Decorator for an exercise: with MINIVIT_SOLUTIONS=1 the solution of the same name replaces it."""
    if not settings.SOLUTIONS:
        return learner_function
    return solution_of(learner_function.__name__)


def keep_engine_function(function, name: str) -> None:
    """Probe an engine function as use_mine will (shapes on every probe input, and not the engine's
    own function under another name), then keep it for the later lessons (lessons/mine/)."""
    from .engine import probe_engine_function, remember

    problem = probe_engine_function(name, function)
    if problem:
        raise NotYet(f"{name} can run inside the engine", [f"your {name}: {problem}"])
    remember(function, name)


def show_answers(lesson: int) -> None:
    """The answers to a lesson's questions, folded away, when MINIVIT_ANSWERS=1 or MINIVIT_SOLUTIONS=1."""
    answers = lesson_module(lesson).ANSWERS
    if not settings.ANSWERS:
        print(f"The answers to these {len(answers)} questions are hidden. Try them first; then set "
              "MINIVIT_ANSWERS=1 (or MINIVIT_SOLUTIONS=1), restart the kernel and run this cell again, "
              f"or read the ANSWERS at the end of lessons/support/lesson{lesson:02d}.py.")
        return
    from IPython.display import Markdown, display

    items = "\n".join(f"{number}. {' '.join(answer.split())}" for number, answer in enumerate(answers, 1))
    display(Markdown(f"<details><summary><b>Answers</b> (click to open)</summary>\n\n{items}\n\n</details>"))
