"""Helpers shared by the lessons: data, fast mode, exercises and their checks.

Environment variables:
    MINIVIT_DATA_DIR   CIFAR-10 (official folder) or an image folder; without it the
                       lessons download CIFAR-10 into ./data.
    MINIVIT_FAST=1     tiny models and few steps: every lesson runs in seconds.
    MINIVIT_SOLUTIONS=1  the exercises use the solutions in lessons/solutions.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FAST = os.environ.get("MINIVIT_FAST") == "1"
SOLUTIONS = os.environ.get("MINIVIT_SOLUTIONS") == "1"
REPO = Path(__file__).resolve().parents[1]


def exercise(learner_function):
    """Decorator for an exercise: with MINIVIT_SOLUTIONS=1 the solution of the same name replaces it."""
    if not SOLUTIONS:
        return learner_function
    import solutions

    return getattr(solutions, learner_function.__name__)


def check(passed: bool, what: str, detail: str = "") -> None:
    """Print PASS, or raise with what is off (so a notebook run fails loudly)."""
    if passed:
        print(f"PASS: {what}")
        return
    raise AssertionError(f"NOT YET: {what}. {detail}".strip())


def check_close(actual, expected, what: str, atol: float = 1e-6) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        check(False, what, f"shape {actual.shape}, expected {expected.shape}")
    error = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    check(error <= atol, what, f"max abs difference {error:.3g} > {atol:g}")


def data_dir() -> str:
    """Where CIFAR-10 is: MINIVIT_DATA_DIR, or ./data (downloaded there if missing)."""
    from minivit.data import download_cifar10, find_data

    if os.environ.get("MINIVIT_DATA_DIR"):
        path = Path(os.environ["MINIVIT_DATA_DIR"]).expanduser()
        if not path.is_absolute() and not path.exists():
            path = REPO / path  # notebooks run in lessons/; a relative path is taken from the repository
        return str(path)
    default = REPO / "data"
    try:
        find_data(default)
    except Exception:
        download_cifar10(default)
    return str(default)


def load_images(split: str = "train", count: int | None = None, seed: int = 0):
    """A Dataset from the lessons' data; ``count`` images drawn at random (all when None)."""
    from minivit.data import load_split

    dataset = load_split(data_dir(), split)
    if count is not None and count < len(dataset):
        dataset = dataset.subset(np.sort(np.random.default_rng(seed).permutation(len(dataset))[:count]))
    return dataset
