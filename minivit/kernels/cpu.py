"""Fast CPU implementations of reference operations (NumPy arrays).

Every function here has the name, the signature and the cache of the reference it
replaces in ``minivit/ops/``, declares which one (``@replaces``, minivit.kernels.registry),
and is tested against it (tests/test_kernels_cpu.py). ``minivit.dispatch`` chooses
between the two; nothing else calls these directly. Where a case is not covered (a
dtype, an axis, an approximation), the function hands it to the reference.

What makes them faster than the reference, and what each bought (measured on 2 cores,
cifar-tiny, batch 128; docs/kernels.md's table, from benchmarks/kernels_cpu.py):
  * one compiled loop per chain (numba, ``cpu_loops.py``) instead of one NumPy pass per
    operator, for GELU, LayerNorm and the softmax, forward and backward;
  * the linear layer's bias added inside the matrix product (``addmm``: BLAS's gemm with
    beta = 1, as PyTorch's addmm);
  * attention's many small products spread over the cores (``batched_matmul``), the heads
    written straight into the merged layout (no merge copies), the scale folded into the
    softmax;
  * where the process runs one pool of threads (``loops.products_here``, set by ``tuning``: Intel),
    every product on the compiled loops' threads, a slab of rows each (``matmul``, ``addmm``,
    ``linear_backward``, ``batched_matmul``), so that no work waits for a sleeping thread of
    another pool to wake (benchmarks/threads_cpu.py);
  * elementwise chains without a compiled loop run in cache-sized blocks on all cores
    (``map_rows``);
  * the optimizer's update as one pass over one flat buffer of all parameters;
  * at inference (``no_grad``, eval mode) two fused passes: the MLP's bias and GELU over
    fc1's product in place (``linear_gelu_inference``), and each residual add with the
    LayerNorm that follows it (``residual_layernorm_inference``), keeping no xhat;
  * small arrays (a batch of one image) on the calling thread alone (``cpu_loops.sized``);
  * RandAugment's operations each on the images that drew it, not every operation on the whole batch.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minivit import ops
from minivit.kernels import cpu_loops as loops
from minivit.kernels.registry import replaces
from minivit.ops.randaugment import RANDAUGMENT_OPS, round_draws

# --- running work on all cores -------------------------------------------------------------------


def _default_num_threads() -> int:
    for variable in ("MINIVIT_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


num_threads: int = _default_num_threads()  # threads for map_rows and batched_matmul
_thread_pool: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _thread_pool
    if _thread_pool is None:
        _thread_pool = ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="minivit")
    return _thread_pool


def set_num_threads(count: int) -> None:
    """Use ``count`` threads for map_rows and batched_matmul from now on (``tuning.limit_threads`` sets
    BLAS's and numba's too: a rank of a distributed run takes its share of the cores)."""
    global num_threads, _thread_pool
    if count < 1:
        raise ValueError(f"The number of threads must be at least 1; got {count}.")
    if _thread_pool is not None and count != num_threads:
        _thread_pool.shutdown(wait=True)
        _thread_pool = None
    num_threads = count


def map_rows(fn, *arrays, block_elements: int = 1 << 17):
    """Run ``fn``, which treats each row (last axis) on its own, on blocks of rows, on all cores.

    Why: NumPy runs every operator in a chain like ``0.5 * x * (1 + tanh(u))`` as a
    separate pass over the whole array, usually far larger than the caches, on one core.
    Cut into blocks of about ``block_elements`` elements, the whole chain runs in cache,
    and blocks run on ``num_threads`` cores (NumPy releases the GIL inside its loops).
    Each element is computed by the same operations either way: the result is the same
    to the last bit. The arrays share their leading shape; returns what ``fn`` returns.
    """
    leading_shape = arrays[0].shape[:-1]
    num_rows = math.prod(leading_shape)
    rows_per_block = max(1, block_elements // max(1, arrays[0].shape[-1]))
    if num_rows <= rows_per_block:
        return fn(*arrays)
    row_views = [a.reshape(num_rows, a.shape[-1]) for a in arrays]
    blocks = [slice(start, min(start + rows_per_block, num_rows)) for start in range(0, num_rows, rows_per_block)]
    first = fn(*(view[blocks[0]] for view in row_views))
    single_output = not isinstance(first, tuple)
    first = (first,) if single_output else first
    outputs = [np.empty((num_rows, block_out.shape[-1]), dtype=block_out.dtype) for block_out in first]
    for output, block_out in zip(outputs, first):
        output[blocks[0]] = block_out

    def run(block):
        results = fn(*(view[block] for view in row_views))
        for output, block_out in zip(outputs, (results,) if single_output else results):
            output[block] = block_out

    for _ in _pool().map(run, blocks[1:]):  # iterating re-raises a block's exception
        pass
    outputs = tuple(output.reshape(*leading_shape, output.shape[-1]) for output in outputs)
    return outputs[0] if single_output else outputs


def batched_matmul(a, b, out=None):
    """``a @ b`` for stacks of matrices (..., M, K) @ (..., K, N), ``out`` as in ``np.matmul``.

    Why: NumPy hands the products of a stack to BLAS one after another, and BLAS runs a
    product as small as attention's (65 x 64 @ 64 x 65) on one core. Here the stack is shared
    among the threads: on the compiled loops' threads (``cpu_loops.matmul_stack``) where the
    products run there (``loops.products_here``), else cut along its first axis
    into ``num_threads`` parts that run side by side (NumPy releases the GIL inside matmul).
    Each product is a BLAS call either way.
    """
    if (a.ndim == 4 and b.ndim == 4 and a.shape[:2] == b.shape[:2] and a.dtype == b.dtype
            and a.dtype in (np.float32, np.float64) and loops.products_here
            and a.shape[0] * a.shape[1] * a.shape[2] * b.shape[3] >= loops.PARALLEL_FROM):
        if out is None:
            out = np.empty((*a.shape[:-1], b.shape[-1]), dtype=a.dtype)
        loops.matmul_stack(a, b, out)
        return out
    parts = min(num_threads, a.shape[0]) if a.ndim > 2 else 1
    if parts < 2 or a.shape[:-2] != b.shape[:-2]:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((*a.shape[:-1], b.shape[-1]), dtype=np.result_type(a, b))
    bounds = [a.shape[0] * part // parts for part in range(parts + 1)]
    slices = [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]
    pending = [_pool().submit(np.matmul, a[part], b[part], out=out[part]) for part in slices[1:]]
    np.matmul(a[slices[0]], b[slices[0]], out=out[slices[0]])
    for result in pending:
        result.result()  # re-raises a part's exception
    return out


def _blas_ready(*arrays) -> bool:
    """True when the compiled loops' products can take these arrays: one float dtype, 2-D, contiguous."""
    dtype = arrays[0].dtype
    return (dtype in (np.float32, np.float64) and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays)
            and all(a.size for a in arrays))


