"""Checks of option values, each problem worded as the option and its valid range.

    whole_number_problem("--epochs", 0, low=1)          -> "--epochs must be at least 1 (a whole number); got 0"
    number_problem("--lr", nan, low=0, low_open=True)   -> "--lr must be a finite number > 0; got nan"
    number_problem("--val-fraction", 1.0, 0, 1, True, True) -> "--val-fraction must be in (0, 1); got 1"

Each returns None when the value is fine, so a caller collects every problem at once.
``option_names`` rewrites the field names that ViTConfig and AugmentConfig use in their
messages (``ViTConfig.layer_norm_eps``) as the command line's options (``--layer-norm-eps``).
"""

from __future__ import annotations

import math
import numbers
import re


def whole_number_problem(option: str, value, low: int | None = None, high: int | None = None) -> str | None:
    """None if ``value`` is an int in [low, high]; else the problem, with the valid range."""
    if low is not None and high is None:
        wanted = f"at least {low} (a whole number)"
    else:
        wanted = "a whole number" + _range_text(low, high, False, False)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"{option} must be {wanted}; got {value!r}"
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{option} must be {wanted}; got {value}"
    return None


def number_problem(option: str, value, low: float | None = None, high: float | None = None,
                   low_open: bool = False, high_open: bool = False) -> str | None:
    """None if ``value`` is a finite real number within the bounds (open or closed); else the problem."""
    bounded = low is not None and high is not None
    wanted = ("" if bounded else "a finite number") + _range_text(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return f"{option} must be {wanted.strip()}; got {value!r}"
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        return f"{option} must be {wanted.strip()}; got {value:g}"
    return None


def choice_problem(option: str, value, choices) -> str | None:
    if value not in choices:
        return f"{option} must be one of {', '.join(map(str, choices))}; got {value!r}"
    return None


def option_name(field: str) -> str:
    """"layer_norm_eps" -> "--layer-norm-eps"."""
    return "--" + field.replace("_", "-")


def option_names(message: str) -> str:
    """A ViTConfig / AugmentConfig message with its field names written as command-line options."""
    return re.sub(r"\b(?:ViTConfig|AugmentConfig)\.(\w+)", lambda match: option_name(match[1]), message)


def _range_text(low, high, low_open: bool, high_open: bool) -> str:
    low, high = _number_text(low), _number_text(high)
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _number_text(value) -> str | None:
    """Whole numbers in full (4294967295), others in short (1e-05)."""
    if value is None:
        return None
    return str(value) if isinstance(value, numbers.Integral) else f"{value:g}"
