"""Per-sample random draws on the GPU: replaces ops.sample_uniform (minivit/ops/counter_random.py) with
the same integer hash in one kernel (counter_random.cu), where the reference's array math takes ~25 launches."""

from __future__ import annotations

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import FLOATS, contiguous, grid, typed
from minivit.kernels.registry import replaces


def _stand_in(samples, draw_key, row_length, n, out):
    out[...] = ops.sample_uniform(samples, int(draw_key), out.shape, out.dtype)


SAMPLE_UNIFORM = typed("counter_random.cu", "sample_uniform", _stand_in)


@replaces("sample_uniform")
def sample_uniform(samples, draw_key: int, shape: tuple, dtype):
    """Replaces ops.sample_uniform: the same integer hash, one launch (counter_random.cu) instead of ~25."""
    xp = backend.xp
    if np.dtype(dtype) not in FLOATS:
        return ops.sample_uniform(samples, draw_key, shape, dtype)
    out = xp.empty(shape, dtype=dtype)
    row_length = out.size // max(1, int(shape[0]))
    SAMPLE_UNIFORM[out.dtype](grid(out.size), (contiguous(samples.astype(np.uint64, copy=False)),
                                               np.uint64(draw_key), np.int64(row_length), np.int64(out.size), out))
    return out