def _on_loop_threads(a, b) -> bool:
    """True when the product a @ b runs on the compiled loops' threads (``loops.products_here``):
    arrays BLAS takes as they are, and a product large enough to share (a small one stays on this thread)."""
    return (loops.products_here and _blas_ready(a, b)
            and a.shape[0] * b.shape[1] >= loops.PARALLEL_FROM)


def matmul(a, b):
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N): on the compiled loops' threads, a slab of rows
    each, where the products run there; else NumPy's."""
    if not _on_loop_threads(a, b):
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    loops.matmul_slabs(a, b, out)
    return out


def addmm(bias, a, b):
    """``a @ b + bias`` for 2-D ``a`` (M, K) and ``b`` (K, N), ``bias`` (N,), in one pass.

    Why: added afterwards, the bias is one more pass over the (M, N) result. Where the products
    run on the compiled loops' threads, each thread adds the bias to its slab of rows while the
    slab is still in cache. Otherwise BLAS's gemm computes ``C = alpha A B + beta C``: with C
    filled with the bias and beta = 1, the sum comes out of one call while each block of C is
    still in cache (PyTorch's addmm). NumPy does not expose beta, so this calls SciPy's BLAS:
    C-ordered arrays are Fortran-ordered transposes, so out^T = b^T a^T + bias^T is computed on
    those, with no copy. Other dtypes or layouts: plain ``a @ b + bias``.
    """
    if not (_blas_ready(a, b) and bias.dtype == a.dtype and bias.flags.c_contiguous):
        return a @ b + bias
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    if _on_loop_threads(a, b):
        loops.addmm_slabs(bias, a, b, out)
        return out
    from scipy.linalg import blas

    out[...] = bias  # broadcast along the rows
    gemm = blas.sgemm if a.dtype == np.float32 else blas.dgemm
    gemm(1.0, b.T, a.T, beta=1.0, c=out.T, overwrite_c=True)  # writes into out
    return out


