"""Layer normalisation over the last axis.

Forward, per token (a row of D features):
    mu   = mean(x)
    var  = mean((x - mu)^2)
    rstd = 1 / sqrt(var + eps)
    xhat = (x - mu) * rstd
    out  = xhat * gamma + beta

Cache: (xhat, rstd, gamma), with rstd of shape (..., 1).
"""

from __future__ import annotations

from minivit import backend


def layernorm_forward(x, gamma, beta, eps: float = 1e-12):
    """x (..., D), gamma (D,), beta (D,) -> out (..., D)."""
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)  # biased, as PyTorch's
    rstd = 1.0 / backend.xp.sqrt(var + eps)  # (..., 1)
    xhat = centered * rstd
    out = xhat * gamma + beta
    return out, (xhat, rstd, gamma)


def layernorm_backward(dout, cache):
    """Returns (dx, dgamma, dbeta).

    In the forward, out = xhat * gamma + beta, so dgamma = sum(dout * xhat) and
    dbeta = sum(dout) over every axis but the last. For x, with dxhat = dout * gamma,
    differentiating xhat = (x - mu) * rstd through mu and rstd gives, per row,

        dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))

    (the mean term is mu's share of the gradient, the xhat term rstd's).
    """
    xhat, rstd, gamma = cache
    D = dout.shape[-1]
    dgamma = (dout * xhat).reshape(-1, D).sum(axis=0)
    dbeta = dout.reshape(-1, D).sum(axis=0)
    dxhat = dout * gamma
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta
