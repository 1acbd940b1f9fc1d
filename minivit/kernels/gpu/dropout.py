"""Dropout on the GPU: replaces ops.dropout_forward with the same draws (rng.random(x.shape)), then one
kernel that makes the mask and applies it (dropout.cu): 2 launches instead of 5."""

from __future__ import annotations

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import WITH_HALF, Replay, compute, contiguous, grid, supported, typed
from minivit.kernels.registry import replaces


def _stand_in(x, uniform, out, mask, p, n):
    # The kernel receives the reference's draws (uniform): the reference, replaying them, in float32 for float16.
    result, reference_mask = ops.dropout_forward(compute(x), float(p), Replay(random=uniform), True)
    out[...] = result
    mask[...] = reference_mask


DROPOUT_APPLY = typed("dropout.cu", "dropout_apply", _stand_in, WITH_HALF)


@replaces("dropout_forward")
def dropout_forward(x, p: float, rng, training: bool = True):
    """Replaces ops.dropout_forward: the same draws (rng.random(x.shape)), then one kernel makes the
    mask and applies it (dropout.cu): 2 launches instead of 5."""
    if not training or p == 0.0 or not 0.0 <= p < 1.0 or not supported(x, dtypes=WITH_HALF):
        return ops.dropout_forward(x, p, rng, training)
    xp = backend.xp
    uniform = rng.random(x.shape, dtype=xp.float32 if x.dtype == xp.float16 else x.dtype)  # as the reference draws
    x = contiguous(x)
    out, mask = xp.empty_like(x), xp.empty_like(x)
    DROPOUT_APPLY[x.dtype](grid(x.size), (x, uniform, out, mask, np.float64(p), np.int64(x.size)))
    return out, mask
