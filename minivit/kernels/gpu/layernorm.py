"""LayerNorm on the GPU: replaces ops.layernorm_forward / layernorm_backward (layernorm.cu): the forward
in one launch (a warp per row), the backward in two (dx and each block's partial dgamma, dbeta in one
pass; column_sums.py adds the blocks' rows up), instead of the reference's ~8 / ~12; float16 stored and
float32 computed. Rows wider than 1024 take the older two kernels (dx a warp per row; dgamma and dbeta
by columns: D / 32 blocks, each thread walking rows / 32 rows, too few blocks for a GPU's SMs)."""

from __future__ import annotations

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu import column_sums
from minivit.kernels.gpu.launch import (
    BLOCK,
    ROWS_PER_BLOCK,
    TARGET_BLOCKS,
    WITH_HALF,
    compute,
    contiguous,
    row_grid,
    supported,
    typed,
)
from minivit.kernels.registry import replaces

MAX_COLUMNS_PER_LANE = 32  # layernorm.cu's layernorm_backward_fused: rows of at most 1024


def _forward_stand_in(x, gamma, beta, out, xhat, rstd, rows, D, eps):
    x, gamma, beta = compute(x), compute(gamma), compute(beta)
    result, (normalized, r, _) = ops.layernorm_forward(x.reshape(int(rows), int(D)), gamma, beta, float(eps))
    out[...] = result.reshape(out.shape)
    xhat[...] = normalized.reshape(xhat.shape)
    rstd[...] = r.reshape(rstd.shape)


def _backward_input_stand_in(dout, xhat, rstd, gamma, dx, rows, D):
    dout, xhat, rstd, gamma = compute(dout), compute(xhat), compute(rstd), compute(gamma)
    shape = (int(rows), int(D))
    gradient, _, _ = ops.layernorm_backward(dout.reshape(shape), (xhat.reshape(shape), rstd.reshape(-1, 1), gamma))
    dx[...] = gradient.reshape(dx.shape)


def _backward_params_stand_in(dout, xhat, dgamma, dbeta, rows, D):
    # The kernel computes dgamma and dbeta only, which depend on neither rstd nor gamma: the reference's
    # backward with ones in their place.
    dout, xhat = compute(dout), compute(xhat)
    shape = (int(rows), int(D))
    ones = backend.xp.ones
    _, gradient_gamma, gradient_beta = ops.layernorm_backward(
        dout.reshape(shape), (xhat.reshape(shape), ones((shape[0], 1), dtype=xhat.dtype), ones(D, dtype=xhat.dtype)))
    dgamma[...] = gradient_gamma
    dbeta[...] = gradient_beta


