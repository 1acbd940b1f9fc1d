"""Checks that diagnose: a failed check is a hint, not a verdict.

Every check compares the learner's answer with the expected one, prints PASS with both side by
side, or raises ``NotYet`` whose message says what the difference suggests:

* the shape first, and what a wrong shape usually means ("dweight has shape (2, 12, 5),
  expected (12, 5): did you sum over the batch (axis 0)?"); a wrongly shaped answer is never
  flattened, broadcast or indexed into;
* then the values, and the usual mistakes by name: a factor of 2, a factor of a size (a mean
  where the math sums), a flipped sign, a transpose, a missing or doubled term, elements off
  only in one place, the right numbers in the wrong order;
* the learner's value beside the expected one.

    check(passed, what, ...)                           a condition (check_true, with a detail)
    check_close(yours, expected, what, atol=...)       an array to within atol (check_array)
    check_array(yours, expected, what, ...)             an array
    check_gradients(forward, backward, inputs, what)   a backward against finite differences
    check_value(yours, expected, what, ...)            one number (a count: which part is missing)
    check_curve(steps, yours, expected, what, ...)     a schedule or curve: both plotted, and
                                                       the first step where they part

Hints come from three places: generic tests (shape, factor, sign, transpose, order, where the
differences lie), ``sizes`` that name the numbers a factor could be ({"the batch size B": 3}),
``terms`` that the expected answer is made of ({"the variance term": array}) and ``mistakes``,
the answers that known slips produce ({"no bias correction": array}).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "NotYet",
    "check",
    "check_array",
    "check_close",
    "check_count",
    "check_curve",
    "check_gradients",
    "check_true",
    "check_value",
    "diagnose",
    "distinct",
    "numerical_gradient",
    "returned_pair",
    "shape_hint",
]


class NotYet(AssertionError):
    """A failed check. Its message is the hint; a notebook shows the message, not a traceback."""

    def __init__(self, what: str, lines=()):
        self.what = what
        self.lines = [line for line in lines if line]
        super().__init__(self.text)

    @property
    def text(self) -> str:
        return "\n".join([f"NOT YET: {self.what}"] + [f"  {line}" for line in self.lines])

    def _render_traceback_(self):  # IPython prints these lines instead of a traceback
        return self.text.splitlines()


# --- formatting ---------------------------------------------------------------------------------

def _fmt(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,d}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return np.array2string(value, precision=6, separator=", ")
    return repr(value)


def _preview(array: np.ndarray, limit: int = 6) -> str:
    flat = array.reshape(-1)
    shown = ", ".join(_fmt(v) for v in flat[:limit])
    return f"[{shown}{', ...' if flat.size > limit else ''}]"


def _index(flat_index: int, shape: tuple) -> tuple:
    return tuple(int(i) for i in np.unravel_index(flat_index, shape))


def _side_by_side(yours: np.ndarray, expected: np.ndarray, name: str) -> list[str]:
    if yours.size <= 8:
        return [f"yours:    {name} = {np.array2string(yours, precision=6, separator=', ')}",
                f"expected: {name} = {np.array2string(expected, precision=6, separator=', ')}"]
    difference = np.abs(yours - expected)
    if not np.all(np.isfinite(difference)):
        worst = _index(int(np.argmax(~np.isfinite(difference))), yours.shape)
    else:
        worst = _index(int(np.argmax(difference)), yours.shape)
    return [f"yours:    {name}{list(worst)} = {_fmt(yours[worst])} (the largest difference); "
            f"first values {_preview(yours)}",
            f"expected: {name}{list(worst)} = {_fmt(expected[worst])}; first values {_preview(expected)}"]


def _as_array(value, name: str, what: str) -> np.ndarray:
    if value is None:
        raise NotYet(what, [f"{name} is None: did you forget to return it (or return it in the right place)?"])
    if hasattr(value, "get") and not isinstance(value, np.ndarray):  # a CuPy array
        value = value.get()
    try:
        array = np.asarray(value)
    except Exception as error:  # an object NumPy cannot hold
        raise NotYet(what, [f"{name} is a {type(value).__name__}, not an array ({error})."]) from None
    if array.dtype == object:
        raise NotYet(what, [f"{name} is not a plain array of numbers (it holds {type(value).__name__} "
                            "objects): did you return a list of arrays, or a tuple inside a tuple?"])
    return array


# --- shapes -------------------------------------------------------------------------------------

def _size_names(size: int, sizes: dict | None) -> str:
    names = [name for name, value in (sizes or {}).items() if value == size]
    return f": {' or '.join(names)}" if names else ""


def _removed_axes(longer: tuple, shorter: tuple):
    """The axes of ``longer`` to delete so that it becomes ``shorter``, or None."""
    for removed in itertools.combinations(range(len(longer)), len(longer) - len(shorter)):
        if tuple(s for i, s in enumerate(longer) if i not in removed) == tuple(shorter):
            return removed
    return None


def shape_hint(yours: tuple, expected: tuple, name: str = "your answer", sizes: dict | None = None) -> str:
    """What a wrong shape suggests, in one sentence (an empty string when the shapes agree)."""
    yours, expected = tuple(yours), tuple(expected)
    if yours == expected:
        return ""
    head = f"{name} has shape {yours}, expected {expected}"
    if len(yours) == len(expected) >= 2 and yours == expected[::-1]:
        return (f"{head}: it looks transposed. Did you swap the two factors of a matrix product, or "
                "forget (or add) a .T?")
    if len(yours) == len(expected) > 2 and yours == expected[:-2] + expected[-2:][::-1]:
        return f"{head}: the last two axes are swapped (a missing or extra .swapaxes(-1, -2)?)."
    if math.prod(yours) == math.prod(expected):
        if tuple(s for s in yours if s != 1) == tuple(s for s in expected if s != 1):
            return (f"{head}: the same numbers, but the axes of length 1 differ. Sum with keepdims=True, "
                    f"or reshape to {expected}.")
        return (f"{head}: the right number of elements in another shape. Reshape to {expected}, and check "
                "that the axes come in the right order (a reshape cannot reorder axes; a transpose can).")
    if len(yours) > len(expected):
        removed = _removed_axes(yours, expected)
        if removed is not None:
            described = ", ".join(f"axis {axis} (size {yours[axis]}{_size_names(yours[axis], sizes)})"
                                  for axis in removed)
            batch = " the batch" if 0 in removed else ""
            return (f"{head}: it keeps {described}. Did you sum over{batch or ' that axis'}? A parameter "
                    "shared by every row gets the sum of their gradients.")
        return f"{head}: yours has {len(yours)} axes, {len(expected)} expected."
    if len(yours) < len(expected):
        removed = _removed_axes(expected, yours)
        if removed is not None:
            described = ", ".join(f"axis {axis} (size {expected[axis]}{_size_names(expected[axis], sizes)})"
                                  for axis in removed)
            return (f"{head}: {described} is missing. Did you sum (or index) over it? It must stay; "
                    "a gradient has the shape of what it is the gradient of.")
        return f"{head}: yours has {len(yours)} axes, {len(expected)} expected."
    parts = []
    for axis, (mine, theirs) in enumerate(zip(yours, expected)):
        if mine == theirs:
            continue
        if theirs == 1:
            parts.append(f"axis {axis} has {mine}{_size_names(mine, sizes)}, expected 1: sum over it with "
                         "keepdims=True (a shared parameter gets the sum of its copies' gradients)")
        elif mine == theirs + 1:
            parts.append(f"axis {axis} has one more than expected ({mine} against {theirs}): an extra row "
                         "(a token that should be left out, such as the CLS token) or an off-by-one")
        elif mine + 1 == theirs:
            parts.append(f"axis {axis} has one fewer than expected ({mine} against {theirs}): a row dropped "
                         "or an off-by-one")
        else:
            parts.append(f"axis {axis} has {mine}{_size_names(mine, sizes)}, expected "
                         f"{theirs}{_size_names(theirs, sizes)}")
    return f"{head}: " + "; ".join(parts) + "."


# --- values -------------------------------------------------------------------------------------

def _scale(expected: np.ndarray) -> float:
    return float(np.max(np.abs(expected))) if expected.size else 0.0


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        try:
            a, b = np.broadcast_arrays(a, b)
        except ValueError:
            return False
    if a.size == 0:
        return True
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    return float(np.max(np.abs(a - b))) <= atol + rtol * max(_scale(a), _scale(b))


def _factor_candidates(sizes: dict | None):
    """(value, description) pairs a constant factor may be, most common first."""
    yield -1.0, "the sign is flipped (yours = -expected). Check which way the derivative points"
    yield 2.0, ("yours is twice the expected: a factor of 2, as from differentiating a square, or a "
                "term counted twice")
    yield 0.5, "yours is half the expected: a factor of 2 missing (the 2 of a square's derivative?)"
    for name, n in (sizes or {}).items():
        if n in (0, 1):
            continue
        yield n, (f"yours is {_fmt(n)} times the expected, {name}: did you sum where the math takes a "
                  f"mean, or count each of the {_fmt(n)} copies again?")
        yield 1.0 / n, (f"yours is the expected divided by {_fmt(n)}, {name}: did you take a mean where "
                        "the math sums (np.mean instead of np.sum)?")
        root = math.sqrt(n)
        yield root, (f"yours is sqrt({_fmt(n)}) = {root:.4g} times the expected ({name}): a 1/sqrt scale "
                     "forgotten?")
        yield 1.0 / root, (f"yours is the expected divided by sqrt({_fmt(n)}) = {root:.4g} ({name}): a "
                           "1/sqrt scale applied twice?")
        yield -float(n), f"yours is -{_fmt(n)} times the expected ({name}, and the sign flipped)"
        yield -1.0 / n, f"yours is the expected divided by -{_fmt(n)} ({name}, and the sign flipped)"


def _constant_factor(yours, expected, sizes, tol):
    norm = float(np.sum(expected * expected))
    if norm == 0:
        return None
    factor = float(np.sum(yours * expected)) / norm
    if float(np.linalg.norm(yours - factor * expected)) > tol * math.sqrt(norm):
        return None
    for value, description in _factor_candidates(sizes):
        if abs(factor - value) <= 1e-4 * max(1.0, abs(value)):
            return description
    if abs(factor) < 1e-12:
        return "yours is zero where the expected is not"
    return f"yours is {factor:.4g} times the expected everywhere: one constant factor is off"


def _term_hints(difference, terms, tol):
    """Explain yours - expected by the named terms the expected answer contains."""
    if not terms:
        return []
    scale = max(float(np.linalg.norm(difference)), 1e-300)
    for name, term in terms.items():
        term = np.broadcast_to(np.asarray(term, dtype=np.float64), difference.shape)
        for coefficient, message in ((-1, "yours lacks {name}: the expected answer has it, yours does not"),
                                     (1, "{name} is counted twice in yours"),
                                     (-2, "{name} has the wrong sign in yours"),
                                     (2, "{name} is counted three times, or added where it is subtracted")):
            if float(np.linalg.norm(difference - coefficient * term)) <= tol * scale:
                return [message.format(name=name)]
    # several terms at once: least squares over all of them
    names = list(terms)
    basis = np.stack([np.broadcast_to(np.asarray(terms[n], dtype=np.float64), difference.shape).ravel()
                      for n in names], axis=1)
    coefficients, *_ = np.linalg.lstsq(basis, difference.ravel(), rcond=None)
    if float(np.linalg.norm(basis @ coefficients - difference.ravel())) <= tol * scale:
        described = [f"{name} (x {c:+.3g})" for name, c in zip(names, coefficients) if abs(c) > 1e-6]
        if described:
            return ["yours differs from the expected by " + " and ".join(described)
                    + ": a term missing means x -1, one with the wrong sign x -2"]
    return []


def _row_hints(yours, expected, tol):
    """Differences that are the same across the last axis of each row."""
    if yours.ndim < 1 or yours.shape[-1] < 2 or yours.size <= yours.shape[-1]:
        return []
    difference = yours - expected
    scale = max(_scale(expected), 1e-300)
    row_mean = difference.mean(axis=-1, keepdims=True)
    if np.max(np.abs(difference - row_mean)) <= tol * scale and np.max(np.abs(row_mean)) > tol * scale:
        return ["yours differs from the expected by a constant in each row (along the last axis): a term "
                "that is the same for every element of a row, such as a mean over the row, is missing or extra"]
    with np.errstate(divide="ignore", invalid="ignore"):
        usable = np.abs(expected) > 1e-6 * scale
        if usable.all():
            ratio = yours / expected
            row_ratio = np.median(ratio, axis=-1, keepdims=True)
            if (np.max(np.abs(ratio - row_ratio)) <= 1e-6 * max(1.0, float(np.max(np.abs(row_ratio))))
                    and float(np.ptp(row_ratio)) > 1e-6):
                return [f"each row of yours is the expected times a factor of its own (from "
                        f"{float(row_ratio.min()):.4g} to {float(row_ratio.max()):.4g}): a per-row scale "
                        "(a normalisation such as 1/std) is missing or extra"]
    return []


def _where_hints(yours, expected, regions, tol):
    difference = np.abs(yours - expected)
    off = ~(difference <= tol * max(_scale(expected), 1e-300))  # NaN counts as off
    count, total = int(off.sum()), off.size
    lines = []
    for name, mask in (regions or {}).items():
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), off.shape)
        if count and not np.any(off & ~mask):
            lines.append(f"only elements {name} are off ({count} of {total})")
            return lines
    if count and count < total:
        described = []
        for axis in range(off.ndim):
            along = np.any(np.moveaxis(off, axis, 0).reshape(off.shape[axis], -1), axis=1)
            if off.shape[axis] > 1 and 0 < along.sum() < off.shape[axis]:
                indices = np.flatnonzero(along)
                shown = ", ".join(str(i) for i in indices[:6]) + (", ..." if len(indices) > 6 else "")
                described.append(f"axis {axis} only at {shown} (of {off.shape[axis]})")
        where = f"; the differences lie on {'; '.join(described)}" if described else ""
        lines.append(f"{count} of {total} elements are off{where}")
    return lines


def diagnose(yours, expected, name: str = "your answer", *, sizes: dict | None = None,
             terms: dict | None = None, mistakes: dict | None = None, regions: dict | None = None,
             rtol: float = 1e-6, atol: float = 0.0) -> list[str]:
    """The hints for ``yours`` against ``expected``, or [] when they agree within tolerance.

    sizes: {"the batch size B": 3}, numbers a constant factor may be.
    terms: {"the variance term": array}, parts of ``expected`` (with the sign they have in it).
    mistakes: {"you took the softmax over the wrong axis": array}, what known slips produce.
    regions: {"where patches overlap": boolean mask}, places worth naming when only they are off.
    """
    expected = np.asarray(expected)
    if np.iscomplexobj(yours) or np.iscomplexobj(expected):
        raise TypeError("diagnose compares real arrays")
    hint = shape_hint(np.shape(yours), expected.shape, name, sizes)
    if hint:  # never compare values of a misshapen answer
        return [hint]
    yours = np.asarray(yours, dtype=np.float64)
    expected = expected.astype(np.float64)
    if _close(yours, expected, rtol, atol):
        return []
    lines = []
    if not np.all(np.isfinite(yours)):
        bad = _index(int(np.argmax(~np.isfinite(yours))), yours.shape)
        lines.append(f"{name} has {int((~np.isfinite(yours)).sum())} NaN or infinite values (the first at "
                     f"{list(bad)}): a division by zero, a log of 0, or an overflow?")
        return lines + _side_by_side(yours, expected, name)
    loose = max(1e-4, 10 * rtol)
    for mistake, produced in (mistakes or {}).items():  # first: a slip near the answer is not "rounding"
        produced = np.asarray(produced)
        if produced.shape == yours.shape and _close(yours, produced, rtol, atol):
            lines.append(f"this is what {mistake} gives")
            where = _where_hints(yours, expected, regions, max(rtol, 1e-9))
            return lines + where + _side_by_side(yours, expected, name)
    if _close(yours, expected, loose, atol):  # near, but not within the tolerance asked for
        error = float(np.max(np.abs(yours - expected))) / max(_scale(expected), 1e-300)
        lines.append(f"yours is close but not within the tolerance: the largest difference is {error:.1e} of the "
                     f"largest value, {rtol:.0e} is allowed. Rounding (a float32 step in between?) or a very small "
                     "term left out")
        return lines + _where_hints(yours, expected, regions, max(rtol, 1e-9)) + _side_by_side(yours, expected, name)
    for mistake, produced in (mistakes or {}).items():
        if _close(yours, np.asarray(produced), loose, atol):
            lines.append(f"this is what {mistake} gives")
            break
    if not lines:
        factor = _constant_factor(yours, expected, sizes, loose)
        if factor:
            lines.append(factor)
    if not lines and yours.ndim >= 2 and yours.shape[-1] == yours.shape[-2] \
            and _close(yours, np.swapaxes(expected, -1, -2), loose, atol):
        lines.append("yours is the expected transposed (the last two axes swapped): swap the factors of "
                     "the product, or add or remove a .T")
    if not lines:
        lines += _term_hints(yours - expected, terms, loose)
    if not lines:
        lines += _row_hints(yours, expected, loose)
    if not lines and _close(np.sort(yours, axis=None), np.sort(expected, axis=None), loose, atol):
        lines.append("yours holds exactly the expected numbers, in another order: check the order of the "
                     "axes (a transpose before the reshape?) or of the elements")
    lines += _where_hints(yours, expected, regions, max(rtol, 1e-9))
    return lines + _side_by_side(yours, expected, name)


# --- the checks ---------------------------------------------------------------------------------

def _pass(what: str, detail: str = "") -> None:
    print(f"PASS: {what}" + (f" ({detail})" if detail else ""))


def check_true(passed: bool, what: str, yours=None, expected=None, hint: str = "") -> None:
    """A condition, with the learner's value and the expected one printed beside it."""
    beside = ""
    if yours is not None or expected is not None:
        beside = f"yours {_fmt(yours)}, expected {_fmt(expected)}"
    if passed:
        _pass(what, beside)
        return
    raise NotYet(what, [beside, hint])


