"""Layer normalisation over the last axis.

Forward, per token (a row of D features):
    mu   = mean(x)
    var  = mean((x - mu)^2)
    rstd = 1 / sqrt(var + eps)
    xhat = (x - mu) * rstd
    out  = xhat * gamma + beta
"""

from __future__ import annotations

from minivit import backend, fused


def layernorm_forward(x, gamma, beta, eps: float = 1e-12):
    """x (..., D), gamma (D,), beta (D,) -> out (..., D).

    Rows are independent: the chain below runs as a fused kernel where one is available
    (minivit.fused), else through backend.map_rows (blocks of rows on all cores).
    """

    def normalize_rows(x):
        mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
        centered = x - mean
        var = (centered * centered).mean(axis=-1, keepdims=True)  # biased, as PyTorch's
        rstd = 1.0 / backend.xp.sqrt(var + eps)
        xhat = centered * rstd
        return xhat * gamma + beta, xhat, rstd

    kernels = fused.cpu_kernels()
    if kernels is not None:  # the same chain, compiled into one loop (minivit.fused)
        out, xhat, rstd = kernels.layernorm_forward(x, gamma, beta, eps)
    else:
        out, xhat, rstd = backend.map_rows(normalize_rows, x)
    return out, (xhat, rstd, gamma)


def layernorm_backward(dout, cache):
    """Returns (dx, dgamma, dbeta).

    In the forward, out = xhat * gamma + beta, so dgamma = sum(dout * xhat) and
    dbeta = sum(dout) over every axis but the last. For x, with dxhat = dout * gamma,
    differentiating xhat = (x - mu) * rstd through mu and rstd gives, per row,

        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
    """
    xhat, rstd, gamma = cache
    kernels = fused.cpu_kernels()
    if kernels is not None:  # the same sums, in one pass (minivit.fused)
        return kernels.layernorm_backward(dout, xhat, rstd, gamma)
    D = dout.shape[-1]
    dgamma = (dout * xhat).reshape(-1, D).sum(axis=0)
    dbeta = dout.reshape(-1, D).sum(axis=0)

    def dx_rows(dout, xhat, rstd):
        dxhat = dout * gamma
        return rstd * (
            dxhat
            - dxhat.mean(axis=-1, keepdims=True)
            - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
        )

    dx = backend.map_rows(dx_rows, dout, xhat, rstd)
    return dx, dgamma, dbeta
