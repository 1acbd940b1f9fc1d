"""Fused CPU kernels, compiled with numba: one parallel loop per chain, rows split over cores.

Each function restates the NumPy chain it replaces (see minivit/ops/) and is
tested against it. Arrays are viewed as rows (last axis) x columns; rows are
independent, so ``prange`` hands them to the cores. (Host-side module: numba
kernels take NumPy arrays.)
"""

from __future__ import annotations

import math

import numba
import numpy as np

# numba's OpenMP threads spin for a while after each parallel loop, taking the cores that
# OpenBLAS needs for the next matrix product (measured: a training step 15% slower). The
# workqueue layer's threads sleep instead. Only settable before the first parallel call.
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)


# Abramowitz & Stegun 7.1.26, as minivit.ops.gelu.erf uses it for float32 (error < 1.5e-7):
# erf(z) = 1 - (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p z), z >= 0.
_P = np.float32(0.3275911)
_A1, _A2, _A3, _A4, _A5 = (np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027,
                                                    1.061405429))
_ONE, _HALF, _SQRT_HALF32 = np.float32(1.0), np.float32(0.5), np.float32(_SQRT_HALF)


@numba.njit(parallel=True, cache=True)
def _gelu_exact_forward_float32(x, out, cdf):
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            z = abs(value) * _SQRT_HALF32
            t = _ONE / (_ONE + _P * z)
            erf_z = _ONE - ((((_A5 * t + _A4) * t + _A3) * t + _A2) * t + _A1) * t * math.exp(-z * z)
            phi = _HALF * (_ONE + (erf_z if value >= 0 else -erf_z))  # Phi(x)
            cdf[row, col] = phi
            out[row, col] = value * phi


@numba.njit(parallel=True, cache=True)
def _gelu_exact_forward_float64(x, out, cdf):
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            phi = 0.5 * (1.0 + math.erf(value * _SQRT_HALF))  # Phi(x), libm's erf
            cdf[row, col] = phi
            out[row, col] = value * phi


@numba.njit(parallel=True, cache=True)
def _gelu_exact_backward(dout, x, cdf, dx, inv_sqrt_2pi, minus_half):
    # The constants arrive in x's dtype: a float64 constant would turn float32 math into
    # float64 math, and a scalar float64 exp is several times slower than a vectorised float32 one.
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            pdf = inv_sqrt_2pi * math.exp(minus_half * value * value)  # phi(x)
            dx[row, col] = dout[row, col] * (cdf[row, col] + value * pdf)


def _rows(array):
    return np.ascontiguousarray(array).reshape(-1, array.shape[-1])


def gelu_exact_forward(x):
    """out = x * Phi(x), and Phi(x) for the backward."""
    rows = _rows(x)
    out, cdf = np.empty_like(rows), np.empty_like(rows)
    kernel = _gelu_exact_forward_float32 if x.dtype == np.float32 else _gelu_exact_forward_float64
    kernel(rows, out, cdf)
    return out.reshape(x.shape), cdf.reshape(x.shape)


def gelu_exact_backward(dout, x, cdf):
    """dx = dout * (Phi(x) + x phi(x))."""
    dx = np.empty(x.shape, dtype=x.dtype)
    _gelu_exact_backward(_rows(dout), _rows(x), _rows(cdf), dx.reshape(-1, x.shape[-1]),
                         x.dtype.type(_INV_SQRT_2PI), x.dtype.type(-0.5))
    return dx


@numba.njit(parallel=True, cache=True)
def _layernorm_forward(x, gamma, beta, eps, out, xhat, rstd):
    D = x.shape[1]
    for row in numba.prange(x.shape[0]):
        mean = 0.0
        for col in range(D):
            mean += x[row, col]
        mean /= D
        var = 0.0
        for col in range(D):
            centered = x[row, col] - mean
            var += centered * centered
        var /= D
        r = 1.0 / math.sqrt(var + eps)
        rstd[row, 0] = r
        for col in range(D):
            normalized = (x[row, col] - mean) * r
            xhat[row, col] = normalized
            out[row, col] = normalized * gamma[col] + beta[col]


def layernorm_forward(x, gamma, beta, eps):
    """(out, xhat, rstd) with rstd of shape (..., 1), as ops.layernorm_forward."""
    rows = _rows(x)
    out, xhat = np.empty_like(rows), np.empty_like(rows)
    rstd = np.empty((rows.shape[0], 1), dtype=x.dtype)
    _layernorm_forward(rows, gamma, beta, eps, out, xhat, rstd)
    return out.reshape(x.shape), xhat.reshape(x.shape), rstd.reshape(*x.shape[:-1], 1)


@numba.njit(parallel=True, cache=True)
def _layernorm_backward_dx(dout, xhat, rstd, gamma, dx):
    D = dout.shape[1]
    for row in numba.prange(dout.shape[0]):
        mean_dxhat = 0.0
        mean_dxhat_xhat = 0.0
        for col in range(D):
            dxhat = dout[row, col] * gamma[col]
            mean_dxhat += dxhat
            mean_dxhat_xhat += dxhat * xhat[row, col]
        mean_dxhat /= D
        mean_dxhat_xhat /= D
        r = rstd[row, 0]
        for col in range(D):
            dxhat = dout[row, col] * gamma[col]
            dx[row, col] = r * (dxhat - mean_dxhat - xhat[row, col] * mean_dxhat_xhat)


def layernorm_backward_dx(dout, xhat, rstd, gamma):
    dx = np.empty(dout.shape, dtype=dout.dtype)
    _layernorm_backward_dx(_rows(dout), _rows(xhat), _rows(rstd), gamma, dx.reshape(-1, dout.shape[-1]))
    return dx
