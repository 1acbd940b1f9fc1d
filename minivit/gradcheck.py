"""Gradient checking: compare hand-written backward passes with finite differences.

The numerical gradient of a scalar f at x, element by element, by centred differences:

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h)        error O(h^2) + O(eps_machine / h)

or, by default, the 5-point centred stencil (see STENCILS), whose O(h^4) truncation
error allows h = 1e-3 and so about a thousand times less rounding noise.

compared with the analytic gradient by the relative error

    rel_error(a, b) = max_i |a_i - b_i| / max(1e-8, |a_i| + |b_i|)

In float64, a correct backward typically gives 1e-8 to 1e-11; a wrong one gives
1e-3 or more.

A gradient that is exactly zero (the key projection's bias is one: softmax does
not change when every score in a row moves by the same amount, so a shared
shift of the keys changes nothing) has no relative error to speak of: the
numerical estimate is pure rounding noise, about eps * |f| / h. Elements where
both gradients sit below that noise floor are counted as unmeasurable, not as
failures, and the report says how many there were. float32 cannot resolve these differences, so
every check here refuses anything but float64.

To check an op with output y, the scalar is f = sum(y * dout) for a fixed random
dout: its gradient is exactly what ``backward(dout, cache)`` returns.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from minivit import backend
from minivit.nn import no_grad

_EPS64 = 2.0**-52

# Centred difference stencils: (offsets in units of h, weights), numeric = sum(w * f(x + o h)) / h.
#   3 points: (f(x+h) - f(x-h)) / 2h                               truncation error O(h^2)
#   5 points: (-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h     truncation error O(h^4)
# The 5-point stencil allows a larger h for the same truncation error, and a larger h
# means less rounding noise (eps * |f| / h), so small gradients are measured far more
# accurately: the default.
STENCILS = {3: ((1, -1), (0.5, -0.5)), 5: ((2, 1, -1, -2), (-1 / 12, 8 / 12, -8 / 12, 1 / 12))}
DEFAULT_STEP = {3: 1e-6, 5: 1e-3}


def rel_error(analytic, numeric) -> float:
    """max(|a - b| / max(1e-8, |a| + |b|)), as CS231n prints it."""
    xp = backend.xp
    a, b = xp.asarray(analytic), xp.asarray(numeric)
    return float((xp.abs(a - b) / xp.maximum(1e-8, xp.abs(a) + xp.abs(b))).max())


@dataclass
class TensorCheck:
    """The result for one tensor: its worst element, where it is, and both gradients there."""

    name: str
    max_rel_error: float
    index: tuple
    analytic: float
    numeric: float
    num_checked: int
    num_below_noise: int = 0

    def __str__(self) -> str:
        noise = f", {self.num_below_noise} below the noise floor" if self.num_below_noise else ""
        return (f"{self.name}: max relative error {self.max_rel_error:.2e} at index {self.index} "
                f"(analytic {self.analytic:.6e}, numeric {self.numeric:.6e}; "
                f"{self.num_checked} elements checked{noise})")


@dataclass
class GradcheckReport:
    checks: list[TensorCheck] = field(default_factory=list)

    @property
    def max_rel_error(self) -> float:
        return max((check.max_rel_error for check in self.checks), default=0.0)

    @property
    def worst(self) -> TensorCheck:
        return max(self.checks, key=lambda check: check.max_rel_error)

    def assert_close(self, tolerance: float) -> None:
        """Raise AssertionError naming every tensor whose error exceeds ``tolerance``."""
        failed = [check for check in self.checks if not check.max_rel_error <= tolerance]
        if failed:
            lines = "\n  ".join(str(check) for check in failed)
            raise AssertionError(f"gradient check failed (tolerance {tolerance:.0e}):\n  {lines}")

    def __str__(self) -> str:
        return "\n".join(str(check) for check in self.checks)


def _require_float64(arrays: dict) -> None:
    for name, array in arrays.items():
        if array.dtype != "float64":
            raise TypeError(
                f"Gradient checks need float64 ({name} is {array.dtype}): float32's 7 digits cannot "
                "resolve a finite difference. Use dtype='float64'."
            )


def numerical_gradient(f, x, h: float | None = None, stencil: int = 5):
    """df/dx for every element of ``x``, by the centred ``stencil`` (see STENCILS): an array of x's shape.

    f: a function of no arguments returning a scalar that reads ``x``, which is perturbed in place,
    element by element, and restored. The same stencil ``check_gradients`` uses; the lessons'
    checks call this one.
    """
    h = DEFAULT_STEP[stencil] if h is None else h
    _require_float64({"x": x})
    offsets, weights = STENCILS[stencil]
    grad = backend.xp.zeros_like(x)
    for i in range(x.size):
        element = _unravel(i, x.shape)
        original = float(x[element])
        values = []
        for offset in offsets:
            x[element] = original + offset * h
            values.append(float(f()))
        x[element] = original
        grad[element] = sum(w * v for w, v in zip(weights, values)) / h
    return grad


def _check_indices(size: int, max_elements: int | None, rng: random.Random) -> list[int]:
    if max_elements is None or size <= max_elements:
        return list(range(size))
    return sorted(rng.sample(range(size), max_elements))


def _unravel(flat_index: int, shape: tuple) -> tuple:
    index = []
    for size in reversed(shape):
        flat_index, position = divmod(flat_index, size)
        index.append(position)
    return tuple(reversed(index))


def check_gradients(f, inputs: dict, analytic: dict, h: float | None = None,
                    max_elements: int | None = None, seed: int = 0,
                    stencil: int = 5) -> GradcheckReport:
    """Check ``analytic[name]`` = df/d``inputs[name]`` for every name in ``analytic``.

    f: a function of no arguments returning a scalar; it must read the arrays in
    ``inputs``, which are perturbed in place (and restored). max_elements: check
    only this many randomly chosen elements per tensor (all when None).
    stencil: 3 or 5 points (see STENCILS); h defaults to that stencil's step.
    """
    h = DEFAULT_STEP[stencil] if h is None else h
    _require_float64(inputs)
    offsets, weights = STENCILS[stencil]
    rng = random.Random(seed)
    report = GradcheckReport()
    for name, grad in analytic.items():
        x = inputs[name]  # perturbed in place, element by element (any view works, e.g. a parameter's)
        if tuple(grad.shape) != tuple(x.shape):  # shape first: a (D, K) dW for a (K, D) W must not pass
            raise ValueError(f"{name}: the analytic gradient has shape {tuple(grad.shape)}, but {name} has "
                             f"shape {tuple(x.shape)}. A gradient has the shape of what it is the gradient "
                             "of: return it in that shape (nothing is flattened or broadcast here).")
        flat_grad = backend.to_numpy(grad).reshape(-1)
        worst = (0.0, 0, float(flat_grad[0]) if x.size else 0.0, float("nan"))
        num_below_noise = 0
        indices = _check_indices(x.size, max_elements, rng)
        for i in indices:
            element = _unravel(i, x.shape)
            original = float(x[element])
            values = []
            for offset in offsets:
                x[element] = original + offset * h
                values.append(float(f()))
            x[element] = original
            numeric = sum(w * v for w, v in zip(weights, values)) / h
            f_plus, f_minus = values[0], values[-1]
            a = float(flat_grad[i])
            noise_floor = 100 * _EPS64 * (abs(f_plus) + abs(f_minus)) / (2 * h)
            if abs(a) + abs(numeric) < noise_floor:
                num_below_noise += 1
                continue
            error = abs(a - numeric) / max(1e-8, abs(a) + abs(numeric))
            if not error <= worst[0]:  # also catches NaN
                worst = (error, i, a, numeric)
        error, i, a, numeric = worst
        report.checks.append(TensorCheck(name, error, _unravel(i, x.shape), a, numeric, len(indices),
                                         num_below_noise))
    return report


def check_op(forward, backward, inputs: dict, differentiable: list[str] | None = None,
             kwargs: dict | None = None, h: float | None = None, max_elements: int | None = None,
             seed: int = 0, stencil: int = 5) -> GradcheckReport:
    """Check a forward/backward pair.

    forward(*inputs.values(), **kwargs) -> (out, cache); backward(dout, cache) -> the
    gradients of the inputs, in the order of ``inputs`` (a single array for one input;
    None for an input without a gradient). ``differentiable`` names the inputs to check
    (default: every input that gets a gradient).
    """
    xp = backend.xp
    kwargs = kwargs or {}
    names = list(inputs)
    out, cache = forward(*inputs.values(), **kwargs)
    dout = _normal(seed, out.shape)
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    analytic = {name: grad for name, grad in zip(names, grads)
                if grad is not None and (differentiable is None or name in differentiable)}

    def f():
        return xp.sum(forward(*inputs.values(), **kwargs)[0] * dout)

    return check_gradients(f, inputs, analytic, h, max_elements, seed, stencil)


def _normal(seed: int, shape: tuple):
    """Standard normal float64 values on the active backend."""
    return backend.default_rng(seed).standard_normal(shape)


def _random_state(rng):
    """What to restore so that the next draws repeat: a NumPy generator's state, or a per-sample
    stream's draw count (minivit.sample_random: its draws are a function of it); None on CuPy."""
    if hasattr(rng, "bit_generator"):
        return ("generator", rng.bit_generator.state) if backend.name == "numpy" else None
    return ("stream", rng.draws) if hasattr(rng, "draws") else None


