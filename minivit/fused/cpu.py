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
from numba.core import types
from numba.extending import intrinsic

# numba's OpenMP threads spin for a while after each parallel loop, taking the cores that
# OpenBLAS needs for the next matrix product (measured: a training step 15% slower). The
# workqueue layer's threads sleep instead. Only settable before the first parallel call.
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

# The compiler may reorder sums and fuse multiply-adds (which lets it vectorise reductions), but
# not assume away NaN and infinity: a diverging run must still show a NaN loss.
_FAST = {"reassoc", "contract", "nsz", "arcp"}

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)


def _rows(array):
    """The array as a contiguous (rows, last axis) matrix: the kernels' view of everything."""
    return np.ascontiguousarray(array).reshape(-1, array.shape[-1])


# Abramowitz & Stegun 7.1.26, as minivit.ops.gelu.erf uses it for float32 (error < 1.5e-7):
# erf(z) = 1 - (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p z), z >= 0.
_P = np.float32(0.3275911)
_A1, _A2, _A3, _A4, _A5 = (np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027,
                                                    1.061405429))
_ONE, _HALF, _SQRT_HALF32 = np.float32(1.0), np.float32(0.5), np.float32(_SQRT_HALF)


# --- exp in float32, in a form the compiler can vectorise ----------------------------------------
# A call to libm's expf cannot be vectorised, and it made the float32 kernels below 2-3x slower
# than they need be. This is Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by a
# degree-7 polynomial, and 2^n written straight into a float's exponent bits.
# Relative error below 1e-7 (tested against float64 exp).

@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (no conversion): LLVM's bitcast."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


_F32 = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F32(1.4426950408889634), _F32(0.693359375), _F32(-2.12194440e-4)
_E0, _E1, _E2, _E3, _E4, _E5 = (_F32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                                  4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))