def check_array(yours, expected, what: str, name: str = "your answer", *, rtol: float = 1e-6,
                atol: float = 0.0, **hints) -> None:
    """``yours`` equals ``expected`` (shape first); ``hints`` as ``diagnose`` takes them."""
    yours = _as_array(yours, name, what)
    lines = diagnose(yours, expected, name, rtol=rtol, atol=atol, **hints)
    if lines:
        raise NotYet(what, lines)
    error = float(np.max(np.abs(yours.astype(np.float64) - np.asarray(expected, dtype=np.float64)),
                         initial=0.0))
    _pass(what, f"shape {yours.shape}, largest difference {error:.1e}")


def check(passed: bool, what: str, detail: str = "", yours=None, expected=None, hint: str = "") -> None:
    """What a lesson's cell checks: PASS with your value beside the expected one, or NotYet with
    what is off (a notebook run stops there, loudly)."""
    check_true(passed, what, yours, expected, " ".join(part for part in (detail, hint) if part))


def check_close(actual, expected, what: str, atol: float = 1e-6, **hints) -> None:
    """Arrays equal to within ``atol`` (shape first, then a diagnosis: see ``diagnose``)."""
    check_array(actual, expected, what, rtol=0.0, atol=atol, **hints)


def check_value(yours, expected, what: str, *, rtol: float = 1e-9, atol: float = 0.0,
                sizes: dict | None = None, mistakes: dict | None = None, unit: str = "") -> None:
    """One number: yours beside the expected, and a named factor or slip when there is one."""
    if yours is None:
        raise NotYet(what, ["your function returned None: did you forget the return?"])
    if np.ndim(yours) != 0:
        raise NotYet(what, [f"yours has shape {np.shape(yours)}: expected a single number"])
    beside = f"yours {_fmt(yours)}{unit}, expected {_fmt(expected)}{unit}"
    if _close(np.float64(yours), np.float64(expected), rtol, atol):
        _pass(what, beside)
        return
    lines = [beside]
    for mistake, produced in (mistakes or {}).items():
        if _close(np.float64(yours), np.float64(produced), max(rtol, 1e-6), atol):
            lines.append(f"this is what {mistake} gives")
            break
    else:
        if float(expected) != 0:
            factor = _constant_factor(np.array([float(yours)]), np.array([float(expected)]), sizes, 1e-6)
            if factor and "everywhere" not in factor:  # a named factor, not just the ratio
                lines.append(factor)
    raise NotYet(what, lines)