def _restore_random_state(rng, state) -> None:
    kind, value = state
    if kind == "generator":
        rng.bit_generator.state = value
    else:
        rng.draws = value


def _model_objective(model, pixel_values, dlogits):
    """f(params, pixel_values) = sum(logits * dlogits), with the same dropout masks each call."""
    xp = backend.xp
    rng_state = _random_state(model.rng)
    dropout_active = model.training and any(
        getattr(module, "p", 0.0) or getattr(module, "dropout_p", 0.0) for module in model.modules()
    )
    if dropout_active and rng_state is None:
        raise ValueError("With dropout on the cupy backend, check the model in eval() mode.")

    def f():
        if rng_state is not None:
            _restore_random_state(model.rng, rng_state)  # the same masks every call
        with no_grad():  # no backward will follow this forward
            logits = model.forward(pixel_values)
        return xp.sum(logits * dlogits)

    return f


def check_model(model, pixel_values, h: float | None = None, max_elements: int | None = None,
                seed: int = 0, include_input: bool = True, stencil: int = 5) -> GradcheckReport:
    """Check every parameter's gradient (and the input's) for a float64 model.

    max_elements limits how many elements of each tensor are checked.
    """
    _require_float64({"model": model.embeddings.cls_token.data, "pixel_values": pixel_values})
    batch_size = pixel_values.shape[0]
    dlogits = _normal(seed, (batch_size, model.config.num_labels))
    f = _model_objective(model, pixel_values, dlogits)
    rng_state = _random_state(model.rng)

    model.zero_grad()
    model.forward(pixel_values)
    dpixel_values = model.backward(dlogits)
    if rng_state is not None:
        _restore_random_state(model.rng, rng_state)

    inputs = {name: parameter.data for name, parameter in model.named_parameters()}
    analytic = {name: parameter.grad.copy() for name, parameter in model.named_parameters()}
    if include_input:
        inputs["pixel_values"] = pixel_values
        analytic["pixel_values"] = dpixel_values
    return check_gradients(f, inputs, analytic, h, max_elements, seed, stencil)