@numba.njit(fastmath=_FAST, inline="always")
def _exp32(x):
    x = min(max(x, _F32(-87.3)), _F32(88.3))  # beyond these, float32 under- or overflows
    n = math.floor(x * _LOG2E + _F32(0.5))  # nearest integer to x / ln2
    r = x - n * _LN2_HI - n * _LN2_LO  # ln2 in two parts, so that r keeps its low bits
    p = ((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5
    exp_r = p * r * r + r + _F32(1.0)
    two_to_n = _float32_from_bits(numba.int32((n + _F32(127.0)) * _F32(8388608.0)))  # (n + 127) << 23
    return exp_r * two_to_n


@numba.njit(parallel=True, fastmath=_FAST, cache=True)
def _exp32_rows(x, out):  # for the test of _exp32
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            out[row, col] = _exp32(x[row, col])


def exp32(x):
    out = np.empty_like(x)
    _exp32_rows(_rows(x), out.reshape(-1, x.shape[-1]))
    return out


# --- GELU ----------------------------------------------------------------------------------------

@numba.njit(parallel=True, fastmath=_FAST, cache=True)
def _gelu_exact_forward_float32(x, out, cdf):
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            z = abs(value) * _SQRT_HALF32
            t = _ONE / (_ONE + _P * z)
            erf_z = _ONE - ((((_A5 * t + _A4) * t + _A3) * t + _A2) * t + _A1) * t * _exp32(-z * z)
            phi = _HALF + _HALF * math.copysign(erf_z, value)  # Phi(x) = (1 + erf(x / sqrt 2)) / 2
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


@numba.njit(parallel=True, fastmath=_FAST, cache=True)
def _gelu_exact_backward_float32(dout, x, cdf, dx):
    inv_sqrt_2pi, minus_half = _F32(_INV_SQRT_2PI), _F32(-0.5)
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            pdf = inv_sqrt_2pi * _exp32(minus_half * value * value)  # phi(x)
            dx[row, col] = dout[row, col] * (cdf[row, col] + value * pdf)


@numba.njit(parallel=True, cache=True)
def _gelu_exact_backward_float64(dout, x, cdf, dx):
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * value * value)  # phi(x)
            dx[row, col] = dout[row, col] * (cdf[row, col] + value * pdf)


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
    kernel = _gelu_exact_backward_float32 if x.dtype == np.float32 else _gelu_exact_backward_float64
    kernel(_rows(dout), _rows(x), _rows(cdf), dx.reshape(-1, x.shape[-1]))
    return dx


@numba.njit(parallel=True, fastmath=_FAST, cache=True)
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


@numba.njit(parallel=True, fastmath=_FAST, cache=True)
def _layernorm_backward(dout, xhat, rstd, gamma, dx, dgamma_parts, dbeta_parts):
    # Rows go to the cores in blocks; each block sums its own share of dgamma and dbeta
    # (one row of dgamma_parts / dbeta_parts), and the caller adds the blocks' shares.
    rows, D = dout.shape
    blocks = dgamma_parts.shape[0]
    per_block = (rows + blocks - 1) // blocks
    for block in numba.prange(blocks):
        for row in range(block * per_block, min(rows, (block + 1) * per_block)):
            mean_dxhat = 0.0
            mean_dxhat_xhat = 0.0
            for col in range(D):
                dxhat = dout[row, col] * gamma[col]
                mean_dxhat += dxhat
                mean_dxhat_xhat += dxhat * xhat[row, col]
                dgamma_parts[block, col] += dout[row, col] * xhat[row, col]
                dbeta_parts[block, col] += dout[row, col]
            mean_dxhat /= D
            mean_dxhat_xhat /= D
            r = rstd[row, 0]
            for col in range(D):
                dxhat = dout[row, col] * gamma[col]
                dx[row, col] = r * (dxhat - mean_dxhat - xhat[row, col] * mean_dxhat_xhat)


def layernorm_backward(dout, xhat, rstd, gamma):
    """(dx, dgamma, dbeta), as ops.layernorm_backward."""
    D = dout.shape[-1]
    dx = np.empty(dout.shape, dtype=dout.dtype)
    dgamma_parts = np.zeros((32, D), dtype=np.float64)  # 32 blocks of rows, summed in float64
    dbeta_parts = np.zeros((32, D), dtype=np.float64)
    _layernorm_backward(_rows(dout), _rows(xhat), _rows(rstd), gamma, dx.reshape(-1, D), dgamma_parts,
                        dbeta_parts)
    return dx, dgamma_parts.sum(axis=0).astype(dout.dtype), dbeta_parts.sum(axis=0).astype(dout.dtype)


@numba.njit(parallel=True, fastmath=_FAST, cache=True)
def _softmax_rows(x, out):
    N = x.shape[1]
    for row in numba.prange(x.shape[0]):
        row_max = x[row, 0]  # a compare, not max(): max() would need the no-NaN flag to vectorise
        for col in range(1, N):
            if x[row, col] > row_max:
                row_max = x[row, col]
        for col in range(N):
            out[row, col] = _exp32(x[row, col] - row_max)
        total = out.dtype.type(0.0)
        for col in range(N):
            total += out[row, col]
        inverse = out.dtype.type(1.0) / total
        for col in range(N):
            out[row, col] *= inverse


def softmax_rows(x):
    """exp(x - max) / sum over the last axis, as ops.softmax._softmax_rows; float32 only."""
    out = np.empty(x.shape, dtype=x.dtype)
    _softmax_rows(_rows(x), out.reshape(-1, x.shape[-1]))
    return out


@numba.njit(parallel=True, fastmath=_FAST, cache=True)
def _softmax_backward_rows(dprobs, probs, dx):
    N = probs.shape[1]
    for row in numba.prange(probs.shape[0]):
        dot = 0.0
        for col in range(N):
            dot += dprobs[row, col] * probs[row, col]
        for col in range(N):
            dx[row, col] = probs[row, col] * (dprobs[row, col] - dot)


def softmax_backward_rows(dprobs, probs):
    """dx = y (dy - sum(dy y)) over the last axis, as ops.softmax._softmax_backward_rows."""
    dx = np.empty(probs.shape, dtype=probs.dtype)
    _softmax_backward_rows(_rows(dprobs), _rows(probs), dx.reshape(-1, probs.shape[-1]))
    return dx
