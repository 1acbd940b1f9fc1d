"""Attention over all heads on the GPU: replaces ops.attention_heads_forward / attention_heads_backward,
with the same cache.

Fused (attention.cu), float32 and float16, where a head's keys, values and probabilities fit in a
block's shared memory (cifar-tiny's 65 tokens of 64): one kernel each way, one block per (image,
head), q, k and v read where the qkv projection wrote them and dq, dk, dv written there; the
cache's q, k and v are views of qkv. Otherwise cuBLAS's batched products around softmax.cu's kernel
(the scale folded in): 5 launches forward and 7 backward instead of the reference's ~8 / ~12.
"""

from __future__ import annotations

import math

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import HALF_AND_FLOAT, WITH_HALF, compute, contiguous, supported, typed
from minivit.kernels.gpu.softmax import softmax_rows, softmax_rows_backward
from minivit.kernels.registry import replaces


def _attention_forward_fused_stand_in(qkv, context, probs, T, H, d, scale):
    out, (attention, _) = ops.attention_heads_forward(compute(qkv), int(H))
    context[...] = out
    probs[...] = attention.probs


def _attention_backward_fused_stand_in(dcontext, q, k, v, probs, dqkv, T, H, d, scale):
    attention = ops.AttentionCache(compute(q), compute(k), compute(v), float(scale), compute(probs), None)
    dqkv[...] = ops.attention_heads_backward(compute(dcontext), (attention, int(H)))


ATTENTION_FORWARD_FUSED = typed("attention.cu", "attention_forward_fused", _attention_forward_fused_stand_in,
                                HALF_AND_FLOAT)
ATTENTION_BACKWARD_FUSED = typed("attention.cu", "attention_backward_fused", _attention_backward_fused_stand_in,
                                 HALF_AND_FLOAT)


ATTENTION_WARPS = 4  # cuda/attention.cu: WARPS
ATTENTION_MAX_TOKENS = 32 * 4  # cuda/attention.cu: 32 x MAX_TOKENS_PER_LANE
SHARED_MEMORY_LIMIT = 48 * 1024  # bytes a block may use without asking for more


def _fused_attention_shared_bytes(T: int, d: int) -> int:
    """Shared memory of the fused kernels (float32 values): the larger of forward and backward."""
    forward = 2 * T * (d + 1) + ATTENTION_WARPS * (d + T)
    backward = T * (d + 1) + T * (T + 1) + ATTENTION_WARPS * d
    return 4 * max(forward, backward)


FUSED_ATTENTION = True  # False: always the batched products (benchmarks/gpu_session/suspects.py times both)


def _fused_attention_fits(dtype, T: int, d: int) -> bool:
    return (FUSED_ATTENTION and dtype in HALF_AND_FLOAT and T <= ATTENTION_MAX_TOKENS
            and _fused_attention_shared_bytes(T, d) <= SHARED_MEMORY_LIMIT)