def _rows(array):
    """The array as a contiguous (rows, last axis) matrix: the compiled loops' view of everything."""
    return np.ascontiguousarray(array).reshape(-1, array.shape[-1])


# --- linear ----------------------------------------------------------------------------------------


@replaces("linear_forward")
def linear_forward(x, weight, bias=None):
    """Replaces ops.linear_forward: one 2-D product over all rows, the bias added inside it (addmm).
    A weight that is a view (the patch projection's W^T of Conv2d's layout) is copied first: a
    small matrix beside the rows, and the products' fast paths take contiguous arrays only."""
    x_rows = x.reshape(-1, x.shape[-1])  # (M, D_in)
    weight = np.ascontiguousarray(weight)
    out = matmul(x_rows, weight) if bias is None else addmm(bias, x_rows, weight)
    return out.reshape(*x.shape[:-1], weight.shape[1]), (x, weight, bias is not None)


@replaces("linear_backward")
def linear_backward(dout, cache, input_grad: bool = True):
    """Replaces ops.linear_backward where the products run on the compiled loops' threads: dx as one
    slab of rows per thread, dW as a sum of one partial x^T dout per thread (each thread's rows);
    otherwise the reference (NumPy's products on OpenBLAS's threads). A weight that is a view is
    copied first, as in the forward."""
    x, weight, has_bias = cache
    D_in = weight.shape[0]
    x_rows, dout_rows = x.reshape(-1, D_in), dout.reshape(-1, weight.shape[1])
    weight = np.ascontiguousarray(weight)
    if not (_on_loop_threads(x_rows, weight) and _blas_ready(dout_rows)):
        return ops.linear_backward(dout, cache, input_grad)
    dx = matmul(dout_rows, np.ascontiguousarray(weight.T)).reshape(*dout.shape[:-1], D_in) if input_grad else None
    dweight = loops.weight_gradient(x_rows, dout_rows)  # (D_in, D_out)
    dbias = dout_rows.sum(axis=0) if has_bias else None
    return dx, dweight, dbias


# --- GELU ------------------------------------------------------------------------------------------


def _gelu_tanh_rows(x):
    return ops.gelu_forward(x, "tanh")[0]


@replaces("gelu_forward")
def gelu_forward(x, approximate: str = "none"):
    """Replaces ops.gelu_forward: exact GELU as one compiled loop (float32 erf by the A&S formula
    PyTorch's CPU kernel uses, error < 1.5e-7); the tanh form as the reference in blocks on all cores."""
    if approximate != "none" or x.dtype not in (np.float32, np.float64):
        if approximate == "tanh":
            return map_rows(_gelu_tanh_rows, x), (x, approximate)
        return ops.gelu_forward(x, approximate)
    out = np.empty(x.shape, dtype=x.dtype)
    loop = loops.gelu_forward_float32 if x.dtype == np.float32 else loops.gelu_forward_float64
    loops.sized(loop, x.size)(_rows(x), out.reshape(-1, x.shape[-1]))
    return out, (x, approximate)


def _gelu_tanh_backward_rows(dout, x):
    return ops.gelu_backward(dout, (x, "tanh"))


@replaces("gelu_backward")
def gelu_backward(dout, cache):
    """Replaces ops.gelu_backward: Phi(x) + x phi(x) recomputed in one compiled loop (one exp for both)."""
    x, approximate = cache
    if approximate != "none" or x.dtype not in (np.float32, np.float64):
        if approximate == "tanh":
            return map_rows(_gelu_tanh_backward_rows, dout, x)
        return ops.gelu_backward(dout, cache)
    dx = np.empty(x.shape, dtype=x.dtype)
    loop = loops.gelu_backward_float32 if x.dtype == np.float32 else loops.gelu_backward_float64
    loops.sized(loop, x.size)(_rows(dout.astype(x.dtype, copy=False)), _rows(x), dx.reshape(-1, x.shape[-1]))
    return dx


