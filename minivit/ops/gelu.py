"""GELU, in its two forms.

Exact (transformers' "gelu"):     gelu(x) = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2
Tanh  (transformers' "gelu_new"): gelu(x) = x * (1 + tanh(u)) / 2,  u = sqrt(2/pi) (x + 0.044715 x^3)

Phi is the standard normal CDF; its derivative phi(x) = exp(-x^2 / 2) / sqrt(2 pi) is
the density.

Cache: (x, approximate).
"""

from __future__ import annotations

import math

from minivit import backend

APPROXIMATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TANH_COEFF = 0.044715


def _check(approximate: str) -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"Unknown GELU approximation {approximate!r}: use 'none' or 'tanh'.")


def gelu_forward(x, approximate: str = "none"):
    """approximate: "none" (exact, erf) or "tanh"."""
    _check(approximate)
    if approximate == "none":
        cdf = 0.5 * (1.0 + backend.erf(x * _SQRT_HALF))  # Phi(x)
        out = x * cdf
    else:
        inner = _SQRT_2_OVER_PI * (x + _TANH_COEFF * x * x * x)
        out = 0.5 * x * (1.0 + backend.xp.tanh(inner))
    return out, (x, approximate)


def gelu_backward(dout, cache):
    """Exact:  d/dx [x Phi(x)] = Phi(x) + x phi(x).

    Tanh, with t = tanh(u):
        d/dx [x (1 + t) / 2] = (1 + t) / 2 + x (1 - t^2) / 2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    """
    xp = backend.xp
    x, approximate = cache
    _check(approximate)
    if approximate == "none":
        cdf = 0.5 * (1.0 + backend.erf(x * _SQRT_HALF))  # Phi(x)
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)  # phi(x)
        return dout * (cdf + x * pdf)
    t = xp.tanh(_SQRT_2_OVER_PI * (x + _TANH_COEFF * x * x * x))
    du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _TANH_COEFF * x * x)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)