@replaces("attention_heads_forward")
def attention_heads_forward(qkv, num_heads: int, dropout_p: float = 0.0, rng=None, training: bool = False):
    """Replaces ops.attention_heads_forward, with the same cache.

    Fused (float32 and float16, when a head's keys and values fit in shared memory, as at
    cifar-tiny's 65 tokens): one kernel, one block per (image, head), reading q, k and v where
    they lie in qkv and writing the merged context and the probabilities (cuda/attention.cu);
    the cache's q, k and v are views of qkv. Otherwise 5 launches: one copy splits qkv into
    contiguous q, k and v for every head at once, two batched cuBLAS products around one softmax
    kernel (the scale folded in), one copy merges the heads.
    """
    if (dropout_p and training) or not supported(qkv, dtypes=WITH_HALF):
        return ops.attention_heads_forward(qkv, num_heads, dropout_p, rng, training)
    xp = backend.xp
    B, T, three_D = qkv.shape
    d = three_D // 3 // num_heads
    if _fused_attention_fits(qkv.dtype, T, d):
        qkv = contiguous(qkv)
        context = xp.empty((B, T, three_D // 3), dtype=qkv.dtype)
        probs = xp.empty((B, num_heads, T, T), dtype=qkv.dtype)
        scale = 1.0 / math.sqrt(d)
        ATTENTION_FORWARD_FUSED[qkv.dtype](B * num_heads, (qkv, context, probs, np.int32(T), np.int32(num_heads),
                                                           np.int32(d), np.float32(scale)),
                                           block=32 * ATTENTION_WARPS, shared_mem=_fused_attention_shared_bytes(T, d))
        heads = qkv.reshape(B, T, 3, num_heads, d).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, d): views
        return context, (ops.AttentionCache(heads[0], heads[1], heads[2], scale, probs, None), num_heads)
    D = three_D // 3
    d = D // num_heads
    heads = xp.ascontiguousarray(qkv.reshape(B, T, 3, num_heads, d).transpose(2, 0, 3, 1, 4))  # (3, B, H, T, d)
    q, k, v = heads[0], heads[1], heads[2]
    scale = 1.0 / math.sqrt(d)
    probs = softmax_rows(xp.matmul(q, k.swapaxes(-1, -2)), scale)  # (B, H, T, T)
    out = xp.matmul(probs, v)  # (B, H, T, d)
    context = out.transpose(0, 2, 1, 3).reshape(B, T, D)  # one copy: the heads merged
    return context, (ops.AttentionCache(q, k, v, scale, probs, None), num_heads)


def _views_of_packed_qkv(q, k, v) -> bool:
    """q, k and v (B, H, T, d) are the fused forward's views of one (B, T, 3D) array (q's memory
    first, k's D values on, v's 2D on): the fused backward reads them there."""
    B, H, T, d = q.shape
    item = q.itemsize
    packed = (T * 3 * H * d * item, d * item, 3 * H * d * item, item)
    if not (q.strides == k.strides == v.strides == packed and q.dtype == k.dtype == v.dtype):
        return False
    return (k.data.ptr - q.data.ptr == H * d * item) and (v.data.ptr - q.data.ptr == 2 * H * d * item)


@replaces("attention_heads_backward")
def attention_heads_backward(dcontext, cache):
    """Replaces ops.attention_heads_backward. After the fused forward, one kernel (cuda/attention.cu)
    writes dq, dk and dv into (B, T, 3D). Otherwise 7 launches (two layout copies, four batched
    products, one softmax-backward kernel with the scale folded in); dq, dk and dv are
    written into one (3, B, H, T, d) array and leave as one (B, T, 3D) copy."""
    attention, num_heads = cache
    q, k, v, scale, probs, dropout_mask = attention
    if dropout_mask is not None or not supported(dcontext, probs, dtypes=WITH_HALF):
        return ops.attention_heads_backward(dcontext, cache)
    xp = backend.xp
    B, T, D = dcontext.shape
    if _fused_attention_fits(q.dtype, T, D // num_heads) and _views_of_packed_qkv(q, k, v):
        dqkv = xp.empty((B, T, 3 * D), dtype=q.dtype)
        ATTENTION_BACKWARD_FUSED[q.dtype](B * num_heads, (contiguous(dcontext), q, k, v, probs, dqkv, np.int32(T),
                                                          np.int32(num_heads), np.int32(D // num_heads),
                                                          np.float32(scale)),
                                          block=32 * ATTENTION_WARPS,
                                          shared_mem=_fused_attention_shared_bytes(T, D // num_heads))
        return dqkv
    dheads = xp.ascontiguousarray(dcontext.reshape(B, T, num_heads, D // num_heads).transpose(0, 2, 1, 3))
    dqkv_heads = xp.empty((3, *q.shape), dtype=q.dtype)  # (3, B, H, T, d)
    xp.matmul(probs.swapaxes(-1, -2), dheads, out=dqkv_heads[2])  # dV = P^T dout
    dprobs = xp.matmul(dheads, v.swapaxes(-1, -2))  # dP = dout V^T
    dscores = softmax_rows_backward(dprobs, probs, scale)  # dS, times the scale
    xp.matmul(dscores, k, out=dqkv_heads[0])  # dQ = dS K
    xp.matmul(dscores.swapaxes(-1, -2), q, out=dqkv_heads[1])  # dK = dS^T Q
    return dqkv_heads.transpose(1, 3, 0, 2, 4).reshape(B, T, 3 * D)  # one copy into qkv's layout