@replaces("linear_gelu_inference")
def linear_gelu_inference(x, weight, bias=None, approximate: str = "none"):
    """Replaces ops.linear_gelu_inference: BLAS's product, then the bias and the exact GELU in one
    compiled pass over it, in place (not three passes, and no second array); otherwise the
    kernels above one after the other."""
    if (approximate != "none" or x.dtype not in (np.float32, np.float64) or weight.dtype != x.dtype
            or (bias is not None and bias.dtype != x.dtype)):
        return gelu_forward(linear_forward(x, weight, bias)[0], approximate)[0]
    hidden = matmul(x.reshape(-1, x.shape[-1]), weight)  # (M, D_out), a new C-ordered array
    loop = loops.bias_gelu_float32 if x.dtype == np.float32 else loops.bias_gelu_float64
    loops.sized(loop, hidden.size)(hidden, np.zeros(weight.shape[1], x.dtype) if bias is None else
                                   np.ascontiguousarray(bias))
    return hidden.reshape(*x.shape[:-1], weight.shape[1])


# --- LayerNorm -------------------------------------------------------------------------------------


@replaces("layernorm_forward")
def layernorm_forward(x, gamma, beta, eps: float = 1e-12):
    """Replaces ops.layernorm_forward: mean, variance and normalisation of a row in one loop."""
    rows = _rows(x)
    out, xhat = np.empty_like(rows), np.empty_like(rows)
    rstd = np.empty((rows.shape[0], 1), dtype=x.dtype)
    loops.sized(loops.layernorm_forward, rows.size)(rows, np.ascontiguousarray(gamma), np.ascontiguousarray(beta),
                                                    eps, out, xhat, rstd)
    return out.reshape(x.shape), (xhat.reshape(x.shape), rstd.reshape(*x.shape[:-1], 1), gamma)


@replaces("layernorm_backward")
def layernorm_backward(dout, cache):
    """Replaces ops.layernorm_backward: dx, dgamma and dbeta in one pass over the rows."""
    xhat, rstd, gamma = cache
    D = dout.shape[-1]
    dx = np.empty(dout.shape, dtype=dout.dtype)
    dgamma_parts = np.zeros((32, D), dtype=np.float64)  # 32 blocks of rows, summed in float64
    dbeta_parts = np.zeros((32, D), dtype=np.float64)
    loops.sized(loops.layernorm_backward, dout.size)(_rows(dout), _rows(xhat), _rows(rstd), np.ascontiguousarray(gamma),
                                                     dx.reshape(-1, D), dgamma_parts, dbeta_parts)
    return dx, dgamma_parts.sum(axis=0).astype(dout.dtype), dbeta_parts.sum(axis=0).astype(dout.dtype)


@replaces("residual_layernorm_inference")
def residual_layernorm_inference(skip, branch, gamma, beta, eps: float = 1e-12):
    """Replaces ops.residual_layernorm_inference: the residual add and the LayerNorm of its result in
    one pass over the rows, no xhat written; other dtypes or shapes: residual then layernorm above."""
    if (skip.shape != branch.shape or skip.dtype != branch.dtype or skip.dtype not in (np.float32, np.float64)
            or gamma.dtype != skip.dtype or beta.dtype != skip.dtype):
        hidden = residual_forward(skip, branch)[0]
        return hidden, layernorm_forward(hidden, gamma, beta, eps)[0]
    hidden, normed = np.empty(skip.shape, dtype=skip.dtype), np.empty(skip.shape, dtype=skip.dtype)
    D = skip.shape[-1]
    loops.sized(loops.residual_layernorm, skip.size)(_rows(skip), _rows(branch), np.ascontiguousarray(gamma),
                                                     np.ascontiguousarray(beta), eps, hidden.reshape(-1, D),
                                                     normed.reshape(-1, D))
    return hidden, normed


# --- residual --------------------------------------------------------------------------------------


@replaces("residual_forward")
def residual_forward(skip, branch):
    """Replaces ops.residual_forward: the sum with its rows over the cores (NumPy adds on one core);
    broadcasting or mixed dtypes: the reference."""
    if skip.shape != branch.shape or skip.dtype != branch.dtype or skip.dtype not in (np.float32, np.float64) \
            or skip.size < loops.PARALLEL_FROM:
        return ops.residual_forward(skip, branch)
    out = np.empty(skip.shape, dtype=skip.dtype)
    D = skip.shape[-1]
    loops.add_rows(_rows(skip), _rows(branch), out.reshape(-1, D))
    return out, None


