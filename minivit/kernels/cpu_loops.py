"""The compiled loops behind ``minivit.kernels.cpu``: numba, one parallel loop per chain.

Each loop restates the reference chain it replaces (``minivit/ops/``). Arrays arrive
as contiguous (rows, columns) matrices, rows being independent, so ``numba.prange``
hands them to the cores. ``kernels/cpu.py`` prepares the arrays and says which
reference each loop replaces; the tests compare every loop with its reference.

Small arrays (a batch of one image: 65 tokens) run each loop's serial twin instead
(``sized``): handing a few microseconds of work to the other cores costs more than
the work, since the workers sleep between loops and must be woken.
"""

from __future__ import annotations

import math
import types as python_types

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

# The compiler may reorder sums and fuse multiply-adds (which lets it vectorise reductions), but
# not assume away NaN and infinity: a diverging run must still show a NaN loss.
FAST = {"reassoc", "contract", "nsz", "arcp"}

_F32 = np.float32
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)

# Abramowitz & Stegun 7.1.26, what PyTorch's vectorised float32 CPU erf uses (error < 1.5e-7):
# erf(z) = 1 - (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p z), z >= 0.
_P = _F32(0.3275911)
_A1, _A2, _A3, _A4, _A5 = (_F32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027,
                                             1.061405429))
_ONE, _HALF, _SQRT_HALF32, _INV_SQRT_2PI32 = _F32(1.0), _F32(0.5), _F32(_SQRT_HALF), _F32(_INV_SQRT_2PI)


# --- the parallel loop or its serial twin, by size ---------------------------------------------

PARALLEL_FROM = 1 << 16  # elements: below this, a loop runs on the calling thread alone
_serial_twins: dict = {}


def sized(loop, elements: int):
    """``loop`` (a parallel loop of this module) for ``elements`` values of work or more; below, its
    serial twin: the same source compiled without threads (``numba.prange`` runs as ``range``)."""
    if elements >= PARALLEL_FROM:
        return loop
    name = loop.py_func.__qualname__
    if name not in _serial_twins:
        _serial_twins[name] = _serial_twin(loop)
    return _serial_twins[name]


def _serial_twin(loop):
    source = loop.py_func
    twin = python_types.FunctionType(source.__code__, source.__globals__, source.__name__ + "_serial",
                                     source.__defaults__, source.__closure__)
    twin.__qualname__ = source.__qualname__ + "_serial"  # its own file in numba's cache
    options = {key: value for key, value in loop.targetoptions.items()
               if key not in ("parallel", "nopython", "boundscheck")}
    # NumPy's error model (a division by zero gives inf, as in NumPy) lets the compiler vectorise
    # the divisions; the parallel loops get it too, where numba hands the rows to the threads.
    return numba.njit(cache=True, error_model="numpy", **options)(twin)


# --- exp in float32, in a form the compiler can vectorise ----------------------------------------
# A call to libm's expf cannot be vectorised, and it made the float32 loops below 2-3x slower
# than they need be. This is Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by a
# degree-7 polynomial, and 2^n written straight into a float's exponent bits.
# Relative error below 2e-7 (tested against float64 exp).

@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (no conversion): LLVM's bitcast."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


_LOG2E, _LN2_HI, _LN2_LO = _F32(1.4426950408889634), _F32(0.693359375), _F32(-2.12194440e-4)
_E0, _E1, _E2, _E3, _E4, _E5 = (_F32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                                  4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))


