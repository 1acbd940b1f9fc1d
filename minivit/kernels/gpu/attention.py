"""Attention over all heads on the GPU: replaces ops.attention_heads_forward / attention_heads_backward,
with the same cache: cuBLAS's batched products around softmax.cu's kernel (the scale folded in), 5
launches forward and 7 backward instead of the reference's ~8 / ~12. No CUDA source of its own."""

from __future__ import annotations

import math

from minivit import backend, ops
from minivit.kernels.gpu.launch import WITH_HALF, supported
from minivit.kernels.gpu.softmax import softmax_rows, softmax_rows_backward
from minivit.kernels.registry import replaces


@replaces("attention_heads_forward")
def attention_heads_forward(qkv, num_heads: int, dropout_p: float = 0.0, rng=None, training: bool = False):
    """Replaces ops.attention_heads_forward, with the same cache: 5 launches.

    One copy splits qkv into contiguous q, k and v for every head at once, two batched
    cuBLAS products around one softmax kernel (the scale folded in), one copy merges the heads.
    """
    if (dropout_p and training) or not supported(qkv, dtypes=WITH_HALF):
        return ops.attention_heads_forward(qkv, num_heads, dropout_p, rng, training)
    xp = backend.xp
    B, T, three_D = qkv.shape
    D = three_D // 3
    d = D // num_heads
    heads = xp.ascontiguousarray(qkv.reshape(B, T, 3, num_heads, d).transpose(2, 0, 3, 1, 4))  # (3, B, H, T, d)
    q, k, v = heads[0], heads[1], heads[2]
    scale = 1.0 / math.sqrt(d)
    probs = softmax_rows(xp.matmul(q, k.swapaxes(-1, -2)), scale)  # (B, H, T, T)
    out = xp.matmul(probs, v)  # (B, H, T, d)
    context = out.transpose(0, 2, 1, 3).reshape(B, T, D)  # one copy: the heads merged
    return context, (ops.AttentionCache(q, k, v, scale, probs, None), num_heads)


@replaces("attention_heads_backward")
def attention_heads_backward(dcontext, cache):
    """Replaces ops.attention_heads_backward: 7 launches (two layout copies, four batched
    products, one softmax-backward kernel with the scale folded in); dq, dk and dv are
    written into one (3, B, H, T, d) array and leave as one (B, T, 3D) copy."""
    attention, num_heads = cache
    q, k, v, scale, probs, dropout_mask = attention
    if dropout_mask is not None or not supported(dcontext, probs, dtypes=WITH_HALF):
        return ops.attention_heads_backward(dcontext, cache)
    xp = backend.xp
    B, T, D = dcontext.shape
    dheads = xp.ascontiguousarray(dcontext.reshape(B, T, num_heads, D // num_heads).transpose(0, 2, 1, 3))
    dqkv_heads = xp.empty((3, *q.shape), dtype=q.dtype)  # (3, B, H, T, d)
    xp.matmul(probs.swapaxes(-1, -2), dheads, out=dqkv_heads[2])  # dV = P^T dout
    dprobs = xp.matmul(dheads, v.swapaxes(-1, -2))  # dP = dout V^T
    dscores = softmax_rows_backward(dprobs, probs, scale)  # dS, times the scale
    xp.matmul(dscores, k, out=dqkv_heads[0])  # dQ = dS K
    xp.matmul(dscores.swapaxes(-1, -2), q, out=dqkv_heads[1])  # dK = dS^T Q
    return dqkv_heads.transpose(1, 3, 0, 2, 4).reshape(B, T, 3 * D)  # one copy into qkv's layout
