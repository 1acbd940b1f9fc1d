"""Lesson 4, self-attention: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import math

import numpy as np

from minivit import ops
from minivit.ops import AttentionCache

from .diagnosis import (
    NotYet,
    check_array,
    check_gradients,
    check_true,
    check_value,
    distinct,
    numerical_gradient,
    returned_pair,
)
from .exercises import keep_engine_function, solution

# --- checks ---------------------------------------------------------------------------------------

def reference_softmax(scores, axis=-1):
    """The softmax the checks compare with (the learner's softmax_backward is what they check)."""
    exps = np.exp(scores - scores.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def check_softmax_jacobian(softmax_jacobian) -> None:
    """A checkpoint: the (T, T) Jacobian dy_i/ds_j of one row, against finite differences."""
    scores = np.random.default_rng(3).standard_normal(5)
    probs = reference_softmax(scores)
    numeric = np.stack([numerical_gradient(lambda i=i: reference_softmax(scores)[i], scores) for i in range(5)])
    yours = softmax_jacobian(probs.copy())
    check_array(yours, numeric, "the softmax's Jacobian J[i, j] = dy_i / ds_j (finite differences)", "J",
                rtol=1e-7, terms={"the diagonal part diag(y) (from delta_ij)": np.diag(probs),
                                  "the part -y y^T (from the sum in the denominator)": -np.outer(probs, probs)})


def check_softmax_backward(softmax_backward) -> None:
    """softmax_backward(dprobs, cache) with the engine's cache (probs, axis)."""
    from minivit import ops

    scores = np.random.default_rng(4).standard_normal((3, 4, 5))

    def hints(dout, cache):
        probs = cache[0]
        row_sum = (dout * probs).sum(axis=-1, keepdims=True)
        return {"dscores": {
            "terms": {"the term -y * sum(g * y) (from the off-diagonal Jacobian part -y_i y_j)": -probs * row_sum},
            "mistakes": {"the sum over axis 0 instead of the softmax's axis":
                         probs * (dout - (dout * probs).sum(axis=0, keepdims=True)),
                         "the full Jacobian with the sum over the wrong index (g_i y_i summed over j)":
                         probs * dout - probs * (dout * probs).sum(axis=-1, keepdims=True) * probs.shape[-1]}}}

    check_gradients(lambda scores: ops.softmax_forward(scores, -1), softmax_backward, {"scores": scores},
                    "softmax_backward against finite differences", grads=["dscores"], hints=hints,
                    sizes={"the row length T": 5})
    keep_engine_function(softmax_backward, "softmax_backward")


def check_split_heads(split_heads) -> None:
    from minivit import ops

    x = distinct((2, 5, 6))
    yours = split_heads(x.copy(), 3)
    check_array(yours, ops.split_heads(x, 3), "split_heads: (B, T, D) -> (B, H, T, D/H)", "heads",
                mistakes={"reshaping straight to (B, H, T, d) without a transpose (the tokens' features get "
                          "dealt out to the wrong heads)": x.reshape(2, 3, 5, 2),
                          "the transpose (0, 2, 3, 1) (features and tokens swapped)":
                          x.reshape(2, 5, 3, 2).transpose(0, 2, 3, 1).reshape(2, 3, 5, 2)})


def _attention_variants(q, k, v):
    d = q.shape[-1]
    scores = q @ k.swapaxes(-1, -2)
    variants = {
        "leaving out the 1/sqrt(d) scale": scores,
        "scaling by 1/d instead of 1/sqrt(d)": scores / d,
        "multiplying the scores by sqrt(d) instead of dividing by it": scores * math.sqrt(d),
    }
    probs = {name: reference_softmax(s) for name, s in variants.items()}
    probs["the softmax over axis -2 (down the columns) instead of the last axis (along each row)"] = \
        reference_softmax(scores / math.sqrt(d), axis=-2)
    return probs


def check_attention_forward(attention_forward) -> None:
    """attention_forward(q, k, v, dropout_p, rng, training) -> (out, AttentionCache), as the engine's."""
    from minivit import ops

    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 2, 5, 9)) for _ in range(3))
    what = "attention_forward: out and the cache"
    out, cache = returned_pair(attention_forward(q, k, v), what, "out, cache")
    expected_out, expected_cache = ops.attention_forward(q, k, v)
    fields = getattr(cache, "_fields", None)
    if fields != ops.AttentionCache._fields:
        raise NotYet(what, [f"your cache is a {type(cache).__name__}{' with fields ' + str(fields) if fields else ''}: "
                            "the engine's attention_backward reads AttentionCache(q, k, v, scale, probs, "
                            "dropout_mask) (from minivit.ops import AttentionCache)"])
    variants = _attention_variants(q, k, v)
    check_array(cache.probs, expected_cache.probs, "the attention probabilities P = softmax(Q K^T / sqrt(d))",
                "probs", mistakes=variants)
    check_value(cache.scale, expected_cache.scale, "the scale 1/sqrt(d) in the cache",
                mistakes={"1/d": 1 / 9, "sqrt(d)": 3.0})
    check_array(out, expected_out, "out = P V", "out",
                mistakes={f"{name} (the probabilities)": p @ v for name, p in variants.items()}
                | {"P^T V instead of P V": expected_cache.probs.swapaxes(-1, -2) @ v})
    dropped, dropped_cache = ops.attention_forward(q, k, v, 0.5, np.random.default_rng(7), True)
    yours_dropped, yours_cache = returned_pair(attention_forward(q, k, v, 0.5, np.random.default_rng(7), True),
                                       what, "out, cache")
    check_array(yours_dropped, dropped,
                "with dropout (p = 0.5, training): the same mask as the engine's dropout_forward",
                "out", mistakes={"dropout left out in training": expected_out})
    check_true(yours_cache.dropout_mask is not None and yours_cache.probs is not None
               and np.allclose(yours_cache.probs, dropped_cache.probs),
               "with dropout, the cache keeps the probabilities before dropout, and the mask",
               hint="Keep P itself in the cache (plots show it) and the mask dropout_forward returned.")
    keep_engine_function(attention_forward, "attention_forward")


