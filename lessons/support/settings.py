"""The lessons' settings, read from the environment when the lessons start.

Set them before starting Jupyter, or in a notebook's first cell with ``os.environ[...] = ...``
before ``support`` is imported:

    MINIVIT_DATA_DIR     CIFAR-10: the official python folder (cifar-10-batches-py, or the folder
                         holding it) or an image folder DIR/train/<class>/*.png|jpg. Without it the
                         lessons download CIFAR-10 (170 MB) into data/ at the repository's root
                         (read by support.data when data is loaded).
    MINIVIT_FAST=1       tiny models and few steps: every lesson runs in seconds.
    MINIVIT_SOLUTIONS=1  the exercises use the solutions in lessons/support/lessonNN.py (and the
                         answers to the questions are shown).
    MINIVIT_ANSWERS=1    show the answers to the questions, without switching in the solutions.
    MINIVIT_RUNS_DIR     where the lessons' training runs go (default: runs/ at the repository's root).
"""

import os
from pathlib import Path

FAST = os.environ.get("MINIVIT_FAST") == "1"
SOLUTIONS = os.environ.get("MINIVIT_SOLUTIONS") == "1"
ANSWERS = SOLUTIONS or os.environ.get("MINIVIT_ANSWERS") == "1"
HERE = Path(__file__).resolve().parents[1]  # lessons/
REPO = HERE.parent
MINE = HERE / "mine"  # your passing exercises that are engine operations (not committed)
RUNS = Path(os.environ.get("MINIVIT_RUNS_DIR", "").strip() or REPO / "runs")  # the lessons' training runs