# --- softmax ---------------------------------------------------------------------------------------


def _softmax_rows(x):
    return ops.softmax_forward(x, -1)[0]


def _softmax_last_axis(x, scale: float = 1.0):
    """softmax(scale * x) over the last axis: the compiled loop for float32, blocks of rows otherwise."""
    if x.dtype == np.float32:
        probs = np.empty(x.shape, dtype=x.dtype)
        loops.sized(loops.softmax_rows_float32, x.size)(_rows(x), np.float32(scale), probs.reshape(-1, x.shape[-1]))
        return probs
    return map_rows(_softmax_rows, x * scale if scale != 1.0 else x)


def _softmax_backward_last_axis(dprobs, probs, scale: float = 1.0):
    dx = np.empty(probs.shape, dtype=probs.dtype)
    loops.sized(loops.softmax_backward_rows, probs.size)(_rows(dprobs), _rows(probs), scale,
                                                         dx.reshape(-1, probs.shape[-1]))
    return dx


@replaces("softmax_forward")
def softmax_forward(x, axis: int = -1):
    """Replaces ops.softmax_forward: the last axis as one compiled loop (float32) or blocks of rows."""
    if axis not in (-1, x.ndim - 1):
        return ops.softmax_forward(x, axis)
    return (probs := _softmax_last_axis(x)), (probs, axis)


@replaces("softmax_backward")
def softmax_backward(dprobs, cache):
    """Replaces ops.softmax_backward: y (dy - sum(dy y)) as one compiled loop over the rows."""
    probs, axis = cache
    if axis not in (-1, probs.ndim - 1):
        return ops.softmax_backward(dprobs, cache)
    return _softmax_backward_last_axis(dprobs, probs)


# --- attention -------------------------------------------------------------------------------------


