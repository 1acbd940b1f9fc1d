"""Fast GPU implementations of reference operations (CuPy arrays).

Every function here has the name, the signature and the cache of the reference it
replaces (``minivit/ops/``, ), says which one,
and counts the kernels it launches. On a GPU, most of the reference's time at small
batch sizes goes into launching kernels (every NumPy-style operator is one, about
5-10 microseconds of CPU time each), so these do the same work in as few launches
as possible:

    operation                          reference launches   here
    GELU forward / backward            ~5 / ~10              1 / 1    (cuda/gelu.cu)
    LayerNorm forward / backward       ~8 / ~12              1 / 2    (cuda/layernorm.cu)
    attention over all heads, fwd/bwd  ~8 / ~12              5 / 7    (cuBLAS + cuda/softmax.cu)
    cross-entropy forward / backward   ~12 / ~3              1 / 1    (cuda/cross_entropy.cu)
    AdamW / SGD over the flat buffer   ~11 / ~6              1 / 1    (cuda/optimizer.cu)
    gradient clipping (flat buffer)    ~7                    3        (cuda/optimizer.cu)
    float16 gradients unscaled, scale  ~6 / ~8               1 / 1    (cuda/optimizer.cu)
    crop + flip + normalise            ~12                   1        (cuda/augment.cu)
    RandAugment, one round             ~300                  ~6       (cuda/randaugment.cu)
    dropout forward                    5                     2        (cuda/dropout.cu)
    a per-sample uniform draw          ~25                   1        (cuda/sample_random.cu)

The CUDA sources live in ``cuda/*.cu`` (each file names the reference it replaces) and
are compiled on first use by NVRTC through CuPy's RawModule; the tests compile all of
them without a GPU (``minivit.kernels.nvrtc``). Where a case is not covered (a dtype, an
axis, dropout), the function hands it to the reference. The linear layers need no kernel of their
own: the reference's products are cuBLAS calls already, plus one launch for the bias.

On the simulated GPU (backend "cupy-sim") these same functions run: arrays are allocated
and arguments prepared as on a GPU, and each CUDA kernel call runs its *stand-in*, the
reference computing the same outputs, counted as the one launch the kernel makes.
"""

from __future__ import annotations

import math

import numpy as np  # host-side scalar types for kernel arguments (CUDA takes them by value)

from minivit import backend, ops
from minivit.kernels import nvrtc

