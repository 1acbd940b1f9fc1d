"""GELU on the GPU: replaces ops.gelu_forward / gelu_backward, one launch each (gelu.cu) instead of the
reference's ~5 / ~10: one thread per element, exact or tanh form, float16 stored and float32 computed."""

from __future__ import annotations

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import WITH_HALF, compute, contiguous, grid, supported, typed
from minivit.kernels.registry import replaces


def _forward_stand_in(x, out, n, tanh_form):
    out[...] = ops.gelu_forward(compute(x), "tanh" if tanh_form else "none")[0]


def _backward_stand_in(dout, x, dx, n, tanh_form):
    dx[...] = ops.gelu_backward(compute(dout), (compute(x), "tanh" if tanh_form else "none"))


GELU_FORWARD = typed("gelu.cu", "gelu_forward", _forward_stand_in, WITH_HALF)
GELU_BACKWARD = typed("gelu.cu", "gelu_backward", _backward_stand_in, WITH_HALF)


@replaces("gelu_forward")
def gelu_forward(x, approximate: str = "none"):
    """Replaces ops.gelu_forward: one kernel, one thread per element (gelu.cu)."""
    if approximate not in ("none", "tanh") or not supported(x, dtypes=WITH_HALF):
        return ops.gelu_forward(x, approximate)
    x = contiguous(x)
    out = backend.xp.empty_like(x)
    GELU_FORWARD[x.dtype](grid(x.size), (x, out, np.int64(x.size), np.int32(approximate == "tanh")))
    return out, (x, approximate)


@replaces("gelu_backward")
def gelu_backward(dout, cache):
    """Replaces ops.gelu_backward: one kernel, one thread per element (gelu.cu)."""
    x, approximate = cache
    if approximate not in ("none", "tanh") or not supported(x, dout, dtypes=WITH_HALF):
        return ops.gelu_backward(dout, cache)
    dout = contiguous(dout)
    dx = backend.xp.empty_like(x)
    GELU_BACKWARD[x.dtype](grid(x.size), (dout, x, dx, np.int64(x.size), np.int32(approximate == "tanh")))
    return dx
