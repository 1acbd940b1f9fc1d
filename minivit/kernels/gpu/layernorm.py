"""LayerNorm on the GPU: replaces ops.layernorm_forward / layernorm_backward (layernorm.cu): the forward
in one launch (a warp per row), the backward in two (dx a warp per row; dgamma and dbeta by columns),
instead of the reference's ~8 / ~12; float16 stored and float32 computed."""

from __future__ import annotations

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import WITH_HALF, compute, contiguous, row_grid, supported, typed
from minivit.kernels.registry import replaces


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


LAYERNORM_FORWARD = typed("layernorm.cu", "layernorm_forward", _forward_stand_in, WITH_HALF)
LAYERNORM_BACKWARD_INPUT = typed("layernorm.cu", "layernorm_backward_input", _backward_input_stand_in, WITH_HALF)
LAYERNORM_BACKWARD_PARAMS = typed("layernorm.cu", "layernorm_backward_params", _backward_params_stand_in, WITH_HALF)


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
    """Replaces ops.layernorm_backward: two kernels, dx a warp per row, dgamma and dbeta by columns."""
    xhat, rstd, gamma = cache
    if not supported(dout, xhat, gamma, dtypes=WITH_HALF):
        return ops.layernorm_backward(dout, cache)
    xp = backend.xp
    dout = contiguous(dout)
    D = dout.shape[-1]
    rows = dout.size // D
    dx = xp.empty_like(dout)
    dgamma, dbeta = xp.empty(D, dtype=dout.dtype), xp.empty(D, dtype=dout.dtype)
    LAYERNORM_BACKWARD_INPUT[dout.dtype](row_grid(rows), (dout, xhat, rstd, contiguous(gamma), dx, np.int32(rows),
                                                          np.int32(D)))
    LAYERNORM_BACKWARD_PARAMS[dout.dtype]((D + 31) // 32, (dout, xhat, dgamma, dbeta, np.int32(rows), np.int32(D)),
                                          block=(32, 32))
    return dx, dgamma, dbeta