def _fused_launch(rows: int, D: int) -> tuple[int, int]:
    """(blocks, threads per block) for layernorm_backward_fused: each warp walks up to ~96 / (D / 32)
    rows (about 200 loads a thread), in at least TARGET_BLOCKS blocks where the rows allow (blocks of
    two warps when there are few rows, as the CLS rows of the final LayerNorm)."""
    threads = BLOCK if -(-rows // ROWS_PER_BLOCK) >= TARGET_BLOCKS else 64
    warps = threads // 32
    rows_per_warp = max(1, min(96 // -(-D // 32), rows // (warps * TARGET_BLOCKS)))
    return max(1, -(-rows // (warps * rows_per_warp))), threads


def _backward_fused_stand_in(dout, xhat, rstd, gamma, dx, partial, rows, D):
    # dx by the reference; dgamma and dbeta as the reference computes them (sums of dout xhat and of
    # dout), summed per block over the rows its warps walk (row // warps % blocks) instead of over all
    xp = backend.xp
    rows, D = int(rows), int(D)
    blocks, threads = _fused_launch(rows, D)
    warps = threads // 32
    _backward_input_stand_in(dout, xhat, rstd, gamma, dx, rows, D)
    dout, xhat = compute(dout).reshape(rows, D), compute(xhat).reshape(rows, D)
    per_round = blocks * warps
    padded = -(-rows // per_round) * per_round
    both = xp.zeros((padded, 2, D), dtype=partial.dtype)
    both[:rows, 0] = dout * xhat
    both[:rows, 1] = dout
    partial[...] = both.reshape(-1, blocks, warps, 2 * D).sum(axis=(0, 2))


LAYERNORM_FORWARD = typed("layernorm.cu", "layernorm_forward", _forward_stand_in, WITH_HALF)
LAYERNORM_BACKWARD_INPUT = typed("layernorm.cu", "layernorm_backward_input", _backward_input_stand_in, WITH_HALF)
LAYERNORM_BACKWARD_PARAMS = typed("layernorm.cu", "layernorm_backward_params", _backward_params_stand_in, WITH_HALF)
LAYERNORM_BACKWARD_FUSED = typed("layernorm.cu", "layernorm_backward_fused", _backward_fused_stand_in, WITH_HALF)


@replaces("layernorm_forward")
def layernorm_forward(x, gamma, beta, eps: float = 1e-12):
    """Replaces ops.layernorm_forward: one kernel, a warp per row (layernorm.cu)."""
    if not supported(x, gamma, beta, dtypes=WITH_HALF):
        return ops.layernorm_forward(x, gamma, beta, eps)
    xp = backend.xp
    x = contiguous(x)
    D = x.shape[-1]
    rows = x.size // D
    out, xhat = xp.empty_like(x), xp.empty_like(x)
    rstd = xp.empty((*x.shape[:-1], 1), dtype=x.dtype)
    LAYERNORM_FORWARD[x.dtype](row_grid(rows), (x, contiguous(gamma), contiguous(beta), out, xhat, rstd,
                                                np.int32(rows), np.int32(D), np.float64(eps)))
    return out, (xhat, rstd, gamma)


@replaces("layernorm_backward")
def layernorm_backward(dout, cache):
    """Replaces ops.layernorm_backward: dx and the blocks' partial dgamma, dbeta in one pass, their sums
    in a second (column_sums.cu); rows wider than 1024: dx a warp per row, dgamma and dbeta by columns."""
    xhat, rstd, gamma = cache
    if not supported(dout, xhat, gamma, dtypes=WITH_HALF):
        return ops.layernorm_backward(dout, cache)
    xp = backend.xp
    dout, xhat, rstd = contiguous(dout), contiguous(xhat), contiguous(rstd)  # (one token's rows: views)
    D = dout.shape[-1]
    rows = dout.size // D
    dx = xp.empty_like(dout)
    if D <= 32 * MAX_COLUMNS_PER_LANE:
        blocks, threads = _fused_launch(rows, D)
        accumulator = column_sums.accumulator(dout.dtype)
        partial = xp.empty((blocks, 2 * D), dtype=accumulator)  # each block's dgamma, then its dbeta
        LAYERNORM_BACKWARD_FUSED[dout.dtype](blocks, (dout, xhat, rstd, contiguous(gamma), dx, partial,
                                                      np.int32(rows), np.int32(D)),
                                             block=threads, shared_mem=2 * D * np.dtype(accumulator).itemsize)
        both = column_sums.finish(partial, dout.dtype)
        return dx, both[:D], both[D:]
    dgamma, dbeta = xp.empty(D, dtype=dout.dtype), xp.empty(D, dtype=dout.dtype)
    LAYERNORM_BACKWARD_INPUT[dout.dtype](row_grid(rows), (dout, xhat, rstd, contiguous(gamma), dx, np.int32(rows),
                                                          np.int32(D)))
    LAYERNORM_BACKWARD_PARAMS[dout.dtype]((D + 31) // 32, (dout, xhat, dgamma, dbeta, np.int32(rows), np.int32(D)),
                                          block=(32, 32))
    return dx, dgamma, dbeta