def check_count(yours, expected: int, what: str, parts: dict | None = None) -> None:
    """An integer count made of named parts: a difference equal to a part (or two) is named."""
    if yours is None:
        raise NotYet(what, ["your function returned None: did you forget the return?"])
    if isinstance(yours, float) and float(yours).is_integer():
        yours = int(yours)
    if not isinstance(yours, (int, np.integer)):
        raise NotYet(what, [f"yours is {yours!r} ({type(yours).__name__}): expected a whole number"])
    beside = f"yours {int(yours):,d}, expected {int(expected):,d}"
    if int(yours) == int(expected):
        _pass(what, beside)
        return
    difference = int(yours) - int(expected)
    lines = [f"{beside}: yours is {abs(difference):,d} too {'many' if difference > 0 else 'few'}"]
    parts = {name: int(count) for name, count in (parts or {}).items() if int(count)}
    named = []
    for size in (1, 2):
        for combination in itertools.combinations(parts.items(), size):
            if sum(count for _, count in combination) == abs(difference):
                named.append(" and ".join(f"{name} ({count:,d})" for name, count in combination))
        if named:
            break
    if named:
        verb = "counted twice (or counted where they do not exist)" if difference > 0 else "left out"
        lines.append(f"the difference is exactly {' -- or '.join(named[:3])}: {verb}?")
    raise NotYet(what, lines)