def check_multi_head_attention(multi_head_attention) -> None:
    from minivit import ops

    rng = np.random.default_rng(6)
    B, T, D, H = 2, 5, 6, 3
    x = rng.standard_normal((B, T, D))
    weights = {}
    for name in ("q", "k", "v", "o"):
        weights[f"{name}_weight"] = rng.standard_normal((D, D)) * 0.5
        weights[f"{name}_bias"] = rng.standard_normal(D)
    expected, _ = ops.multi_head_attention_forward(x, *weights.values(), num_heads=H)
    q, k, v = (x @ weights[f"{n}_weight"] + weights[f"{n}_bias"] for n in "qkv")
    heads = [ops.split_heads(a, H) for a in (q, k, v)]
    context = ops.merge_heads(ops.attention_forward(*heads)[0])
    plain = [a.reshape(B, H, T, D // H) for a in (q, k, v)]
    q_unbiased = ops.split_heads(x @ weights["q_weight"], H)
    no_q_bias = ops.merge_heads(ops.attention_forward(q_unbiased, heads[1], heads[2])[0])
    mistakes = {
        "leaving out the q bias (q = x q_weight + q_bias)": no_q_bias @ weights["o_weight"] + weights["o_bias"],
        "leaving out the output projection (o_weight, o_bias)": context,
        "splitting the heads with a plain reshape (no transpose)":
            ops.attention_forward(*plain)[0].reshape(B, T, D) @ weights["o_weight"] + weights["o_bias"],
        "merging the heads with a plain reshape (no transpose)":
            ops.attention_forward(*heads)[0].reshape(B, T, D) @ weights["o_weight"] + weights["o_bias"],
        "one head over all D features instead of H heads":
            ops.merge_heads(ops.attention_forward(*(a[:, None] for a in (q, k, v)))[0])
            @ weights["o_weight"] + weights["o_bias"],
    }
    yours = multi_head_attention(x.copy(), *weights.values(), H)
    check_array(yours, expected, "multi-head attention forward equals the engine's", "out", mistakes=mistakes)


def check_attention_backward(attention_backward) -> None:
    """attention_backward(dout, cache) with the engine's AttentionCache, without and with dropout."""
    from minivit import ops

    rng = np.random.default_rng(8)
    inputs = {name: rng.standard_normal((2, 2, 5, 9)) for name in ("q", "k", "v")}
    sizes = {"the head size d": 9}

    def hints(dout, cache):
        q, k, v, scale, probs, mask = cache
        dropped = probs if mask is None else probs * mask
        dprobs = dout @ v.swapaxes(-1, -2)
        if mask is not None:
            dprobs = dprobs * mask
        dscores = probs * (dprobs - (dprobs * probs).sum(-1, keepdims=True)) * scale
        plain_dprobs = dout @ v.swapaxes(-1, -2)
        plain_dscores = probs * (plain_dprobs - (plain_dprobs * probs).sum(-1, keepdims=True)) * scale
        hints = {"dq": {"mistakes": {"dscores^T K instead of dscores K": dscores.swapaxes(-1, -2) @ k,
                                     "the scale sqrt(d) where the forward has 1/sqrt(d) (scores times sqrt(d)?)":
                                     dscores @ k / scale**2}},
                 "dk": {"mistakes": {"dscores Q instead of dscores^T Q (dk needs the transpose: "
                                     "S[i, j] = q_i . k_j / sqrt(d))": dscores @ q,
                                     "dscores K (dq's formula with K where dk needs dscores^T Q)": dscores @ k}},
                 "dv": {"mistakes": {"P dout instead of P^T dout": dropped @ dout}}}
        if mask is not None:
            hints["dv"]["mistakes"]["P^T dout with P before dropout (the forward multiplied V by the "
                                    "dropped probabilities)"] = probs.swapaxes(-1, -2) @ dout
            hints["dq"]["mistakes"]["ignoring the dropout mask on the way back"] = plain_dscores @ k
            hints["dk"]["mistakes"]["ignoring the dropout mask on the way back"] = plain_dscores.swapaxes(-1, -2) @ q
        return hints

    expect = "below 1e-6 (dk's smallest elements sit near the finite differences' noise)"
    check_gradients(lambda q, k, v: ops.attention_forward(q, k, v), attention_backward, inputs,
                    "attention_backward against finite differences", grads=["dq", "dk", "dv"],
                    sizes=sizes, hints=hints, expect=expect)
    check_gradients(lambda q, k, v: ops.attention_forward(q, k, v, 0.3, np.random.default_rng(0), True),
                    attention_backward, inputs, "attention_backward with dropout (p = 0.3, the same mask each call)",
                    grads=["dq", "dk", "dv"], sizes=sizes, hints=hints, expect=expect)
    keep_engine_function(attention_backward, "attention_backward")


# --- solutions ------------------------------------------------------------------------------------

@solution
def softmax_jacobian(probs):
    return np.diag(probs) - np.outer(probs, probs)


@solution
def softmax_backward(dprobs, cache):
    probs, axis = cache
    return probs * (dprobs - (dprobs * probs).sum(axis=axis, keepdims=True))


@solution
def split_heads(x, num_heads):
    B, T, D = x.shape
    return x.reshape(B, T, num_heads, D // num_heads).transpose(0, 2, 1, 3)


@solution
def attention_forward(q, k, v, dropout_p=0.0, rng=None, training=False):
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = q @ k.swapaxes(-1, -2) * scale  # (B, H, T, T)
    probs, _ = ops.softmax_forward(scores, -1)  # each row sums to 1
    dropped, dropout_mask = ops.dropout_forward(probs, dropout_p, rng, training)
    return dropped @ v, AttentionCache(q, k, v, scale, probs, dropout_mask)


@solution
def multi_head_attention(x, q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, o_weight, o_bias, num_heads):
    q = split_heads(x @ q_weight + q_bias, num_heads)  # (B, H, T, d)
    k = split_heads(x @ k_weight + k_bias, num_heads)
    v = split_heads(x @ v_weight + v_bias, num_heads)
    heads, _ = attention_forward(q, k, v)
    B, H, T, d = heads.shape
    merged = heads.transpose(0, 2, 1, 3).reshape(B, T, H * d)
    return merged @ o_weight + o_bias


@solution
def attention_backward(dout, cache):
    q, k, v, scale, probs, dropout_mask = cache
    dropped = probs if dropout_mask is None else probs * dropout_mask
    dv = dropped.swapaxes(-1, -2) @ dout
    dprobs = dout @ v.swapaxes(-1, -2)
    if dropout_mask is not None:
        dprobs = dprobs * dropout_mask
    dscores = softmax_backward(dprobs, (probs, -1)) * scale
    dq = dscores @ k
    dk = dscores.swapaxes(-1, -2) @ q
    return dq, dk, dv


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""For `cifar-tiny`: $T = 65$, $D = 192$, 3 heads of $d = 64$. Attention's two products cost
    about $2 T^2 D = 2 \cdot 65^2 \cdot 192 \approx 1.6$ M multiply-adds per image and layer; the
    four projections $4 T D^2 \approx 9.6$ M and the MLP $8 T D^2 \approx 19$ M. Per head, $T^2 d$
    against one projection's $T D d$ (its share of $T D^2$) flips at $T = D$; but a layer has
    $12 T D^2$ of linear work against attention's $2 T^2 D$, so attention dominates the layer only
    beyond $T = 6D \approx 1{,}150$ tokens for $D = 192$. A patch size of 2 on CIFAR-10
    ($T = 257$) does not get there; high-resolution images with small patches do.""",
    r"""The Jacobian of a softmax over $T$ entries is $T \times T$ per row, and only its product
    with $g$ is needed: $y \odot (g - \langle g, y\rangle)$ costs $O(T)$ per row instead of
    $O(T^2)$ to build and $O(T^2)$ to multiply. One `cifar-tiny` layer at batch 128 has
    $128 \cdot 3 \cdot 65 = 24{,}960$ rows, so the Jacobians would be
    $24{,}960 \cdot 65^2 \cdot 4$ bytes $\approx 422$ MB per layer, against
    $24{,}960 \cdot 65 \cdot 4$ bytes $\approx 6.5$ MB for the probabilities themselves.""",
    r"""$P$ does not change: the softmax is invariant to adding a constant to a row. A bias of the
    key projection adds $\langle q_i, b_k \rangle$ to every score of row $i$ (the same for every
    key $j$), so it changes nothing and its gradient is exactly zero. The gradient checks see
    gradients of zero, measured as finite-difference noise, which is why they count elements
    below the noise floor separately.""",
]