@replaces("attention_heads_forward")
def attention_heads_forward(qkv, num_heads: int, dropout_p: float = 0.0, rng=None, training: bool = False):
    """Replaces ops.attention_heads_forward, with the same cache.

    q, k and v are read as views of qkv (no copies); the B*H small products run over the
    cores; the scale is folded into the softmax's loop; and each head writes its output
    straight into its slice of the merged (B, T, D) result, so merging the heads costs nothing.
    """
    if dropout_p and training:  # dropout on the attention probabilities: the reference
        return ops.attention_heads_forward(qkv, num_heads, dropout_p, rng, training)
    B, T, three_D = qkv.shape
    D = three_D // 3
    q = ops.split_heads(qkv[..., :D], num_heads)  # (B, H, T, d), views
    k = ops.split_heads(qkv[..., D:2 * D], num_heads)
    v = ops.split_heads(qkv[..., 2 * D:], num_heads)
    scale = 1.0 / math.sqrt(D // num_heads)
    scores = batched_matmul(q, k.swapaxes(-1, -2))  # (B, H, T, T), unscaled
    probs = _softmax_last_axis(scores, scale)
    context = np.empty((B, T, D), dtype=qkv.dtype)
    batched_matmul(probs, v, out=ops.split_heads(context, num_heads))  # the heads land merged
    return context, (ops.AttentionCache(q, k, v, scale, probs, None), num_heads)


@replaces("attention_heads_backward")
def attention_heads_backward(dcontext, cache):
    """Replaces ops.attention_heads_backward: dq, dk and dv written straight into their slices of
    one (B, T, 3D) array (the layout the forward read them from), the scale folded into the
    softmax's backward loop, the small products over the cores."""
    attention, num_heads = cache
    if attention.dropout_mask is not None:
        return ops.attention_heads_backward(dcontext, cache)
    q, k, v, scale, probs, _ = attention
    B, T, D = dcontext.shape
    dheads = ops.split_heads(dcontext, num_heads)  # (B, H, T, d)
    dqkv = np.empty((B, T, 3 * D), dtype=dcontext.dtype)
    dq, dk, dv = (ops.split_heads(dqkv[..., i * D:(i + 1) * D], num_heads) for i in range(3))
    batched_matmul(probs.swapaxes(-1, -2), dheads, out=dv)
    dprobs = batched_matmul(dheads, v.swapaxes(-1, -2))  # (B, H, T, T)
    dscores = _softmax_backward_last_axis(dprobs, probs, scale)  # already times the scale
    batched_matmul(dscores, k, out=dq)
    batched_matmul(dscores.swapaxes(-1, -2), q, out=dk)
    return dqkv


# --- optimizers ------------------------------------------------------------------------------------


@replaces("adamw_update")
def adamw_update(data, grad, exp_avg, exp_avg_sq, lr, lr_scale, weight_decay, beta1, beta2, eps, step,
                 skip=None):
    """Replaces ops.adamw_update: the whole update as one parallel pass (all arrays contiguous, 1-D)."""
    arrays = (data, grad, exp_avg, exp_avg_sq)
    if not all(a.ndim == 1 and a.flags.c_contiguous and a.dtype == data.dtype for a in arrays) \
            or data.dtype not in (np.float32, np.float64) or skip is not None:
        return ops.adamw_update(data, grad, exp_avg, exp_avg_sq, lr, lr_scale, weight_decay, beta1, beta2,
                                eps, step, skip)
    size, real = data.shape[0], data.dtype.type  # scalars in the data's precision: float32 math stays float32
    lr_scale = np.broadcast_to(np.asarray(lr_scale, dtype=data.dtype), (size,))
    weight_decay = np.broadcast_to(np.asarray(weight_decay, dtype=data.dtype), (size,))
    loops.sized(loops.adamw_update, size)(data, grad, exp_avg, exp_avg_sq, lr_scale, weight_decay, real(lr),
                                          real(beta1), real(beta2), real(eps), real(1.0 - beta1**step),
                                          real(math.sqrt(1.0 - beta2**step)))


@replaces("sgd_update")
def sgd_update(data, grad, momentum_buffer, lr, lr_scale, weight_decay, momentum, nesterov, step, skip=None):
    """Replaces ops.sgd_update: the whole update as one parallel pass (all arrays contiguous, 1-D)."""
    arrays = (data, grad, momentum_buffer)
    if not all(a.ndim == 1 and a.flags.c_contiguous and a.dtype == data.dtype for a in arrays) \
            or data.dtype not in (np.float32, np.float64) or skip is not None:
        return ops.sgd_update(data, grad, momentum_buffer, lr, lr_scale, weight_decay, momentum, nesterov, step,
                              skip)
    size, real = data.shape[0], data.dtype.type  # scalars in the data's precision: float32 math stays float32
    lr_scale = np.broadcast_to(np.asarray(lr_scale, dtype=data.dtype), (size,))
    weight_decay = np.broadcast_to(np.asarray(weight_decay, dtype=data.dtype), (size,))
    loops.sized(loops.sgd_update, size)(data, grad, momentum_buffer, lr_scale, weight_decay, real(lr),
                                        real(momentum), nesterov, step == 1)


@replaces("clip_by_norm")
def clip_by_norm(grad, max_norm: float):
    """Replaces ops.clip_by_norm: the squared norm as one BLAS dot product (all cores), then one scaling."""
    if grad.ndim != 1 or not grad.flags.c_contiguous or grad.dtype not in (np.float32, np.float64):
        return ops.clip_by_norm(grad, max_norm)
    norm = np.sqrt(np.dot(grad, grad))
    grad *= min(1.0, max_norm / (float(norm) + 1e-6))
    return norm


@replaces("rand_augment")
def rand_augment(images, num_ops: int, magnitude: float, rng):
    """Replaces ops.rand_augment: the same draws per round (each image's operation and sign), then each
    operation on the images that drew it alone. The reference runs every operation on the whole batch
    and keeps each image's own (branch-free, so that a GPU never waits for the host); on the CPU that
    is thirteen times the work: 35 ms against 3 ms for a batch of 128 (benchmarks/kernels_cpu.py), and with
    RandAugment 2/5 a cifar-cpu step (at its earlier size, 4 layers, MLP 512) trains 1,380 images/s on the
    reference and 2,150 on this (docs/kernels.md)."""
    level = magnitude / 10.0
    operations = list(RANDAUGMENT_OPS.values())
    for _ in range(num_ops):
        choice, sign = round_draws(rng, images.shape[0], images.dtype)
        result = np.empty_like(images)  # every image drew one operation, so every image is written below
        for index, operation in enumerate(operations):
            chosen = np.flatnonzero(choice == index)
            if chosen.size:
                result[chosen] = operation(images[chosen], sign[chosen], level)
        images = result
    return images
