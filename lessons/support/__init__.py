"""What the lessons use, from one place: ``from support import ...`` in a lesson's first cell.

    settings.py     the environment: MINIVIT_FAST, MINIVIT_SOLUTIONS, MINIVIT_ANSWERS, MINIVIT_RUNS_DIR
    data.py         where CIFAR-10 is (MINIVIT_DATA_DIR or data/), the lessons' images
    diagnosis.py    the checks: check, check_close, check_curve, ... and the diagnoses behind them
    exercises.py    @exercise, @solution, the answers cell
    engine.py       your functions inside the engine (kept in lessons/mine/, use_mine, my_functions)
    lessonNN.py     lesson NN's own: its exercises' checks, their solutions, the answers to its questions

A lesson imports its checks from its own module (``from support.lesson05 import check_...``).
Adding a lesson is its source, lessons/src/NN_name.py, and its module, support/lessonNN.py.

The notebooks run in lessons/ (Jupyter started there, or lessons/build.py), where ``support`` is
importable without installing anything; the tests put lessons/ on the path the same way.
"""

from .data import data_dir, describe_data, load_images, shown_path, shown_site
from .diagnosis import NotYet, check, check_close, check_curve
from .engine import CallCounter, in_folder, my_functions, no_grad, speed_against_pytorch, use_mine, use_my_layer
from .exercises import exercise, show_answers, solution_of
from .settings import FAST, REPO, RUNS

__all__ = [
    "FAST",
    "REPO",
    "RUNS",
    "CallCounter",
    "NotYet",
    "check",
    "check_close",
    "check_curve",
    "data_dir",
    "describe_data",
    "exercise",
    "in_folder",
    "load_images",
    "my_functions",
    "no_grad",
    "show_answers",
    "shown_path",
    "shown_site",
    "solution_of",
    "speed_against_pytorch",
    "use_mine",
    "use_my_layer",
]
