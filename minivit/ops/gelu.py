"""GELU, in its two forms.

Exact (transformers' "gelu"):    gelu(x) = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2
Tanh  (transformers' "gelu_new"): gelu(x) = x * (1 + tanh(u)) / 2,  u = sqrt(2/pi) (x + 0.044715 x^3)

Phi is the standard normal CDF; its derivative phi(x) = exp(-x^2 / 2) / sqrt(2 pi) is
the density.
"""

from __future__ import annotations

import math

from minivit import backend, fused

APPROXIMATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TANH_COEFF = 0.044715

# Abramowitz & Stegun 7.1.26: for x >= 0, erf(x) = 1 - (a1 t + ... + a5 t^5) exp(-x^2),
# t = 1 / (1 + p x), absolute error below 1.5e-7, about float32's resolution. PyTorch's
# vectorised float32 CPU erf uses the same formula. SciPy's erf evaluates float32 in a
# scalar loop, about 20 times slower than NumPy's vectorised exp, so float32 uses this;
# float64 (gradient checks, parity) uses SciPy's exact erf.
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x):
    """erf(x): the A&S formula above for float32 on NumPy, SciPy's (or CuPy's) erf otherwise."""
    xp = backend.xp
    if x.dtype != xp.float32 or backend.name == "cupy":
        return backend.erf(x)
    magnitude = xp.abs(x)
    t = 1.0 / (1.0 + _AS_P * magnitude)
    poly = _AS_A[4]
    for coefficient in reversed(_AS_A[:4]):
        poly = poly * t + coefficient
    return xp.copysign(1.0 - poly * t * xp.exp(-magnitude * magnitude), x)


def _gelu_exact(x):
    cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))  # Phi(x)
    return x * cdf, cdf


def _gelu_tanh(x):
    inner = _SQRT_2_OVER_PI * (x + _TANH_COEFF * x * x * x)
    tanh_inner = backend.xp.tanh(inner)
    return 0.5 * x * (1.0 + tanh_inner), tanh_inner


def gelu_forward(x, approximate: str = "none"):
    """approximate: "none" (exact, erf) or "tanh".

    The elementwise chain runs as a fused kernel where one is available
    (minivit.fused), else through backend.map_rows: in cache-sized blocks on all
    cores on NumPy, in one go on CuPy.
    """
    if approximate == "none":
        kernels = fused.cpu_kernels()
        if kernels is not None:  # the same chain, compiled into one loop (minivit.fused)
            out, cdf = kernels.gelu_exact_forward(x)
        else:
            out, cdf = backend.map_rows(_gelu_exact, x)
        return out, (x, (cdf,), approximate)
    if approximate == "tanh":
        out, tanh_inner = backend.map_rows(_gelu_tanh, x)
        return out, (x, (tanh_inner,), approximate)
    raise ValueError(f"Unknown GELU approximation {approximate!r}: use 'none' or 'tanh'.")


def gelu_backward(dout, cache):
    """d/dx [x Phi(x)] = Phi(x) + x phi(x).

    For the tanh form, with t = tanh(u):
    d/dx [x (1 + t) / 2] = (1 + t) / 2 + x (1 - t^2) / 2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    """
    x, saved, approximate = cache
    if approximate == "none":
        kernels = fused.cpu_kernels()
        if kernels is not None:
            return kernels.gelu_exact_backward(dout, x, *saved)
        return backend.map_rows(_gelu_exact_backward, dout, x, *saved)
    return backend.map_rows(_gelu_tanh_backward, dout, x, *saved)


def _gelu_exact_backward(dout, x, cdf):
    pdf = _INV_SQRT_2PI * backend.xp.exp(-0.5 * x * x)
    return dout * (cdf + x * pdf)


def _gelu_tanh_backward(dout, x, tanh_inner):
    dinner = _SQRT_2_OVER_PI * (1.0 + 3.0 * _TANH_COEFF * x * x)
    return dout * (0.5 * (1.0 + tanh_inner) + 0.5 * x * (1.0 - tanh_inner * tanh_inner) * dinner)