BLOCK = 256  # threads per block
ROWS_PER_BLOCK = BLOCK // 32  # row kernels: one warp (32 threads) per row
_SUFFIX = {np.dtype(np.float16): "f16", np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
WITH_HALF = (np.dtype(np.float16), *FLOATS)  # kernels that store float16 and compute in float32
_modules: dict = {}  # (file, device) -> cupy.RawModule


def _grid(n: int) -> int:
    """Blocks for a grid-stride loop over n elements: enough to fill the GPU, no more."""
    return max(1, min((n + BLOCK - 1) // BLOCK, 8192))


def _row_grid(rows: int) -> int:
    return max(1, (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK)


class CudaKernel:
    """One ``extern "C"`` kernel of a file in cuda/, launched as ``kernel(grid, args, ...)``.

    ``stand_in(*args)`` computes the kernel's outputs with the reference; the simulated GPU
    runs it in the kernel's place, counted as one launch.
    """

    def __init__(self, file_name: str, name: str, stand_in):
        self.file_name, self.name, self.stand_in = file_name, name, stand_in

    def __call__(self, grid: int, args: tuple, block: int | tuple = BLOCK, shared_mem: int = 0) -> None:
        if backend.name == "cupy-sim":
            from minivit import sim

            with sim.kernel_launch(self.name):
                self.stand_in(*args)
            return
        self._function()((grid,), block if isinstance(block, tuple) else (block,), args, shared_mem=shared_mem)

    def _function(self):
        import cupy

        key = (self.file_name, cupy.cuda.runtime.getDevice())
        if key not in _modules:
            _modules[key] = cupy.RawModule(code=nvrtc.source(self.file_name), options=nvrtc.OPTIONS)
        return _modules[key].get_function(self.name)


def _typed(file_name: str, name: str, stand_in, dtypes=FLOATS) -> dict:
    """The builds of a kernel for each storage dtype: {dtype: CudaKernel}."""
    return {dtype: CudaKernel(file_name, f"{name}_{_SUFFIX[dtype]}", stand_in) for dtype in dtypes}


def _supported(*arrays, dtypes=FLOATS) -> bool:
    """All of one dtype, which the kernel has a build for."""
    return all(a.dtype in dtypes for a in arrays) and len({a.dtype for a in arrays}) == 1


def _compute(array):
    """What a kernel computes in: float32 for float16 storage (the stand-ins do the same)."""
    return array.astype(np.float32) if array.dtype == np.float16 else array


def _contiguous(array):
    return backend.xp.ascontiguousarray(array)  # no copy (no launch) when it already is


# --- stand-ins: each kernel's outputs computed by the reference (the simulated GPU runs these) ------------


def _gelu_forward_stand_in(x, out, n, tanh_form):
    out[...] = ops.gelu_forward(_compute(x), "tanh" if tanh_form else "none")[0]


def _gelu_backward_stand_in(dout, x, dx, n, tanh_form):
    dx[...] = ops.gelu_backward(_compute(dout), (_compute(x), "tanh" if tanh_form else "none"))


def _layernorm_forward_stand_in(x, gamma, beta, out, xhat, rstd, rows, D, eps):
    x, gamma, beta = _compute(x), _compute(gamma), _compute(beta)
    result, (normalized, r, _) = ops.layernorm_forward(x.reshape(int(rows), int(D)), gamma, beta, float(eps))
    out[...] = result.reshape(out.shape)
    xhat[...] = normalized.reshape(xhat.shape)
    rstd[...] = r.reshape(rstd.shape)


def _layernorm_backward_input_stand_in(dout, xhat, rstd, gamma, dx, rows, D):
    dout, xhat, rstd, gamma = _compute(dout), _compute(xhat), _compute(rstd), _compute(gamma)
    shape = (int(rows), int(D))
    gradient, _, _ = ops.layernorm_backward(dout.reshape(shape), (xhat.reshape(shape), rstd.reshape(-1, 1), gamma))
    dx[...] = gradient.reshape(dx.shape)


def _layernorm_backward_params_stand_in(dout, xhat, dgamma, dbeta, rows, D):
    dout, xhat = _compute(dout), _compute(xhat)
    shape = (int(rows), int(D))
    dgamma[...] = (dout.reshape(shape) * xhat.reshape(shape)).sum(axis=0)
    dbeta[...] = dout.reshape(shape).sum(axis=0)


def _softmax_forward_stand_in(x, out, rows, N, scale):
    x = _compute(x)
    out[...] = ops.softmax_forward(x.reshape(int(rows), int(N)) * float(scale))[0].reshape(out.shape)


def _softmax_backward_stand_in(dprobs, probs, dx, rows, N, scale):
    dprobs, probs = _compute(dprobs), _compute(probs)
    shape = (int(rows), int(N))
    dx[...] = (ops.softmax_backward(dprobs.reshape(shape), (probs.reshape(shape), -1)) * float(scale)).reshape(dx.shape)


def _cross_entropy_forward_stand_in(logits, labels, soft_targets, use_labels, log_probs, q, loss, B, K, smoothing):
    targets = labels if use_labels else soft_targets
    value, (reference_log_probs, reference_q) = ops.cross_entropy_forward(logits, targets, float(smoothing))
    log_probs[...] = reference_log_probs
    q[...] = reference_q
    loss[...] = value


def _cross_entropy_backward_stand_in(log_probs, q, dlogits, n, scale):
    dlogits[...] = ops.cross_entropy_backward(float(scale) * log_probs.shape[0], (log_probs, q))


def _per_element(array, value, per_element):
    return array if per_element else float(value)


def _adamw_stand_in(data, grad, exp_avg, exp_avg_sq, lr_scale, lr_scale_value, lr_scale_per_element, decay,
                    decay_value, decay_per_element, lr, beta1, beta2, eps, bias_correction1, bias_correction2_sqrt,
                    skip, has_skip, n):
    # ops.adamw_update's arithmetic, with the bias corrections as the kernel receives them
    xp = backend.xp
    if has_skip and float(skip[0]) != 0.0:  # (a host read: only the simulation's stand-in does it)
        return
    lr_i = float(lr) * _per_element(lr_scale, lr_scale_value, lr_scale_per_element)
    data *= 1.0 - lr_i * _per_element(decay, decay_value, decay_per_element)
    exp_avg *= float(beta1)
    exp_avg += (1.0 - float(beta1)) * grad
    exp_avg_sq *= float(beta2)
    exp_avg_sq += (1.0 - float(beta2)) * grad * grad
    denom = xp.sqrt(exp_avg_sq) / float(bias_correction2_sqrt) + float(eps)
    data -= (lr_i / float(bias_correction1)) * (exp_avg / denom)


def _sgd_stand_in(data, grad, momentum_buffer, lr_scale, lr_scale_value, lr_scale_per_element, decay, decay_value,
                  decay_per_element, lr, momentum, nesterov, first_step, skip, has_skip, n):
    if has_skip and float(skip[0]) != 0.0:
        return
    ops.sgd_update(data, grad, momentum_buffer, float(lr),
                     _per_element(lr_scale, lr_scale_value, lr_scale_per_element),
                     _per_element(decay, decay_value, decay_per_element), float(momentum), bool(nesterov),
                     1 if first_step else 2)


def _unscale_stand_in(grad, scale, out, found_inf, n):
    ops.unscale_gradients(grad, scale, out, found_inf)


def _update_loss_scale_stand_in(scale, growth_tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    ops.update_loss_scale(scale, growth_tracker, found_inf, float(growth_factor), float(backoff_factor),
                          int(growth_interval))


def _squares_by_block_stand_in(g, block_sums, n):
    block_sums[...] = 0.0
    block_sums[0] = (g.astype(block_sums.dtype) ** 2).sum()


def _norm_and_scale_stand_in(block_sums, blocks, max_norm, norm, scale):
    total = backend.xp.sqrt(block_sums.sum())
    norm[...] = total
    scale[...] = backend.xp.minimum(1.0, float(max_norm) / (total + 1e-6))


def _scale_by_stand_in(g, scale, n):
    g *= scale[0]


def _dropout_stand_in(x, uniform, out, mask, p, n):
    keep = uniform >= float(p)  # what rng.random(x.shape) >= p gives in ops.dropout_forward
    mask[...] = keep.astype(uniform.dtype) * (1.0 / (1.0 - float(p)))
    out[...] = _compute(x) * _compute(mask)


def _randaugment_stand_in(images, choice, sign, level, posterize_step, solarize_threshold, out, C, H, W):
    from minivit.ops.randaugment import RANDAUGMENT_OPS

    xp = backend.xp
    result = images
    for index, op in enumerate(RANDAUGMENT_OPS.values()):  # one round of ops.rand_augment, given the draws
        result = xp.where((choice == index)[:, None, None, None], op(images, sign, float(level)), result)
    out[...] = result


def _sample_uniform_stand_in(samples, draw_key, row_length, n, out):
    out[...] = ops.sample_uniform(samples, int(draw_key), out.shape, out.dtype)


def _crop_flip_normalize_stand_in(images, top, left, flip, padding, mean, std, out, B, C, H, W):
    out[...] = ops.crop_flip_normalize(images, top, left, flip, int(padding), mean, std)


GELU_FORWARD = _typed("gelu.cu", "gelu_forward", _gelu_forward_stand_in, WITH_HALF)
GELU_BACKWARD = _typed("gelu.cu", "gelu_backward", _gelu_backward_stand_in, WITH_HALF)
LAYERNORM_FORWARD = _typed("layernorm.cu", "layernorm_forward", _layernorm_forward_stand_in, WITH_HALF)
LAYERNORM_BACKWARD_INPUT = _typed("layernorm.cu", "layernorm_backward_input", _layernorm_backward_input_stand_in,
                                  WITH_HALF)
LAYERNORM_BACKWARD_PARAMS = _typed("layernorm.cu", "layernorm_backward_params", _layernorm_backward_params_stand_in,
                                   WITH_HALF)
SOFTMAX_FORWARD = _typed("softmax.cu", "softmax_forward", _softmax_forward_stand_in, WITH_HALF)
SOFTMAX_BACKWARD = _typed("softmax.cu", "softmax_backward", _softmax_backward_stand_in, WITH_HALF)
CROSS_ENTROPY_FORWARD = _typed("cross_entropy.cu", "cross_entropy_forward", _cross_entropy_forward_stand_in)
CROSS_ENTROPY_BACKWARD = _typed("cross_entropy.cu", "cross_entropy_backward", _cross_entropy_backward_stand_in)
ADAMW_UPDATE = _typed("optimizer.cu", "adamw_update", _adamw_stand_in)
SGD_UPDATE = _typed("optimizer.cu", "sgd_update", _sgd_stand_in)
SQUARES_BY_BLOCK = _typed("optimizer.cu", "squares_by_block", _squares_by_block_stand_in)
NORM_AND_SCALE = _typed("optimizer.cu", "norm_and_scale", _norm_and_scale_stand_in)
SCALE_BY = _typed("optimizer.cu", "scale_by", _scale_by_stand_in)
CROP_FLIP_NORMALIZE = CudaKernel("augment.cu", "crop_flip_normalize", _crop_flip_normalize_stand_in)
RANDAUGMENT_ROUND = CudaKernel("randaugment.cu", "randaugment_round", _randaugment_stand_in)
DROPOUT_APPLY = _typed("dropout.cu", "dropout_apply", _dropout_stand_in, WITH_HALF)
SAMPLE_UNIFORM = _typed("sample_random.cu", "sample_uniform", _sample_uniform_stand_in)
UNSCALE_GRADIENTS = CudaKernel("optimizer.cu", "unscale_gradients_f16", _unscale_stand_in)
UPDATE_LOSS_SCALE = CudaKernel("optimizer.cu", "update_loss_scale", _update_loss_scale_stand_in)


# --- GELU -------------------------------------------------------------------------------------------------


def gelu_forward(x, approximate: str = "none"):
    """Replaces ops.gelu_forward: one kernel, one thread per element (cuda/gelu.cu)."""
    if approximate not in ("none", "tanh") or not _supported(x, dtypes=WITH_HALF):
        return ops.gelu_forward(x, approximate)
    x = _contiguous(x)
    out = backend.xp.empty_like(x)
    GELU_FORWARD[x.dtype](_grid(x.size), (x, out, np.int64(x.size), np.int32(approximate == "tanh")))
    return out, (x, approximate)


def gelu_backward(dout, cache):
    """Replaces ops.gelu_backward: one kernel, one thread per element (cuda/gelu.cu)."""
    x, approximate = cache
    if approximate not in ("none", "tanh") or not _supported(x, dout, dtypes=WITH_HALF):
        return ops.gelu_backward(dout, cache)
    dout = _contiguous(dout)
    dx = backend.xp.empty_like(x)
    GELU_BACKWARD[x.dtype](_grid(x.size), (dout, x, dx, np.int64(x.size), np.int32(approximate == "tanh")))
    return dx


# --- LayerNorm --------------------------------------------------------------------------------------------


def layernorm_forward(x, gamma, beta, eps: float = 1e-12):
    """Replaces ops.layernorm_forward: one kernel, a warp per row (cuda/layernorm.cu)."""
    if not _supported(x, gamma, beta, dtypes=WITH_HALF):
        return ops.layernorm_forward(x, gamma, beta, eps)
    xp = backend.xp
    x = _contiguous(x)
    D = x.shape[-1]
    rows = x.size // D
    out, xhat = xp.empty_like(x), xp.empty_like(x)
    rstd = xp.empty((*x.shape[:-1], 1), dtype=x.dtype)
    LAYERNORM_FORWARD[x.dtype](_row_grid(rows), (x, _contiguous(gamma), _contiguous(beta), out, xhat, rstd,
                                                 np.int32(rows), np.int32(D), np.float64(eps)))
    return out, (xhat, rstd, gamma)


def layernorm_backward(dout, cache):
    """Replaces ops.layernorm_backward: two kernels, dx a warp per row, dgamma and dbeta by columns."""
    xhat, rstd, gamma = cache
    if not _supported(dout, xhat, gamma, dtypes=WITH_HALF):
        return ops.layernorm_backward(dout, cache)
    xp = backend.xp
    dout = _contiguous(dout)
    D = dout.shape[-1]
    rows = dout.size // D
    dx = xp.empty_like(dout)
    dgamma, dbeta = xp.empty(D, dtype=dout.dtype), xp.empty(D, dtype=dout.dtype)
    LAYERNORM_BACKWARD_INPUT[dout.dtype](_row_grid(rows), (dout, xhat, rstd, _contiguous(gamma), dx, np.int32(rows),
                                                           np.int32(D)))
    LAYERNORM_BACKWARD_PARAMS[dout.dtype]((D + 31) // 32, (dout, xhat, dgamma, dbeta, np.int32(rows), np.int32(D)),
                                          block=(32, 32))
    return dx, dgamma, dbeta


# --- softmax ----------------------------------------------------------------------------------------------


def _softmax_rows(x, scale: float):
    out = backend.xp.empty_like(x)
    N = x.shape[-1]
    rows = x.size // N
    SOFTMAX_FORWARD[x.dtype](_row_grid(rows), (x, out, np.int32(rows), np.int32(N), np.float64(scale)))
    return out


def _softmax_rows_backward(dprobs, probs, scale: float):
    dx = backend.xp.empty_like(probs)
    N = probs.shape[-1]
    rows = probs.size // N
    SOFTMAX_BACKWARD[probs.dtype](_row_grid(rows), (dprobs, probs, dx, np.int32(rows), np.int32(N),
                                                    np.float64(scale)))
    return dx


def softmax_forward(x, axis: int = -1):
    """Replaces ops.softmax_forward (last axis): one kernel, a warp per row (cuda/softmax.cu)."""
    if axis not in (-1, x.ndim - 1) or not _supported(x, dtypes=WITH_HALF):
        return ops.softmax_forward(x, axis)
    probs = _softmax_rows(_contiguous(x), 1.0)
    return probs, (probs, axis)


def softmax_backward(dprobs, cache):
    """Replaces ops.softmax_backward (last axis): one kernel, a warp per row (cuda/softmax.cu)."""
    probs, axis = cache
    if axis not in (-1, probs.ndim - 1) or not _supported(dprobs, probs, dtypes=WITH_HALF):
        return ops.softmax_backward(dprobs, cache)
    return _softmax_rows_backward(_contiguous(dprobs), probs, 1.0)


# --- attention --------------------------------------------------------------------------------------------


def attention_heads_forward(qkv, num_heads: int, dropout_p: float = 0.0, rng=None, training: bool = False):
    """Replaces ops.attention_heads_forward, with the same cache: 5 launches.

    One copy splits qkv into contiguous q, k and v for every head at once, two batched
    cuBLAS products around one softmax kernel (the scale folded in), one copy merges the heads.
    """
    if (dropout_p and training) or not _supported(qkv, dtypes=WITH_HALF):
        return ops.attention_heads_forward(qkv, num_heads, dropout_p, rng, training)
    xp = backend.xp
    B, T, three_D = qkv.shape
    D = three_D // 3
    d = D // num_heads
    heads = xp.ascontiguousarray(qkv.reshape(B, T, 3, num_heads, d).transpose(2, 0, 3, 1, 4))  # (3, B, H, T, d)
    q, k, v = heads[0], heads[1], heads[2]
    scale = 1.0 / math.sqrt(d)
    probs = _softmax_rows(xp.matmul(q, k.swapaxes(-1, -2)), scale)  # (B, H, T, T)
    out = xp.matmul(probs, v)  # (B, H, T, d)
    context = out.transpose(0, 2, 1, 3).reshape(B, T, D)  # one copy: the heads merged
    return context, (ops.AttentionCache(q, k, v, scale, probs, None), num_heads)


def attention_heads_backward(dcontext, cache):
    """Replaces ops.attention_heads_backward: 7 launches (two layout copies, four batched
    products, one softmax-backward kernel with the scale folded in); dq, dk and dv are
    written into one (3, B, H, T, d) array and leave as one (B, T, 3D) copy."""
    attention, num_heads = cache
    q, k, v, scale, probs, dropout_mask = attention
    if dropout_mask is not None or not _supported(dcontext, probs, dtypes=WITH_HALF):
        return ops.attention_heads_backward(dcontext, cache)
    xp = backend.xp
    B, T, D = dcontext.shape
    dheads = xp.ascontiguousarray(dcontext.reshape(B, T, num_heads, D // num_heads).transpose(0, 2, 1, 3))
    dqkv_heads = xp.empty((3, *q.shape), dtype=q.dtype)  # (3, B, H, T, d)
    xp.matmul(probs.swapaxes(-1, -2), dheads, out=dqkv_heads[2])  # dV = P^T dout
    dprobs = xp.matmul(dheads, v.swapaxes(-1, -2))  # dP = dout V^T
    dscores = _softmax_rows_backward(dprobs, probs, scale)  # dS, times the scale
    xp.matmul(dscores, k, out=dqkv_heads[0])  # dQ = dS K
    xp.matmul(dscores.swapaxes(-1, -2), q, out=dqkv_heads[1])  # dK = dS^T Q
    return dqkv_heads.transpose(1, 3, 0, 2, 4).reshape(B, T, 3 * D)  # one copy into qkv's layout


# --- cross-entropy ----------------------------------------------------------------------------------------


def cross_entropy_forward(logits, targets, label_smoothing: float = 0.0):
    """Replaces ops.cross_entropy_forward: one kernel (cuda/cross_entropy.cu); the loss stays on the device."""
    xp = backend.xp
    labels_given = targets.ndim == 1 and xp.issubdtype(targets.dtype, xp.integer)
    soft_given = targets.ndim == 2 and targets.shape == logits.shape
    if (not (labels_given or soft_given) or not _supported(logits) or logits.ndim != 2
            or not 0.0 <= label_smoothing < 1.0 or targets.shape[0] != logits.shape[0]):
        return ops.cross_entropy_forward(logits, targets, label_smoothing)  # which explains what is wrong
    B, K = logits.shape
    logits = _contiguous(logits)
    labels = _contiguous(targets.astype(xp.int64, copy=False)) if labels_given else logits  # (else: not read)
    soft = _contiguous(targets.astype(logits.dtype, copy=False)) if soft_given else logits
    log_probs, q = xp.empty_like(logits), xp.empty_like(logits)
    loss = xp.empty(1, dtype=logits.dtype)
    CROSS_ENTROPY_FORWARD[logits.dtype](1, (logits, labels, soft, np.int32(labels_given), log_probs, q, loss,
                                            np.int32(B), np.int32(K), np.float64(label_smoothing)),
                                        shared_mem=BLOCK * 8)
    return loss.reshape(()), (log_probs, q)


def cross_entropy_backward(dloss, cache):
    """Replaces ops.cross_entropy_backward: one kernel; ``dloss`` a number."""
    log_probs, q = cache
    if not isinstance(dloss, (int, float)) or not _supported(log_probs, q):
        return ops.cross_entropy_backward(dloss, cache)
    dlogits = backend.xp.empty_like(log_probs)
    CROSS_ENTROPY_BACKWARD[log_probs.dtype](_grid(log_probs.size), (log_probs, q, dlogits, np.int64(log_probs.size),
                                                                    np.float64(dloss / log_probs.shape[0])))
    return dlogits


# --- optimizers -------------------------------------------------------------------------------------------


def _rate_and_decay(data, lr_scale, weight_decay) -> tuple:
    """Kernel arguments for a per-element array or one number, for the rate scale and the decay."""
    def one(value):
        if backend.is_array(value):
            return value, np.float64(0.0), np.int32(1)
        return data, np.float64(value), np.int32(0)  # the array argument is not read

    return (*one(lr_scale), *one(weight_decay))


def _updatable(*arrays) -> bool:
    return _supported(*arrays) and all(a.flags.c_contiguous and a.shape == arrays[0].shape for a in arrays)


def _skip_arguments(data, skip) -> tuple:
    if skip is None:
        return data, np.int32(0)  # (not read)
    return skip.astype(backend.xp.float32, copy=False), np.int32(1)


def adamw_update(data, grad, exp_avg, exp_avg_sq, lr, lr_scale, weight_decay, beta1, beta2, eps, step,
                 skip=None):
    """Replaces ops.adamw_update: one kernel over the whole (flat) buffer (cuda/optimizer.cu)."""
    per_element = [a for a in (lr_scale, weight_decay) if backend.is_array(a)]
    if not _updatable(data, grad, exp_avg, exp_avg_sq, *per_element):
        return ops.adamw_update(data, grad, exp_avg, exp_avg_sq, lr, lr_scale, weight_decay, beta1, beta2, eps,
                                step, skip)
    ADAMW_UPDATE[data.dtype](_grid(data.size), (data, grad, exp_avg, exp_avg_sq,
                                                *_rate_and_decay(data, lr_scale, weight_decay),
                                                np.float64(lr), np.float64(beta1), np.float64(beta2), np.float64(eps),
                                                np.float64(1.0 - beta1**step),
                                                np.float64(math.sqrt(1.0 - beta2**step)),
                                                *_skip_arguments(data, skip), np.int64(data.size)))


def sgd_update(data, grad, momentum_buffer, lr, lr_scale, weight_decay, momentum, nesterov, step, skip=None):
    """Replaces ops.sgd_update: one kernel over the whole (flat) buffer (cuda/optimizer.cu)."""
    per_element = [a for a in (lr_scale, weight_decay) if backend.is_array(a)]
    if not _updatable(data, grad, momentum_buffer, *per_element):
        return ops.sgd_update(data, grad, momentum_buffer, lr, lr_scale, weight_decay, momentum, nesterov, step,
                              skip)
    SGD_UPDATE[data.dtype](_grid(data.size), (data, grad, momentum_buffer,
                                              *_rate_and_decay(data, lr_scale, weight_decay), np.float64(lr),
                                              np.float64(momentum), np.int32(nesterov), np.int32(step == 1),
                                              *_skip_arguments(data, skip), np.int64(data.size)))


def unscale_gradients(grad, scale, out, found_inf) -> None:
    """Replaces ops.unscale_gradients (float16 gradients into float32): one kernel (cuda/optimizer.cu)."""
    xp = backend.xp
    if (grad.dtype != xp.float16 or out.dtype != xp.float32 or scale.dtype != xp.float32
            or found_inf.dtype != xp.float32 or not (grad.flags.c_contiguous and out.flags.c_contiguous)):
        return ops.unscale_gradients(grad, scale, out, found_inf)
    UNSCALE_GRADIENTS(_grid(grad.size), (grad, scale, out, found_inf, np.int64(grad.size)))


def update_loss_scale(scale, growth_tracker, found_inf, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                      growth_interval: int = 2000) -> None:
    """Replaces ops.update_loss_scale: one thread of one kernel (cuda/optimizer.cu)."""
    xp = backend.xp
    if scale.dtype != xp.float32 or growth_tracker.dtype != xp.int32 or found_inf.dtype != xp.float32:
        return ops.update_loss_scale(scale, growth_tracker, found_inf, growth_factor, backoff_factor,
                                     growth_interval)
    UPDATE_LOSS_SCALE(1, (scale, growth_tracker, found_inf, np.float64(growth_factor), np.float64(backoff_factor),
                          np.int32(growth_interval)), block=1)


def clip_by_norm(grad, max_norm: float):
    """Replaces ops.clip_by_norm: three kernels, the norm and the scale never leave the device."""
    if not _updatable(grad):
        return ops.clip_by_norm(grad, max_norm)
    xp = backend.xp
    blocks = _grid(grad.size)
    block_sums = xp.empty(blocks, dtype=xp.float64)
    norm, scale = xp.empty(1, dtype=grad.dtype), xp.empty(1, dtype=grad.dtype)
    SQUARES_BY_BLOCK[grad.dtype](blocks, (grad, block_sums, np.int64(grad.size)), shared_mem=BLOCK * 8)
    NORM_AND_SCALE[grad.dtype](1, (block_sums, np.int32(blocks), np.float64(max_norm), norm, scale),
                               shared_mem=BLOCK * 8)
    SCALE_BY[grad.dtype](blocks, (grad, scale, np.int64(grad.size)))
    return norm.reshape(())


# --- dropout ----------------------------------------------------------------------------------------------


def dropout_forward(x, p: float, rng, training: bool = True):
    """Replaces ops.dropout_forward: the same draws (rng.random(x.shape)), then one kernel makes the
    mask and applies it (cuda/dropout.cu): 2 launches instead of 5."""
    if not training or p == 0.0 or not 0.0 <= p < 1.0 or not _supported(x, dtypes=WITH_HALF):
        return ops.dropout_forward(x, p, rng, training)
    xp = backend.xp
    uniform = rng.random(x.shape, dtype=xp.float32 if x.dtype == xp.float16 else x.dtype)  # as the reference draws
    x = _contiguous(x)
    out, mask = xp.empty_like(x), xp.empty_like(x)
    DROPOUT_APPLY[x.dtype](_grid(x.size), (x, uniform, out, mask, np.float64(p), np.int64(x.size)))
    return out, mask


# --- per-sample random draws ------------------------------------------------------------------------------


def sample_uniform(samples, draw_key: int, shape: tuple, dtype):
    """Replaces ops.sample_uniform: the same integer hash, one launch (cuda/sample_random.cu) instead of ~25."""
    xp = backend.xp
    if np.dtype(dtype) not in FLOATS:
        return ops.sample_uniform(samples, draw_key, shape, dtype)
    out = xp.empty(shape, dtype=dtype)
    row_length = out.size // max(1, int(shape[0]))
    SAMPLE_UNIFORM[out.dtype](_grid(out.size), (_contiguous(samples.astype(np.uint64, copy=False)),
                                                np.uint64(draw_key), np.int64(row_length), np.int64(out.size), out))
    return out


# --- augmentation -----------------------------------------------------------------------------------------


def rand_augment(images, num_ops: int, magnitude: float, rng):
    """Replaces ops.rand_augment: the same draws per round (each image's operation and sign), then
    one kernel applies the round (cuda/randaugment.cu): ~6 launches a round instead of ~300."""
    xp = backend.xp
    if images.dtype != xp.float32 or images.ndim != 4 or images.shape[1] > 4:
        return ops.rand_augment(images, num_ops, magnitude, rng)
    from minivit.ops.randaugment import RANDAUGMENT_OPS

    level = magnitude / 10.0
    posterize_step = 2.0 ** (8 - (8 - int(round(4 * level))))  # as ops.randaugment's posterize works it out
    solarize_threshold = 256.0 - 256.0 * level
    B, C, H, W = images.shape
    for _ in range(num_ops):
        choice = rng.integers(0, len(RANDAUGMENT_OPS), size=B)
        sign = xp.where(rng.random(B) < 0.5, -1.0, 1.0).astype(images.dtype)
        images = _contiguous(images)
        out = xp.empty_like(images)
        RANDAUGMENT_ROUND(B, (images, choice, sign, np.float32(level), np.float32(posterize_step),
                              np.float32(solarize_threshold), out, np.int32(C), np.int32(H), np.int32(W)),
                          shared_mem=C * H * W * 4)
        images = out
    return images



def crop_flip_normalize(images, top, left, flip, padding: int, mean, std):
    """Replaces ops.crop_flip_normalize: one kernel, one thread per output pixel (cuda/augment.cu)."""
    xp = backend.xp
    if images.dtype != xp.uint8 or images.ndim != 4:
        return ops.crop_flip_normalize(images, top, left, flip, padding, mean, std)
    B, C, H, W = images.shape
    out = xp.empty((B, C, H, W), dtype=xp.float32)
    CROP_FLIP_NORMALIZE(_grid(out.size), (_contiguous(images), _contiguous(top.astype(xp.int64, copy=False)),
                                          _contiguous(left.astype(xp.int64, copy=False)),
                                          _contiguous(flip.astype(xp.bool_, copy=False)), np.int32(padding),
                                          _contiguous(xp.asarray(mean, dtype=xp.float32)),
                                          _contiguous(xp.asarray(std, dtype=xp.float32)), out,
                                          np.int32(B), np.int32(C), np.int32(H), np.int32(W)))
    return out


# What each fast function replaces: {reference name: function}. minivit.dispatch reads this.
KERNELS = {
    "gelu_forward": gelu_forward,
    "gelu_backward": gelu_backward,
    "layernorm_forward": layernorm_forward,
    "layernorm_backward": layernorm_backward,
    "softmax_forward": softmax_forward,
    "softmax_backward": softmax_backward,
    "attention_heads_forward": attention_heads_forward,
    "attention_heads_backward": attention_heads_backward,
    "cross_entropy_forward": cross_entropy_forward,
    "cross_entropy_backward": cross_entropy_backward,
    "adamw_update": adamw_update,
    "sgd_update": sgd_update,
    "clip_by_norm": clip_by_norm,
    "unscale_gradients": unscale_gradients,
    "update_loss_scale": update_loss_scale,
    "crop_flip_normalize": crop_flip_normalize,
    "rand_augment": rand_augment,
    "dropout_forward": dropout_forward,
    "sample_uniform": sample_uniform,
}