def directional_check(model, pixel_values, num_directions: int = 3, h: float = 1e-5,
                      seed: int = 0) -> float:
    """A cheap whole-model check: for random unit directions v over all parameters,
    compare the analytic derivative <grad, v> with (f(theta + h v) - f(theta - h v)) / 2h.

    Two forwards per direction instead of two per parameter. Returns the largest
    relative error over the directions.
    """
    xp = backend.xp
    _require_float64({"model": model.embeddings.cls_token.data, "pixel_values": pixel_values})
    dlogits = _normal(seed, (pixel_values.shape[0], model.config.num_labels))
    f = _model_objective(model, pixel_values, dlogits)
    parameters = model.parameters()

    model.zero_grad()
    model.forward(pixel_values)
    model.backward(dlogits)
    worst = 0.0
    for direction_index in range(num_directions):
        direction_rng = backend.default_rng(seed + 1 + direction_index)
        directions = [direction_rng.standard_normal(p.shape) for p in parameters]
        norm = math.sqrt(sum(float(xp.sum(d * d)) for d in directions))
        directions = [d / norm for d in directions]
        analytic = sum(float(xp.sum(p.grad * d)) for p, d in zip(parameters, directions))
        for p, d in zip(parameters, directions):
            p.data += h * d
        f_plus = float(f())
        for p, d in zip(parameters, directions):
            p.data -= 2 * h * d
        f_minus = float(f())
        for p, d in zip(parameters, directions):
            p.data += h * d
        numeric = (f_plus - f_minus) / (2 * h)
        worst = max(worst, abs(analytic - numeric) / max(1e-8, abs(analytic) + abs(numeric)))
    return worst
