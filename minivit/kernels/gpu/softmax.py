"""Softmax on the GPU: replaces ops.softmax_forward / softmax_backward over the last axis (softmax.cu):
one launch each, a warp per row; float16 stored and float32 computed. The kernels take a scale folded
in (attention's 1/sqrt(d)): ``softmax_rows`` and ``softmax_rows_backward``, which attention.py uses."""

from __future__ import annotations

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import WITH_HALF, compute, contiguous, row_grid, supported, typed
from minivit.kernels.registry import replaces


def _forward_stand_in(x, out, rows, N, scale):
    # The kernel's contract: softmax(scale * x) over rows of N (attention folds its 1/sqrt(d) in).
    x = compute(x)
    out[...] = ops.softmax_forward(x.reshape(int(rows), int(N)) * float(scale))[0].reshape(out.shape)


def _backward_stand_in(dprobs, probs, dx, rows, N, scale):
    # The kernel's contract: the gradient with respect to x of softmax(scale * x), the reference's times scale.
    dprobs, probs = compute(dprobs), compute(probs)
    shape = (int(rows), int(N))
    dx[...] = (ops.softmax_backward(dprobs.reshape(shape), (probs.reshape(shape), -1)) * float(scale)).reshape(dx.shape)


SOFTMAX_FORWARD = typed("softmax.cu", "softmax_forward", _forward_stand_in, WITH_HALF)
SOFTMAX_BACKWARD = typed("softmax.cu", "softmax_backward", _backward_stand_in, WITH_HALF)


def softmax_rows(x, scale: float):
    """softmax(scale * x) over the last axis of a contiguous x: one launch."""
    out = backend.xp.empty_like(x)
    N = x.shape[-1]
    rows = x.size // N
    SOFTMAX_FORWARD[x.dtype](row_grid(rows), (x, out, np.int32(rows), np.int32(N), np.float64(scale)))
    return out


def softmax_rows_backward(dprobs, probs, scale: float):
    """The gradient of softmax_rows(x, scale) with respect to x: one launch."""
    dx = backend.xp.empty_like(probs)
    N = probs.shape[-1]
    rows = probs.size // N
    SOFTMAX_BACKWARD[probs.dtype](row_grid(rows), (dprobs, probs, dx, np.int32(rows), np.int32(N),
                                                   np.float64(scale)))
    return dx


@replaces("softmax_forward")
def softmax_forward(x, axis: int = -1):
    """Replaces ops.softmax_forward (last axis): one kernel, a warp per row (softmax.cu)."""
    if axis not in (-1, x.ndim - 1) or not supported(x, dtypes=WITH_HALF):
        return ops.softmax_forward(x, axis)
    probs = softmax_rows(contiguous(x), 1.0)
    return probs, (probs, axis)


@replaces("softmax_backward")
def softmax_backward(dprobs, cache):
    """Replaces ops.softmax_backward (last axis): one kernel, a warp per row (softmax.cu)."""
    probs, axis = cache
    if axis not in (-1, probs.ndim - 1) or not supported(dprobs, probs, dtypes=WITH_HALF):
        return ops.softmax_backward(dprobs, cache)
    return softmax_rows_backward(contiguous(dprobs), probs, 1.0)