def numerical_gradient(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """df/dx by minivit.gradcheck's 5-point centred stencil, element by element (x is perturbed in
    place, restored): (-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h, truncation error O(h^4),
    about 1e-10 relative in float64 for the smooth functions here. One stencil for the engine and
    the lessons: this is minivit.gradcheck.numerical_gradient."""
    from minivit import gradcheck

    if x.dtype != np.float64:
        raise TypeError(f"finite differences need float64, got {x.dtype}")
    return gradcheck.numerical_gradient(f, x, h=h, stencil=5)


def _relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """CS231n's max |a - n| / max(1e-8, |a| + |n|), over the elements above the finite differences'
    noise (1e-6 of the tensor's largest value): a gradient of exactly zero has no relative error."""
    magnitude = np.abs(analytic) + np.abs(numeric)
    measured = magnitude > 1e-6 * float(np.max(magnitude, initial=0.0))
    if not measured.any():
        return 0.0
    return float(np.max(np.abs(analytic - numeric)[measured] / np.maximum(1e-8, magnitude[measured])))


def check_gradients(forward, backward, inputs: dict, what: str, *, grads: list[str] | None = None,
                    sizes: dict | None = None, hints=None, rtol: float = 1e-6, seed: int = 0,
                    expect: str = "about 1e-10") -> None:
    """The learner's ``backward`` against finite differences of ``forward``, CS231n style.

    forward(*inputs.values()) -> (out, cache); backward(dout, cache) -> one gradient per input,
    in the order of ``inputs`` (``grads`` names them; None where an input has no gradient).
    hints(dout, cache) -> {gradient name: {"terms": ..., "mistakes": ..., "regions": ...}}.
    Every gradient's shape is checked before any value.
    """
    names = grads or [f"d{name}" for name in inputs]
    out, cache = forward(*inputs.values())
    dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    returned = backward(dout, cache)
    if isinstance(returned, list) and len(returned) == len(names) > 1:
        returned = tuple(returned)  # a list of the gradients reads the same
    if not isinstance(returned, tuple):
        returned = (returned,)
    if len(returned) != len(names):
        raise NotYet(what, [f"your backward returned {len(returned)} value(s), expected {len(names)}: "
                            f"({', '.join(names)}), in that order"])
    extra = hints(dout, cache) if hints else {}
    failures, passed = [], []
    for value, grad_name, grad in zip(inputs.values(), names, returned):
        if value is None:
            continue
        grad = _as_array(grad, grad_name, what)
        if grad.shape != np.shape(value):  # shape first; no finite differences for a wrong shape
            failures.append(shape_hint(grad.shape, np.shape(value), grad_name, sizes))
            continue

        def f():
            return np.sum(forward(*inputs.values())[0] * dout)

        numeric = numerical_gradient(f, value)
        lines = diagnose(grad, numeric, grad_name, sizes=sizes, rtol=rtol, **extra.get(grad_name, {}))
        relative = _relative_error(grad, numeric)
        if lines:
            failures.append(f"{grad_name}: relative error {relative:.1e} (expect {expect})")
            failures += ["  " + line for line in lines]
        else:
            passed.append(f"{grad_name} {relative:.1e}")
    if failures:
        if passed:
            failures.append("right already: " + ", ".join(name.split()[0] for name in passed))
        raise NotYet(what, failures)
    _pass(what, f"relative errors {', '.join(passed)}; expect {expect}")


def check_curve(steps, yours, expected, what: str, *, rtol: float = 1e-6, atol: float = 0.0,
                xlabel: str = "step", ylabel: str = "value", segments: dict | None = None,
                mistakes: dict | None = None, logy: bool = False, plot: bool = True) -> None:
    """A curve (a schedule, a loss history) against the expected one: both are plotted, and the
    first step where they part is named, with what lies there (``segments``: {name: (start, stop)})
    and the known slip it matches (``mistakes``: {description: the curve it gives})."""
    steps = np.asarray(steps)
    try:
        yours_array = np.asarray(yours, dtype=np.float64)
    except (TypeError, ValueError):
        raise NotYet(what, [f"your values are not numbers: {str(yours)[:80]}"]) from None
    expected = np.asarray(expected, dtype=np.float64)
    if yours_array.shape != expected.shape:
        raise NotYet(what, [shape_hint(yours_array.shape, expected.shape, "your curve")
                            + " One value per step is expected."])
    tolerance = atol + rtol * max(_scale(expected), 1e-300)
    off = ~(np.abs(yours_array - expected) <= tolerance)
    first = int(np.argmax(off)) if off.any() else None
    if plot:
        _plot_curves(steps, yours_array, expected, what, xlabel, ylabel, first, logy)
    if first is None:
        _pass(what, f"{len(steps)} steps, largest difference {float(np.max(np.abs(yours_array - expected))):.1e}")
        return
    lines = [f"the curves part at {xlabel} {_fmt(steps[first])}: yours {_fmt(yours_array[first])}, "
             f"expected {_fmt(expected[first])}"]
    for name, (start, stop) in (segments or {}).items():
        if start <= steps[first] < stop:
            where = "its first step" if steps[first] == start else f"{_fmt(steps[first] - start)} steps in"
            lines.append(f"that is in the {name} ({xlabel}s {_fmt(start)} to {_fmt(stop - 1)}), at {where}")
    named = False
    for mistake, produced in (mistakes or {}).items():
        if _close(yours_array, np.asarray(produced, dtype=np.float64), max(rtol, 1e-6), atol):
            lines.append(f"your curve is what {mistake} gives")
            named = True
            break
    differing = np.flatnonzero(off)
    ahead, behind = differing[differing + 1 < len(off)], differing[differing >= 1]
    if not named and len(expected) > 2:  # where they differ, is yours the neighbouring step's value?
        if ahead.size == differing.size and _close(yours_array[ahead], expected[ahead + 1], rtol, atol):
            lines.append(f"where they differ, yours at t is the expected at t + 1: one {xlabel} ahead "
                         "(t + 1 where the formula has t?)")
        elif behind.size == differing.size and _close(yours_array[behind], expected[behind - 1], rtol, atol):
            lines.append(f"where they differ, yours at t is the expected at t - 1: one {xlabel} behind "
                         "(t where the formula has t + 1?)")
    factor = _constant_factor(yours_array[off], expected[off], None, 1e-6) if off.sum() > 1 and not named else None
    if factor and "everywhere" not in factor:
        lines.append("where they differ, " + factor)
    if off.sum() < len(off):
        lines.append(f"they differ at {int(off.sum())} of {len(off)} {xlabel}s")
    raise NotYet(what, lines)


def _plot_curves(steps, yours, expected, what, xlabel, ylabel, first, logy):
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6.4, 3.2))
    axis.plot(steps, expected, color="C0", linewidth=4, alpha=0.35, label="expected")
    axis.plot(steps, yours, color="C1", linewidth=1.2, linestyle="--", label="yours")
    if first is not None:
        axis.axvline(steps[first], color="C3", linewidth=1, label=f"first difference ({xlabel} {_fmt(steps[first])})")
    if logy:
        axis.set_yscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(what, fontsize=9)
    axis.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


# --- what the exercises' checks build on ---------------------------------------------------------

def distinct(shape, seed=0) -> np.ndarray:
    """Distinct values (a shuffled range, scaled), so a reordering shows as a reordering."""
    values = np.random.default_rng(seed).permutation(math.prod(shape)).astype(np.float64)
    return (values / values.size - 0.5).reshape(shape)


def returned_pair(returned, what: str, names: str):
    """``returned`` when it is a pair; else NotYet saying that two values, ``names``, were expected."""
    if not isinstance(returned, tuple) or len(returned) != 2:
        count = len(returned) if isinstance(returned, tuple) else 1
        raise NotYet(what, [f"your function returned {count} value(s): expected two, ({names})"])
    return returned