@numba.njit(fastmath=FAST, inline="always")
def exp32(x):
    x = min(max(x, _F32(-87.3)), _F32(88.3))  # beyond these, float32 under- or overflows
    n = math.floor(x * _LOG2E + _F32(0.5))  # nearest integer to x / ln2
    r = x - n * _LN2_HI - n * _LN2_LO  # ln2 in two parts, so that r keeps its low bits
    p = ((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5
    exp_r = p * r * r + r + _F32(1.0)
    two_to_n = _float32_from_bits(numba.int32((n + _F32(127.0)) * _F32(8388608.0)))  # (n + 127) << 23
    return exp_r * two_to_n


@numba.njit(parallel=True, fastmath=FAST, cache=True)
def exp32_rows(x, out):  # for the test of exp32
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            out[row, col] = exp32(x[row, col])


# --- GELU (exact) --------------------------------------------------------------------------------
# Phi(x) = (1 + erf(x / sqrt 2)) / 2 and phi(x) = exp(-x^2 / 2) / sqrt(2 pi) share their exp:
# with z = |x| / sqrt 2, erf's exp(-z^2) is exp(-x^2 / 2).

@numba.njit(fastmath=FAST, inline="always")
def _phi32(value):
    """(Phi(x), exp(-x^2 / 2)) in float32, erf by A&S 7.1.26."""
    z = abs(value) * _SQRT_HALF32
    t = _ONE / (_ONE + _P * z)
    gauss = exp32(-z * z)
    erf_z = _ONE - ((((_A5 * t + _A4) * t + _A3) * t + _A2) * t + _A1) * t * gauss
    return _HALF + _HALF * math.copysign(erf_z, value), gauss


@numba.njit(parallel=True, fastmath=FAST, cache=True)
def gelu_forward_float32(x, out):
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            cdf, _ = _phi32(value)
            out[row, col] = value * cdf


@numba.njit(parallel=True, cache=True)
def gelu_forward_float64(x, out):
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            out[row, col] = value * 0.5 * (1.0 + math.erf(value * _SQRT_HALF))  # x Phi(x), libm's erf


@numba.njit(parallel=True, fastmath=FAST, cache=True)
def gelu_backward_float32(dout, x, dx):
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            cdf, gauss = _phi32(value)
            dx[row, col] = dout[row, col] * (cdf + value * _INV_SQRT_2PI32 * gauss)  # Phi + x phi


@numba.njit(parallel=True, cache=True)
def gelu_backward_float64(dout, x, dx):
    for row in numba.prange(x.shape[0]):
        for col in range(x.shape[1]):
            value = x[row, col]
            cdf = 0.5 * (1.0 + math.erf(value * _SQRT_HALF))
            pdf = _INV_SQRT_2PI * math.exp(-0.5 * value * value)
            dx[row, col] = dout[row, col] * (cdf + value * pdf)


# --- bias and GELU over a matrix product, in place (inference: the MLP's fc1 and its activation) ---

@numba.njit(parallel=True, fastmath=FAST, cache=True)
def bias_gelu_float32(hidden, bias):
    """hidden = GELU(hidden + bias), in place: the product's rows read and written once."""
    for row in numba.prange(hidden.shape[0]):
        for col in range(hidden.shape[1]):
            value = hidden[row, col] + bias[col]
            cdf, _ = _phi32(value)
            hidden[row, col] = value * cdf


@numba.njit(parallel=True, cache=True)
def bias_gelu_float64(hidden, bias):
    for row in numba.prange(hidden.shape[0]):
        for col in range(hidden.shape[1]):
            value = hidden[row, col] + bias[col]
            hidden[row, col] = value * 0.5 * (1.0 + math.erf(value * _SQRT_HALF))


# --- LayerNorm -----------------------------------------------------------------------------------

@numba.njit(parallel=True, fastmath=FAST, cache=True)
def layernorm_forward(x, gamma, beta, eps, out, xhat, rstd):
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


@numba.njit(parallel=True, fastmath=FAST, cache=True)
def residual_layernorm(skip, branch, gamma, beta, eps, hidden, normed):
    """hidden = skip + branch (the residual stream), normed = LayerNorm(hidden): one pass over the
    rows, no xhat kept (inference)."""
    D = skip.shape[1]
    for row in numba.prange(skip.shape[0]):
        mean = 0.0
        for col in range(D):
            value = skip[row, col] + branch[row, col]
            hidden[row, col] = value
            mean += value
        mean /= D
        var = 0.0
        for col in range(D):
            centered = hidden[row, col] - mean
            var += centered * centered
        var /= D
        r = 1.0 / math.sqrt(var + eps)
        for col in range(D):
            normed[row, col] = (hidden[row, col] - mean) * r * gamma[col] + beta[col]


@numba.njit(parallel=True, cache=True)
def add_rows(a, b, out):
    """out = a + b (the residual connection), rows over the cores."""
    for row in numba.prange(a.shape[0]):
        for col in range(a.shape[1]):
            out[row, col] = a[row, col] + b[row, col]


@numba.njit(parallel=True, fastmath=FAST, cache=True)
def layernorm_backward(dout, xhat, rstd, gamma, dx, dgamma_parts, dbeta_parts):
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


# --- softmax over the last axis, with the attention's scale --------------------------------------

@numba.njit(parallel=True, fastmath=FAST, cache=True)
def softmax_rows_float32(x, scale, out):
    """out = softmax(scale * x) row by row."""
    N = x.shape[1]
    for row in numba.prange(x.shape[0]):
        row_max = x[row, 0]  # a compare, not max(): max() would need the no-NaN flag to vectorise
        for col in range(1, N):
            if x[row, col] > row_max:
                row_max = x[row, col]
        for col in range(N):
            out[row, col] = exp32((x[row, col] - row_max) * scale)
        total = out.dtype.type(0.0)
        for col in range(N):
            total += out[row, col]
        inverse = out.dtype.type(1.0) / total
        for col in range(N):
            out[row, col] *= inverse


@numba.njit(parallel=True, fastmath=FAST, cache=True)
def softmax_backward_rows(dprobs, probs, scale, dx):
    """dx = scale * y (dy - sum(dy y)) row by row (scale 1: the plain softmax's backward)."""
    N = probs.shape[1]
    for row in numba.prange(probs.shape[0]):
        dot = 0.0
        for col in range(N):
            dot += dprobs[row, col] * probs[row, col]
        for col in range(N):
            dx[row, col] = scale * probs[row, col] * (dprobs[row, col] - dot)


# --- optimizer updates over a whole flat parameter buffer ----------------------------------------

@numba.njit(parallel=True, fastmath=FAST, cache=True)
def adamw_update(data, grad, exp_avg, exp_avg_sq, lr_scale, decay, lr, beta1, beta2, eps, bias_correction1,
                 bias_correction2_sqrt):
    """torch.optim.AdamW's arithmetic, element by element (see minivit.ops.adamw_update)."""
    one = data.dtype.type(1.0)
    for i in numba.prange(data.shape[0]):
        lr_i = lr * lr_scale[i]
        value = data[i] * (one - lr_i * decay[i])
        g = grad[i]
        m = beta1 * exp_avg[i] + (one - beta1) * g
        v = beta2 * exp_avg_sq[i] + (one - beta2) * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        data[i] = value - (lr_i / bias_correction1) * (m / (math.sqrt(v) / bias_correction2_sqrt + eps))


@numba.njit(parallel=True, fastmath=FAST, cache=True)
def sgd_update(data, grad, momentum_buffer, lr_scale, decay, lr, momentum, nesterov, first_step):
    """torch.optim.SGD's arithmetic with momentum, element by element (see minivit.ops.sgd_update)."""
    for i in numba.prange(data.shape[0]):
        g = grad[i] + decay[i] * data[i]
        buffer = g if first_step else momentum * momentum_buffer[i] + g
        momentum_buffer[i] = buffer
        update = g + momentum * buffer if nesterov else buffer
        data[i] -= lr * lr_scale[i] * update


# --- matrix products on the loops' threads ---------------------------------------------------------

# Each thread multiplies its own slab of rows with BLAS (SciPy's, which numba's np.dot calls, on one
# thread: ``tuning``), so the products run on the same threads as the loops above instead of on
# OpenBLAS's own, and no thread of one pool sleeps while the other pool's work waits to be woken.
# Not cached on disk: numba's np.dot holds pointers to SciPy's BLAS, valid in this process only
# (compiling the four takes a few seconds, once per process).

products_here = False  # True once minivit.kernels.tuning has set the process up for it (one pool of threads)


@numba.njit(parallel=True, cache=False)
def matmul_slabs(a, b, out):
    """out = a @ b, for 2-D contiguous a (M, K) and b (K, N): one slab of rows of a per thread."""
    rows, parts = a.shape[0], numba.get_num_threads()
    for part in numba.prange(parts):
        start, stop = rows * part // parts, rows * (part + 1) // parts
        if start < stop:
            np.dot(a[start:stop], b, out[start:stop])


@numba.njit(parallel=True, cache=False)
def addmm_slabs(bias, a, b, out):
    """out = a @ b + bias, the bias added to each slab while it is still in cache."""
    rows, parts = a.shape[0], numba.get_num_threads()
    for part in numba.prange(parts):
        start, stop = rows * part // parts, rows * (part + 1) // parts
        if start < stop:
            slab = out[start:stop]
            np.dot(a[start:stop], b, slab)
            for row in range(slab.shape[0]):
                slab[row] += bias


@numba.njit(parallel=True, cache=False)
def weight_gradient(x, dout):
    """x^T @ dout for contiguous x (M, K) and dout (M, N), the sum over all M rows (the linear
    layer's weight gradient): each thread multiplies its slab of rows, then the partial (K, N)
    matrices are added."""
    rows, parts = x.shape[0], numba.get_num_threads()
    partial = np.empty((parts, x.shape[1], dout.shape[1]), dtype=x.dtype)
    for part in numba.prange(parts):
        start, stop = rows * part // parts, rows * (part + 1) // parts
        if start < stop:
            np.dot(x[start:stop].T, dout[start:stop], partial[part])
        else:
            partial[part] = 0
    total = partial[0].copy()
    for part in range(1, parts):
        total += partial[part]
    return total


@numba.njit(parallel=True, cache=False)
def matmul_stack(a, b, out):
    """out[i, j] = a[i, j] @ b[i, j] for stacks (B, H, M, K) @ (B, H, K, N), any strides (the heads
    of attention, viewed in place): the B*H small products shared among the threads."""
    heads = a.shape[1]
    for index in numba.prange(a.shape[0] * heads):
        i, j = index // heads, index % heads
        out[i, j] = np.dot(np.ascontiguousarray(a[i, j]), np.ascontiguousarray(b[i, j]))
