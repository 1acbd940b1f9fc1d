"""Multi-head self-attention.

For one head, with queries Q, keys K and values V of shape (T, d):

    scores = Q K^T / sqrt(d)            # (T, T): how much token i looks at token j
    probs  = softmax(scores, axis=-1)   # each row sums to 1
    out    = probs V                    # (T, d): a probability-weighted mix of values

Multi-head attention runs H of these side by side on D/H-wide slices of the
hidden vector (split_heads), puts the results back together (merge_heads),
and mixes them with an output projection.

Three levels, each a forward/backward pair:
    attention_forward             one or more heads, q, k, v already split: (B, H, T, d)
    attention_heads_forward       q, k and v side by side in one (B, T, 3D) array (what one
                                  product with the three weights side by side gives), heads
                                  split, attended and merged: (B, T, D). The model runs this.
    multi_head_attention_forward  the whole layer from x: projections, heads, output projection

Caches: AttentionCache; (AttentionCache, num_heads); MultiHeadAttentionCache.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from minivit import backend
from minivit.ops.dropout import dropout_backward, dropout_forward
from minivit.ops.linear import linear_backward, linear_forward
from minivit.ops.softmax import softmax_backward, softmax_forward


def split_heads(x, num_heads: int):
    """(B, T, D) -> (B, H, T, D/H): head h sees features h*D/H ... (h+1)*D/H - 1."""
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, T, d) -> (B, T, H*d), the inverse of split_heads."""
    B, H, T, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * d)


class AttentionCache(NamedTuple):
    q: object
    k: object
    v: object
    scale: float
    probs: object  # (B, H, T, T) attention probabilities, before dropout: what plots show
    dropout_mask: object  # None without dropout


def attention_forward(q, k, v, dropout_p: float = 0.0, rng=None, training: bool = False):
    """Scaled dot-product attention. q, k, v: (B, H, T, d) -> out (B, H, T, d)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ k.swapaxes(-1, -2)) * scale  # (B, H, T, T)
    probs, _ = softmax_forward(scores, axis=-1)
    dropped_probs, dropout_mask = dropout_forward(probs, dropout_p, rng, training)
    out = dropped_probs @ v  # (B, H, T, d)
    return out, AttentionCache(q, k, v, scale, probs, dropout_mask)


def attention_backward(dout, cache: AttentionCache):
    """Returns (dq, dk, dv).

    In the forward: out = P' V with P' = dropout(P), P = softmax(S), S = Q K^T * scale. So:
        dV = P'^T dout,  dP' = dout V^T,  dP = dropout_backward(dP'),
        dS = softmax_backward(dP),  dQ = dS K * scale,  dK = dS^T Q * scale.
    """
    q, k, v, scale, probs, dropout_mask = cache
    dropped_probs = probs if dropout_mask is None else probs * dropout_mask
    dv = dropped_probs.swapaxes(-1, -2) @ dout  # (B, H, T, d)
    ddropped_probs = dout @ v.swapaxes(-1, -2)  # (B, H, T, T)
    dprobs = dropout_backward(ddropped_probs, dropout_mask)
    dscores = softmax_backward(dprobs, (probs, -1)) * scale
    dq = dscores @ k
    dk = dscores.swapaxes(-1, -2) @ q
    return dq, dk, dv


def attention_heads_forward(qkv, num_heads: int, dropout_p: float = 0.0, rng=None, training: bool = False):
    """qkv (B, T, 3D): queries, keys and values side by side -> context (B, T, D), the heads merged."""
    D = qkv.shape[-1] // 3
    q = split_heads(qkv[..., :D], num_heads)  # (B, H, T, d)
    k = split_heads(qkv[..., D:2 * D], num_heads)
    v = split_heads(qkv[..., 2 * D:], num_heads)
    out, cache = attention_forward(q, k, v, dropout_p, rng, training)
    return merge_heads(out), (cache, num_heads)


def attention_heads_backward(dcontext, cache):
    """dcontext (B, T, D) -> dqkv (B, T, 3D): the heads' gradients, side by side as the forward read them."""
    attention_cache, num_heads = cache
    dq, dk, dv = attention_backward(split_heads(dcontext, num_heads), attention_cache)
    return backend.xp.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)


class MultiHeadAttentionCache(NamedTuple):
    qkv_cache: tuple
    heads_cache: tuple
    output_cache: tuple
    hidden_size: int


def multi_head_attention_forward(
    x,
    q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, o_weight, o_bias,
    num_heads: int,
    dropout_p: float = 0.0,
    rng=None,
    training: bool = False,
):
    """x (B, T, D) -> out (B, T, D). Weights (D, D) stored (in, out); q/k/v biases may be None.

    The query, key and value projections read the same x, so they run as one
    matrix product with the three weights side by side: (B*T, D) @ (D, 3D).
    """
    xp = backend.xp
    qkv_weight = xp.concatenate([q_weight, k_weight, v_weight], axis=1)  # (D, 3D)
    qkv_bias = None if q_bias is None else xp.concatenate([q_bias, k_bias, v_bias])
    qkv, qkv_cache = linear_forward(x, qkv_weight, qkv_bias)  # (B, T, 3D)
    context, heads_cache = attention_heads_forward(qkv, num_heads, dropout_p, rng, training)  # (B, T, D)
    out, output_cache = linear_forward(context, o_weight, o_bias)
    return out, MultiHeadAttentionCache(qkv_cache, heads_cache, output_cache, x.shape[-1])


def multi_head_attention_backward(dout, cache: MultiHeadAttentionCache):
    """Returns (dx, dq_weight, dq_bias, dk_weight, dk_bias, dv_weight, dv_bias, do_weight, do_bias)."""
    D = cache.hidden_size
    dcontext, do_weight, do_bias = linear_backward(dout, cache.output_cache)  # (B, T, D)
    dqkv = attention_heads_backward(dcontext, cache.heads_cache)  # (B, T, 3D)
    dx, dqkv_weight, dqkv_bias = linear_backward(dqkv, cache.qkv_cache)
    dq_weight, dk_weight, dv_weight = dqkv_weight[:, :D], dqkv_weight[:, D:2 * D], dqkv_weight[:, 2 * D:]
    if dqkv_bias is None:
        dq_bias = dk_bias = dv_bias = None
    else:
        dq_bias, dk_bias, dv_bias = dqkv_bias[:D], dqkv_bias[D:2 * D], dqkv_bias[2 * D:]
    return dx, dq_weight, dq_bias, dk_weight, dk_bias, dv_weight, dv_bias, do_weight, do_bias
