"""Softmax over one axis, and its Jacobian-vector product.

    y_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x))

The Jacobian is dy_i/dx_j = y_i (delta_ij - y_j), so for an upstream gradient dy

    dx_j = sum_i dy_i y_i (delta_ij - y_j) = y_j (dy_j - sum_i dy_i y_i)

which never forms the N x N Jacobian.
"""

from __future__ import annotations

from minivit import backend, fused


def _softmax_rows(x):
    shifted = x - x.max(axis=-1, keepdims=True)  # exp cannot overflow
    exps = backend.xp.exp(shifted)
    return exps / exps.sum(axis=-1, keepdims=True)


def _softmax_backward_rows(dprobs, probs):
    return probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))


def softmax_forward(x, axis: int = -1):
    """Softmax over ``axis``. The last axis runs as a fused kernel where one is available
    (float32 on NumPy, minivit.fused), else in blocks of rows (backend.map_rows)."""
    xp = backend.xp
    kernels = fused.cpu_kernels()
    if axis in (-1, x.ndim - 1) and kernels is not None and x.dtype == xp.float32:
        probs = kernels.softmax_rows(x)
    elif axis in (-1, x.ndim - 1):
        probs = backend.map_rows(_softmax_rows, x)
    else:
        probs = xp.moveaxis(_softmax_rows(xp.moveaxis(x, axis, -1)), -1, axis)
    return probs, (probs, axis)


def softmax_backward(dprobs, cache):
    """The last axis runs as a fused kernel where one is available (minivit.fused)."""
    xp = backend.xp
    probs, axis = cache
    kernels = fused.cpu_kernels()
    if axis in (-1, probs.ndim - 1) and kernels is not None:
        return kernels.softmax_backward_rows(dprobs, probs)
    if axis in (-1, probs.ndim - 1):
        return backend.map_rows(_softmax_backward_rows, dprobs, probs)
    moved = _softmax_backward_rows(xp.moveaxis(dprobs, axis, -1), xp.moveaxis(probs, axis, -1))
    return xp.moveaxis(moved, -1, axis)
