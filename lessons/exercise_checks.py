"""One check per exercise, the cell under each exercise calls it: ``check_<exercise>(your_function)``.

Each builds small float64 inputs, computes the expected answer independently of
lessons/solutions.py (finite differences, or the engine's reference ops), and compares with the
diagnosing checks of ``checks``: shape first, then values, naming the usual mistakes. Exercises
that write one of the engine's operations are kept when they pass (``lesson_support.remember``),
so later lessons run the engine on them. tests/test_lesson_checks.py feeds every check a set of
deliberately wrong answers and asserts that the hint names the mistake.
"""

from __future__ import annotations

import math
import time

import numpy as np
from checks import (
    NotYet,
    check_array,
    check_count,
    check_curve,
    check_gradients,
    check_true,
    check_value,
    diagnose,
    numerical_gradient,
)


def _remember(function, name):
    """Probe an engine function as use_mine will (shapes on every probe input, and not the engine's
    own function under another name), then keep it for the later lessons."""
    from lesson_support import probe_engine_function, remember

    problem = probe_engine_function(name, function)
    if problem:
        raise NotYet(f"{name} can run inside the engine", [f"your {name}: {problem}"])
    remember(function, name)


def _distinct(shape, seed=0):
    """Distinct values (a shuffled range, scaled), so a reordering shows as a reordering."""
    values = np.random.default_rng(seed).permutation(math.prod(shape)).astype(np.float64)
    return (values / values.size - 0.5).reshape(shape)


def _pair(returned, what: str, names: str):
    if not isinstance(returned, tuple) or len(returned) != 2:
        count = len(returned) if isinstance(returned, tuple) else 1
        raise NotYet(what, [f"your function returned {count} value(s): expected two, ({names})"])
    return returned


# --- lesson 1 -------------------------------------------------------------------------------------

def check_patches_by_reshape(patches_by_reshape) -> None:
    from minivit import ops

    for shape, P in (((2, 3, 8, 8), 4), ((1, 2, 6, 6), 2)):
        x = _distinct(shape)
        B, C, H, W = shape
        grid = x.reshape(B, C, H // P, P, W // P, P)
        mistakes = {
            "a reshape without the transpose (the numbers of one patch are not next to each other in memory)":
                x.reshape(B, (H // P) * (W // P), C * P * P),
            "the transpose (0, 2, 4, 3, 5, 1), channels last inside each patch (expected (C, P, P))":
                grid.transpose(0, 2, 4, 3, 5, 1).reshape(B, -1, C * P * P),
            "the transpose (0, 4, 2, 1, 3, 5), the grid walked column by column (expected row by row)":
                grid.transpose(0, 4, 2, 1, 3, 5).reshape(B, -1, C * P * P),
        }
        yours = patches_by_reshape(x.copy(), P)
        check_array(yours, ops.im2col(x, P), f"patches_by_reshape, {shape} images, patch {P}", "patches",
                    mistakes=mistakes, sizes={"the patch size P": P, "the channels C": C})


# --- lesson 2 -------------------------------------------------------------------------------------

def check_linear_backward(linear_backward) -> None:
    """linear_backward(dout, cache) with the engine's cache (x, weight, has_bias)."""
    from minivit import ops

    rng = np.random.default_rng(0)
    B, N, K, D = 3, 4, 6, 5
    inputs = {"x": rng.standard_normal((B, N, K)), "weight": rng.standard_normal((K, D)),
              "bias": rng.standard_normal(D)}
    sizes = {"the batch size B": B, "the number of patches N": N, "the number of rows B*N": B * N}
    check_gradients(ops.linear_forward, linear_backward, inputs,
                    "linear_backward against finite differences", grads=["dx", "dweight", "dbias"], sizes=sizes)
    # The classifier head calls the same function on 2-D input (B, D): an answer written for 3-D only
    # (an einsum over "bnk", a sum over axes (0, 1)) must fail here, not later inside the model.
    rows = {"x": rng.standard_normal((7, K)), "weight": rng.standard_normal((K, D)), "bias": rng.standard_normal(D)}
    what = "linear_backward on 2-D input x (B, K), as the classifier head calls it"
    try:
        check_gradients(ops.linear_forward, linear_backward, rows, what, grads=["dx", "dweight", "dbias"],
                        sizes={"the number of rows B": 7})
    except NotYet:
        raise
    except Exception as error:  # noqa: BLE001 (an answer written for 3-D arrays)
        raise NotYet(what, [f"your function raised {type(error).__name__}: {error}",
                            "it works on (B, N, K) but not on (B, K): flatten every leading axis with "
                            "x.reshape(-1, K) instead of naming them"]) from None
    out, cache = ops.linear_forward(inputs["x"], inputs["weight"], None)
    returned = linear_backward(np.ones_like(out), cache)
    dbias = returned[2] if isinstance(returned, tuple) and len(returned) == 3 else "?"
    check_true(dbias is None, "without a bias (has_bias False), dbias is None",
               yours=None if dbias is None else f"an array of shape {np.shape(dbias)}", expected=None,
               hint="The engine adds nothing to a parameter that does not exist: return None for dbias.")
    _remember(linear_backward, "linear_backward")


def check_col2im_by_loops(col2im_by_loops) -> None:
    from minivit import ops

    rng = np.random.default_rng(1)
    for shape, P, stride in (((2, 3, 8, 8), 4, 4), ((2, 3, 10, 10), 4, 2)):
        dcols = rng.standard_normal(ops.im2col(np.zeros(shape), P, stride).shape)
        expected = ops.col2im(dcols, shape, P, stride)
        copies = ops.col2im(np.ones_like(dcols), shape, P, stride)
        grid = (shape[2] - P) // stride + 1
        assigned = np.zeros(shape)  # the slip: = instead of +=
        for r in range(grid):
            for c in range(grid):
                window = (slice(None), slice(None), slice(r * stride, r * stride + P),
                          slice(c * stride, c * stride + P))
                assigned[window] = dcols[:, r * grid + c].reshape(shape[0], shape[1], P, P)
        yours = col2im_by_loops(dcols, shape, P, stride)
        check_array(yours, expected, f"col2im_by_loops, patch {P}, stride {stride}", "dx",
                    mistakes={"assigning each window (dx[...] = ...) instead of adding to it (+=)": assigned},
                    regions={"where patches overlap (pixels with more than one copy): each copy's gradient "
                             "must be added": copies > 1})


# --- lesson 3 -------------------------------------------------------------------------------------

def check_cls_concat_backward(cls_concat_backward) -> None:
    from minivit import ops

    rng = np.random.default_rng(2)
    inputs = {"patch_embeddings": rng.standard_normal((3, 4, 5)), "cls_token": rng.standard_normal((1, 1, 5))}
    def hints(dout, cache):
        return {"dpatch_embeddings": {"mistakes": {
                    "the slice dout[:, :-1] (the CLS token is row 0: the patches are rows 1 to N, dout[:, 1:])":
                    dout[:, :-1]}},
                "dcls_token": {"mistakes": {
                    "the CLS gradient taken from the last token (dout[:, -1:]); the CLS token is row 0":
                    dout[:, -1:].sum(axis=0, keepdims=True),
                    "the CLS gradient taken from row 1 (the first patch); the CLS token is row 0":
                    dout[:, 1:2].sum(axis=0, keepdims=True)}}}

    check_gradients(ops.cls_concat_forward, cls_concat_backward, inputs,
                    "cls_concat_backward against finite differences",
                    grads=["dpatch_embeddings", "dcls_token"], hints=hints,
                    sizes={"the batch size B": 3, "the number of patches N": 4})
    _remember(cls_concat_backward, "cls_concat_backward")


# --- lesson 4 -------------------------------------------------------------------------------------

def _softmax(scores, axis=-1):
    exps = np.exp(scores - scores.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def check_softmax_jacobian(softmax_jacobian) -> None:
    """A checkpoint: the (T, T) Jacobian dy_i/ds_j of one row, against finite differences."""
    scores = np.random.default_rng(3).standard_normal(5)
    probs = _softmax(scores)
    numeric = np.stack([numerical_gradient(lambda i=i: _softmax(scores)[i], scores) for i in range(5)])
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
    _remember(softmax_backward, "softmax_backward")


def check_split_heads(split_heads) -> None:
    from minivit import ops

    x = _distinct((2, 5, 6))
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
    probs = {name: _softmax(s) for name, s in variants.items()}
    probs["the softmax over axis -2 (down the columns) instead of the last axis (along each row)"] = \
        _softmax(scores / math.sqrt(d), axis=-2)
    return probs


def check_attention_forward(attention_forward) -> None:
    """attention_forward(q, k, v, dropout_p, rng, training) -> (out, AttentionCache), as the engine's."""
    from minivit import ops

    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((2, 2, 5, 9)) for _ in range(3))
    what = "attention_forward: out and the cache"
    out, cache = _pair(attention_forward(q, k, v), what, "out, cache")
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
    yours_dropped, yours_cache = _pair(attention_forward(q, k, v, 0.5, np.random.default_rng(7), True),
                                       what, "out, cache")
    check_array(yours_dropped, dropped,
                "with dropout (p = 0.5, training): the same mask as the engine's dropout_forward",
                "out", mistakes={"dropout left out in training": expected_out})
    check_true(yours_cache.dropout_mask is not None and yours_cache.probs is not None
               and np.allclose(yours_cache.probs, dropped_cache.probs),
               "with dropout, the cache keeps the probabilities before dropout, and the mask",
               hint="Keep P itself in the cache (plots show it) and the mask dropout_forward returned.")
    _remember(attention_forward, "attention_forward")


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
    _remember(attention_backward, "attention_backward")


# --- lesson 5 -------------------------------------------------------------------------------------

LAYERNORM_STAGES = ("dgamma", "dbeta", "dxhat", "dvar", "dmean", "dx")


def check_layernorm_stages(layernorm_backward_by_graph) -> None:
    """CS231n's batchnorm checkpoints, for LayerNorm: each stage of the graph's backward, in order."""
    rng = np.random.default_rng(9)
    x, gamma, beta = rng.standard_normal((2, 3, 5)) * 2 + 1, rng.standard_normal(5), rng.standard_normal(5)
    eps = 1e-5
    dout = rng.standard_normal(x.shape)
    D = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)

    def by_nodes(mu_node, var_node):  # the graph with mu and var as nodes of their own
        return np.sum(dout * (gamma * (x - mu_node) / np.sqrt(var_node + eps) + beta))

    def full():
        m = x.mean(axis=-1, keepdims=True)
        return np.sum(dout * (gamma * (x - m) / np.sqrt(((x - m) ** 2).mean(axis=-1, keepdims=True) + eps) + beta))

    dxhat = dout * gamma
    dvar = numerical_gradient(lambda: by_nodes(mu, var_node), var_node := var.copy())
    dmean = numerical_gradient(lambda: by_nodes(mu_node, var), mu_node := mu.copy())
    expected = {
        "dgamma": (dout * (x - mu) * rstd).sum(axis=(0, 1)),
        "dbeta": dout.sum(axis=(0, 1)),
        "dxhat": dxhat,
        "dvar": dvar,
        "dmean": dmean,
        "dx": numerical_gradient(full, x_node := x),
    }
    assert x_node is x
    hints = {
        "dgamma": {"sizes": {"the batch size B": 2, "the tokens per image T": 3}},
        "dbeta": {"sizes": {"the batch size B": 2, "the tokens per image T": 3, "the rows B*T": 6}},
        "dxhat": {"mistakes": {"dout alone (gamma left out: out = gamma * xhat + beta)": dout}},
        "dvar": {"mistakes": {"the exponent -1/2 instead of -3/2 (d/dvar of (var + eps)^(-1/2) is "
                              "-1/2 (var + eps)^(-3/2))": (dxhat * (x - mu)).sum(-1, keepdims=True) * -0.5 * rstd,
                              "no sum over the row (var is one number per row; every x_i uses it)":
                              dxhat * (x - mu) * -0.5 * rstd**3},
                 "sizes": {"D, the features per row": D}},
        "dmean": {"sizes": {"D, the features per row": D},
                  "mistakes": {"no sum over the row (mu is one number per row)": -dxhat * rstd}},
        "dx": {"terms": {"the path through the variance, dvar * 2 (x - mu) / D": dvar * 2 * (x - mu) / D,
                         "the path through the mean, dmean / D": dmean / D,
                         "the direct path, dxhat * rstd": dxhat * rstd},
               "sizes": {"D, the features per row": D}},
    }
    what = "LayerNorm's backward, stage by stage"
    stages = layernorm_backward_by_graph(dout.copy(), x.copy(), gamma.copy(), eps)
    if not isinstance(stages, dict):
        raise NotYet(what, [f"your function returned a {type(stages).__name__}: expected the dict of stages "
                            f"{', '.join(LAYERNORM_STAGES)}"])
    for stage in LAYERNORM_STAGES:
        if stages.get(stage) is None:
            raise NotYet(f"{what}: {stage}", [f"{stage} is not written yet (None). The stages before it are right; "
                                              "open the hints above for this one."])
        lines = diagnose(stages[stage], expected[stage], stage, rtol=1e-6, **hints.get(stage, {}))
        if lines:
            raise NotYet(f"{what}: {stage}", lines)
        print(f"PASS: {stage} (largest difference {np.max(np.abs(stages[stage] - expected[stage])):.1e})")


def check_layernorm_backward(layernorm_backward) -> None:
    """layernorm_backward(dout, cache) with the engine's cache (xhat, rstd, gamma)."""
    from minivit import ops

    rng = np.random.default_rng(10)
    inputs = {"x": rng.standard_normal((2, 3, 5)) * 2 + 1, "gamma": rng.standard_normal(5),
              "beta": rng.standard_normal(5)}

    def hints(dout, cache):
        xhat, rstd, gamma = cache
        dxhat = dout * gamma
        plain = dout
        return {"dx": {"terms": {"the mean term -rstd * mean(dxhat)": -rstd * dxhat.mean(-1, keepdims=True),
                                 "the variance term -rstd * xhat * mean(dxhat * xhat)":
                                 -rstd * xhat * (dxhat * xhat).mean(-1, keepdims=True)},
                       "mistakes": {"dout in place of dxhat = dout * gamma":
                                    rstd * (plain - plain.mean(-1, keepdims=True)
                                            - xhat * (plain * xhat).mean(-1, keepdims=True))}}}

    check_gradients(lambda x, gamma, beta: ops.layernorm_forward(x, gamma, beta, 1e-5), layernorm_backward,
                    inputs, "layernorm_backward against finite differences", grads=["dx", "dgamma", "dbeta"],
                    hints=hints, sizes={"the batch size B": 2, "the tokens per image T": 3, "the rows B*T": 6})
    _remember(layernorm_backward, "layernorm_backward")


# The whole encoder layer's backward, node by node, in the order the gradient reaches them.
LAYER_STAGES = ("dfc2_weight", "dfc2_bias", "dgelu_out", "dfc1_out", "dfc1_weight", "dfc1_bias", "dln2_out",
                "dln2_gamma", "dln2_beta", "dh", "do_weight", "do_bias", "dcontext", "dq", "dk", "dv", "dqkv",
                "dqkv_weight", "dqkv_bias", "dln1_out", "dln1_gamma", "dln1_beta", "dx")


def layer_parameters(D, M, seed=16):
    """The parameters of one pre-norm encoder layer, by the names encoder_layer_forward reads (float64)."""
    rng = np.random.default_rng(seed)
    return {"ln1_gamma": 1 + 0.3 * rng.standard_normal(D), "ln1_beta": 0.3 * rng.standard_normal(D),
            "qkv_weight": rng.standard_normal((D, 3 * D)) / math.sqrt(D), "qkv_bias": 0.3 * rng.standard_normal(3 * D),
            "o_weight": rng.standard_normal((D, D)) / math.sqrt(D), "o_bias": 0.3 * rng.standard_normal(D),
            "ln2_gamma": 1 + 0.3 * rng.standard_normal(D), "ln2_beta": 0.3 * rng.standard_normal(D),
            "fc1_weight": rng.standard_normal((D, M)) / math.sqrt(D), "fc1_bias": 0.3 * rng.standard_normal(M),
            "fc2_weight": rng.standard_normal((M, D)) / math.sqrt(M), "fc2_bias": 0.3 * rng.standard_normal(D)}


def encoder_layer_forward(x, params, num_heads, eps=1e-12):
    """One pre-norm encoder layer, as the engine's ViTLayer computes it (no dropout), from the ops:

        h   = x + o_proj(attention(split(qkv(LN1(x)))))      the first residual fork
        out = h + fc2(gelu(fc1(LN2(h))))                      the second

    Returns (out, cache): the cache holds each op's own cache, by node, and what the backward needs
    to split and merge the packed q/k/v."""
    from minivit import ops

    D = x.shape[-1]
    ln1_out, ln1 = ops.layernorm_forward(x, params["ln1_gamma"], params["ln1_beta"], eps)
    qkv_out, qkv = ops.linear_forward(ln1_out, params["qkv_weight"], params["qkv_bias"])  # (B, T, 3D) packed
    q, k, v = (ops.split_heads(qkv_out[..., i * D:(i + 1) * D], num_heads) for i in range(3))  # (B, H, T, d)
    context, attention = ops.attention_forward(q, k, v)  # (B, H, T, d)
    attention_out, o = ops.linear_forward(ops.merge_heads(context), params["o_weight"], params["o_bias"])
    h = x + attention_out
    ln2_out, ln2 = ops.layernorm_forward(h, params["ln2_gamma"], params["ln2_beta"], eps)
    fc1_out, fc1 = ops.linear_forward(ln2_out, params["fc1_weight"], params["fc1_bias"])  # (B, T, M)
    gelu_out, gelu = ops.gelu_forward(fc1_out)
    mlp_out, fc2 = ops.linear_forward(gelu_out, params["fc2_weight"], params["fc2_bias"])
    cache = {"ln1": ln1, "qkv": qkv, "attention": attention, "o": o, "ln2": ln2, "fc1": fc1, "gelu": gelu,
             "fc2": fc2, "num_heads": num_heads}
    return h + mlp_out, cache


def _layer_gradients(dout, cache):
    """The expected gradient at every node, composed from the engine's reference ops."""
    from minivit import ops

    g = {}
    g["dgelu_out"], g["dfc2_weight"], g["dfc2_bias"] = ops.linear_backward(dout, cache["fc2"])
    g["dfc1_out"] = ops.gelu_backward(g["dgelu_out"], cache["gelu"])
    g["dln2_out"], g["dfc1_weight"], g["dfc1_bias"] = ops.linear_backward(g["dfc1_out"], cache["fc1"])
    dbranch, g["dln2_gamma"], g["dln2_beta"] = ops.layernorm_backward(g["dln2_out"], cache["ln2"])
    g["dh"] = dout + dbranch
    dmerged, g["do_weight"], g["do_bias"] = ops.linear_backward(g["dh"], cache["o"])
    g["dcontext"] = ops.split_heads(dmerged, cache["num_heads"])
    g["dq"], g["dk"], g["dv"] = ops.attention_backward(g["dcontext"], cache["attention"])
    g["dqkv"] = np.concatenate([ops.merge_heads(g[name]) for name in ("dq", "dk", "dv")], axis=-1)
    g["dln1_out"], g["dqkv_weight"], g["dqkv_bias"] = ops.linear_backward(g["dqkv"], cache["qkv"])
    dbranch, g["dln1_gamma"], g["dln1_beta"] = ops.layernorm_backward(g["dln1_out"], cache["ln1"])
    g["dx"] = g["dh"] + dbranch
    return g, {"dh_branch": g["dh"] - dout, "dx_branch": dbranch}


def check_encoder_layer_backward(encoder_layer_backward) -> None:
    """The learner's whole-layer backward, stage by stage (each node's gradient, in the order the
    gradient reaches it), then the input's gradient against finite differences of the whole layer."""
    from minivit import ops

    B, T, D, M, H = 2, 5, 6, 10, 2
    rng = np.random.default_rng(17)
    x = rng.standard_normal((B, T, D))
    params = layer_parameters(D, M)
    out, cache = encoder_layer_forward(x, params, H)
    dout = rng.standard_normal(out.shape)
    expected, branches = _layer_gradients(dout, cache)
    sizes = {"the batch size B": B, "the tokens T": T, "the rows B*T": B * T, "the heads H": H}
    packed_wrongly = np.concatenate([ops.merge_heads(expected[n]) for n in ("dk", "dq", "dv")], axis=-1)
    plain = np.concatenate([expected[n].reshape(B, T, D) for n in ("dq", "dk", "dv")], axis=-1)
    hints = {
        "dfc1_out": {"mistakes": {"dgelu_out without GELU's derivative (gelu_backward left out)":
                                  expected["dgelu_out"]}},
        "dh": {"mistakes": {"the MLP branch's gradient only: at the fork h -> (h, MLP(LN2(h))) the gradients of "
                            "both paths add, and the skip path brings dout itself": branches["dh_branch"],
                            "dout only (the skip path): the MLP branch's gradient, through LN2, must be added":
                            dout}},
        "dx": {"mistakes": {"the attention branch's gradient only: the skip path brings dh, and the two add":
                            branches["dx_branch"],
                            "dh only (the skip path): the attention branch's gradient, through LN1, must be added":
                            expected["dh"]}},
        "dqkv": {"mistakes": {"q, k, v packed in another order (the forward slices q, then k, then v)": packed_wrongly,
                              "heads merged with a plain reshape (no transpose back to (B, T, H, d))": plain}},
        "dcontext": {"mistakes": {"a plain reshape into heads (no transpose)":
                                  ops.linear_backward(expected["dh"], cache["o"])[0].reshape(B, H, T, D // H)}},
    }
    what = "the encoder layer's backward, node by node"
    stages = encoder_layer_backward(dout.copy(), cache)
    if not isinstance(stages, dict):
        raise NotYet(what, [f"your function returned a {type(stages).__name__}: expected the dict of every node's "
                            f"gradient ({', '.join(LAYER_STAGES)})"])
    for stage in LAYER_STAGES:
        if stages.get(stage) is None:
            raise NotYet(f"{what}: {stage}", [f"{stage} is not written yet (None). Every node before it is right; "
                                              "the gradient reaches this one next."])
        lines = diagnose(stages[stage], expected[stage], stage, rtol=1e-9, sizes=sizes, **hints.get(stage, {}))
        if lines:
            raise NotYet(f"{what}: {stage}", lines)
    print(f"PASS: {what}: all {len(LAYER_STAGES)} nodes, from dfc2_weight to dx (largest difference "
          f"{max(float(np.max(np.abs(stages[s] - expected[s]))) for s in LAYER_STAGES):.1e})")

    def whole(node=x):
        return np.sum(encoder_layer_forward(node, params, H)[0] * dout)

    numeric = numerical_gradient(whole, x)
    check_array(stages["dx"], numeric, "dx against finite differences of the whole layer", "dx", rtol=1e-7)


# --- lesson 6 -------------------------------------------------------------------------------------

def _layer_parameters(D, M, qkv_bias):
    import minivit

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=D, num_hidden_layers=1,
                               num_attention_heads=1, intermediate_size=M, qkv_bias=qkv_bias, num_labels=2)
    model = minivit.ViTForImageClassification(config)
    return sum(p.data.size for name, p in model.named_parameters() if name.startswith("encoder"))


def check_parameters_per_layer(parameters_per_layer) -> None:
    for D, M, qkv_bias in ((192, 768, True), (12, 20, False)):
        parts = {"the q/k/v biases (3D)": 3 * D, "the output projection's bias (D)": D,
                 "the two LayerNorms' gains and biases (4D)": 4 * D, "one LayerNorm (2D)": 2 * D,
                 "the MLP's two biases (M + D)": M + D, "the first MLP bias (M)": M,
                 "one D x D projection (D^2)": D * D, "one MLP matrix (D M)": D * M}
        check_count(parameters_per_layer(D, M, qkv_bias=qkv_bias),
                    _layer_parameters(D, M, qkv_bias),
                    f"one encoder layer, D = {D}, M = {M}, {'with' if qkv_bias else 'without'} q/k/v biases",
                    parts=parts)


def _smoothed_targets(labels, K, eps, *, others_only=False):
    onehot = np.eye(K)[labels]
    if others_only:  # eps spread over the K - 1 wrong classes, the true one at 1 - eps
        return (1 - eps) * onehot + eps / (K - 1) * (1 - onehot)
    return (1 - eps) * onehot + eps / K


def check_cross_entropy_forward(cross_entropy_forward) -> None:
    """cross_entropy_forward(logits, targets, label_smoothing) -> (loss, (log_probs, q)), the engine's
    cache: log-softmax by log-sum-exp, q the (smoothed) target distribution, the loss a mean over the batch."""
    from minivit import ops

    rng = np.random.default_rng(14)
    B, K = 4, 5
    labels = np.array([0, 3, 1, 4])
    sizes = {"the batch size B": B, "the number of classes K": K}
    for eps in (0.0, 0.1):
        logits = rng.standard_normal((B, K)) * 2
        what = f"cross_entropy_forward, {B} images, {K} classes, label_smoothing {eps}"
        loss, cache = _pair(cross_entropy_forward(logits.copy(), labels.copy(), eps), what, "loss, cache")
        expected_loss, (expected_log_probs, expected_q) = ops.cross_entropy_forward(logits, labels, eps)
        log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        mistakes = {"the mean over the classes too (a mean of B*K numbers; the loss sums over the classes)":
                    float(expected_loss) / K}
        if eps:
            mistakes["smoothing spread as eps/(K-1) over the wrong classes only (minivit and PyTorch use "
                     "q = (1 - eps) onehot + eps/K: every class gets eps/K, the true one included)"] = \
                -float((_smoothed_targets(labels, K, eps, others_only=True) * log_softmax).sum()) / B
            mistakes["no label smoothing (eps ignored)"] = float(ops.cross_entropy_forward(logits, labels)[0])
        check_value(np.asarray(loss).item() if np.ndim(loss) == 0 else loss, float(expected_loss),
                    f"{what}: the loss", rtol=1e-9, sizes=sizes, mistakes=mistakes)
        if not isinstance(cache, tuple) or len(cache) != 2:
            raise NotYet(what, ["the cache is the engine's (log_probs, q): the log-probabilities (B, K) and the "
                                "target distribution (B, K); cross_entropy_backward reads it"])
        check_array(cache[0], expected_log_probs, f"{what}: log_probs in the cache", "log_probs",
                    mistakes={"the probabilities instead of their log": np.exp(expected_log_probs)})
        check_array(cache[1], expected_q, f"{what}: q, the target distribution in the cache", "q",
                    mistakes={"eps/(K-1) over the wrong classes only":
                              _smoothed_targets(labels, K, eps, others_only=True)} if eps else None)
    what = "cross_entropy_forward on logits near 1000 (a confident model's): no overflow"
    large = rng.standard_normal((B, K)) * 3 + 1000
    loss, _ = _pair(cross_entropy_forward(large.copy(), labels.copy(), 0.0), what, "loss, cache")
    if not np.isfinite(float(np.asarray(loss))):
        raise NotYet(what, [f"yours is {float(np.asarray(loss))}: exp(1000) overflows float64 (its largest is "
                            "about exp(709)). Subtract each row's largest logit before the exp: log softmax(z) = "
                            "(z - m) - log sum exp(z - m), the same for every m (log-sum-exp)"])
    check_value(float(np.asarray(loss)), float(ops.cross_entropy_forward(large, labels)[0]), what, rtol=1e-9)
    _remember(cross_entropy_forward, "cross_entropy_forward")


def check_cross_entropy_backward(cross_entropy_backward) -> None:
    """cross_entropy_backward(dloss, cache) -> dlogits = (softmax(logits) - q) dloss / B, against finite
    differences of the engine's loss."""
    from minivit import ops

    rng = np.random.default_rng(15)
    B, K = 4, 5
    labels = np.array([2, 0, 4, 4])
    for eps in (0.0, 0.1):
        logits = rng.standard_normal((B, K))
        loss, cache = ops.cross_entropy_forward(logits, labels, eps)
        log_probs, q = cache
        probs = np.exp(log_probs)
        node = logits.copy()
        numeric = numerical_gradient(
            lambda node=node, eps=eps: float(ops.cross_entropy_forward(node, labels, eps)[0]) * 0.7, node)
        yours = cross_entropy_backward(0.7, (log_probs.copy(), q.copy()))
        onehot = np.eye(K)[labels]
        mistakes = {"onehot(y) - p, the sign flipped": 0.7 * (onehot - probs) / B if not eps else 0.7 * (q - probs) / B,
                    "dloss left out (the upstream gradient multiplies everything)": (probs - q) / B,
                    "log_probs - q, the log-probabilities where the probabilities belong": 0.7 * (log_probs - q) / B}
        if eps:
            mistakes["p - onehot(y): the smoothed targets q are what the loss compares with"] = \
                0.7 * (probs - onehot) / B
        check_array(yours, numeric, f"cross_entropy_backward, dloss 0.7, label_smoothing {eps}, "
                    "against finite differences", "dlogits", rtol=1e-7, mistakes=mistakes,
                    sizes={"the batch size B": B, "the number of classes K": K})
    _remember(cross_entropy_backward, "cross_entropy_backward")


# --- lesson 7 -------------------------------------------------------------------------------------

def check_init_std(init_std) -> None:
    for fan_in in (16, 192, 768):
        check_value(init_std(fan_in), 1 / math.sqrt(fan_in),
                    f"init_std({fan_in}): Var(y) = Var(x) for y = x W with fan_in = {fan_in}", rtol=1e-9,
                    mistakes={"1/fan_in (that is the variance of W; the function returns its standard deviation)":
                              1 / fan_in,
                              "sqrt(2 / fan_in), Kaiming's choice for ReLU (a ReLU zeroes half the input; a "
                              "linear layer keeps all of it)": math.sqrt(2 / fan_in),
                              "1/sqrt(fan_in) squared twice": fan_in ** -0.25})


def check_bias_correction(bias_correction) -> None:
    steps = np.arange(1, 41)
    for beta in (0.9, 0.999):
        yours = [bias_correction(int(t), beta) for t in steps]
        check_curve(steps, yours, 1 - beta**steps, f"bias_correction(t, {beta}) = E[m_t] / E[g]",
                    ylabel="correction factor", xlabel="step",
                    mistakes={"beta^t (the weight of the zero start, not of the gradients)": beta**steps,
                              "1 - beta^(t - 1) (steps counted from 0?)": 1 - beta ** (steps - 1),
                              "1 - beta (the first step's weight at every step)": np.full(steps.shape, 1 - beta)},
                    plot=beta == 0.9)


def adamw_reference(param, grads, lr, beta1, beta2, eps, weight_decay, *, bias_correction=True,
                    coupled=False, decay_times_lr=True, eps_inside=False, sqrt_correction=True,
                    correct_v=True, decay_after=False):
    """AdamW as torch.optim.AdamW computes it, and the usual slips as options: the parameters after
    each step, stacked."""
    p = param.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    history = []
    for t, g in enumerate(grads, 1):
        decay = 1 - (lr * weight_decay if decay_times_lr else weight_decay)
        if coupled:
            g = g + weight_decay * p
        elif not decay_after:
            p = p * decay
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t) if bias_correction else m
        v_hat = v / (1 - beta2**t) if bias_correction and correct_v else v
        if not sqrt_correction:
            v_hat = v / (1 - beta2**t) ** 2
        denominator = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
        p = p - lr * m_hat / denominator
        if decay_after and not coupled:
            p = p * decay
        history.append(p)
    return np.stack(history), m, v


def check_adamw_step(adamw_step) -> None:
    """adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)
    -> (param, exp_avg, exp_avg_sq), against minivit.optim.AdamW over six steps."""
    from minivit import backend, optim
    from minivit.nn import Parameter

    rng = np.random.default_rng(11)
    lr, beta1, beta2, eps, weight_decay = 0.01, 0.9, 0.999, 1e-8, 0.1
    param = rng.standard_normal((4, 3))
    scales = np.array([1.0, 1.0, 1e-4])  # a column of tiny gradients: there eps matters
    grads = [rng.standard_normal((4, 3)) * scales for _ in range(6)]

    engine = Parameter(backend.asarray(param.copy()))
    optimizer = optim.AdamW([("layer.weight", engine)], lr=lr, betas=(beta1, beta2), eps=eps,
                            weight_decay=weight_decay)
    expected = []
    for g in grads:
        engine.grad[...] = backend.asarray(g)
        optimizer.step()
        expected.append(backend.to_numpy(engine.data).copy())
    expected = np.stack(expected)

    yours, m, v = [], np.zeros_like(param), np.zeros_like(param)
    p = param.copy()
    what = "adamw_step against minivit.optim.AdamW, six steps"
    for t, g in enumerate(grads, 1):
        returned = adamw_step(p, g.copy(), m, v, t, lr, beta1, beta2, eps, weight_decay)
        if not isinstance(returned, tuple) or len(returned) != 3:
            raise NotYet(what, ["return (param, exp_avg, exp_avg_sq), the new values of all three"])
        p, m, v = (np.array(a, dtype=np.float64) for a in returned)
        if p.shape != param.shape:
            raise NotYet(what, [f"after step {t}: " + diagnose(p, expected[t - 1], "param")[0]])
        yours.append(p.copy())
    yours = np.stack(yours)
    options = {
        "Adam without bias correction": dict(bias_correction=False),
        "weight decay added to the gradient (Adam with L2, not AdamW's decoupled decay)": dict(coupled=True),
        "decaying by weight_decay instead of lr * weight_decay": dict(decay_times_lr=False),
        "eps inside the square root": dict(eps_inside=True),
        "bias correction on m only (v_hat = v / (1 - beta2^t) is missing)": dict(correct_v=False),
        "the weight decay applied after the Adam step (AdamW decays the parameter the step starts from: "
        "param * (1 - lr * weight_decay) first)": dict(decay_after=True),
        "dividing v by (1 - beta2^t)^2, i.e. correcting sqrt(v) by (1 - beta2^t) instead of its square root":
            dict(sqrt_correction=False),
    }
    variants = {name: adamw_reference(param, grads, lr, beta1, beta2, eps, weight_decay, **option)[0]
                for name, option in options.items()}
    variants["no weight decay at all"] = adamw_reference(param, grads, lr, beta1, beta2, eps, 0.0)[0]
    lines = diagnose(yours, expected, "params after each step", mistakes=variants, rtol=1e-7)
    if lines:
        first = int(np.argmax(np.abs(yours - expected).reshape(len(grads), -1).max(axis=1)
                              > 1e-7 * np.abs(expected).max()))
        raise NotYet(what, [f"your parameters part from AdamW's at step {first + 1}"] + lines)
    check_array(yours, expected, what, "params after each step", rtol=1e-7)


def check_numerical_gradient(numerical_gradient) -> None:
    """The learner's centred difference against minivit.gradcheck's 3-point stencil, on 2-D and 3-D
    inputs, x unchanged afterwards."""
    from minivit import gradcheck

    h = 1e-5
    for shape in ((3, 4), (2, 3, 4)):
        x = _distinct(shape, seed=len(shape)) * 3
        weights = np.random.default_rng(len(shape)).standard_normal(shape)

        def f(x=x, weights=weights):
            return float(np.sum(np.sin(x) * weights + 0.5 * x**3))

        original = x.copy()
        expected = gradcheck.numerical_gradient(f, x, h=h, stencil=3)
        what = f"numerical_gradient on a {len(shape)}-D x {shape}, h = {h}, against minivit.gradcheck's 3-point stencil"
        yours = numerical_gradient(f, x, h)
        if not np.array_equal(x, original):
            raise NotYet(what, ["x changed: put each element back after perturbing it (x[i] = original) -- the "
                                "function reads x, and every later difference would start from a wrong point"])
        forward_difference = np.zeros_like(x)
        f_x = f()
        for index in np.ndindex(shape):
            saved = x[index]
            x[index] = saved + h
            forward_difference[index] = (f() - f_x) / h
            x[index] = saved
        exact = np.cos(x) * weights + 1.5 * x**2
        check_array(yours, expected, what, "numeric", rtol=1e-6,
                    mistakes={"the one-sided difference (f(x + h) - f(x)) / h: error O(h), where the centred one's is "
                              "O(h^2)": forward_difference},
                    sizes={"the 2 of 2h": 2})
        error = float(np.max(np.abs(yours - exact) / np.maximum(1e-8, np.abs(yours) + np.abs(exact))))
        print(f"  against the exact derivative: relative error {error:.1e} (expect about 1e-10 in float64 at h = {h})")


def check_train_step(train_step) -> None:
    """The learner's training step (zero the gradients, forward, loss, backward, update) against the
    engine's, five steps of a tiny ViT in float64."""
    import minivit
    from minivit import dispatch, optim

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=12, num_labels=3, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(18)
    images, labels = rng.standard_normal((6, 3, 8, 8)), rng.integers(0, 3, 6)

    def losses(step_function, steps=5):
        model = minivit.ViTForImageClassification(config, seed=2, dtype="float64").train()
        optimizer = optim.AdamW(model.named_parameters(), lr=1e-2)
        return [float(step_function(model, optimizer, images, labels)) for _ in range(steps)]

    def engine(model, optimizer, images, labels, accumulate=False, step_first=False):
        if not accumulate:
            optimizer.zero_grad()
        if step_first:
            optimizer.step()
        loss, cache = dispatch.cross_entropy_forward(model.forward(images), labels)
        model.backward(dispatch.cross_entropy_backward(1.0, cache))
        if not step_first:
            optimizer.step()
        return loss

    expected = losses(engine)
    what = "train_step: five steps, the losses against the engine's"
    yours = losses(train_step)
    check_curve(np.arange(1, 6), yours, expected, what, ylabel="training loss", rtol=1e-9, plot=False,
                mistakes={"no optimizer.zero_grad(): the gradients of every step add up": losses(
                              lambda *a: engine(*a, accumulate=True)),
                          "optimizer.step() before the backward (each update uses the previous step's gradient)":
                              losses(lambda *a: engine(*a, step_first=True))})


# --- lesson 8 -------------------------------------------------------------------------------------

def check_learning_rate(learning_rate) -> None:
    from minivit import optim

    total, warmup, base, low = 1000, 100, 1e-3, 1e-5
    steps = np.arange(total)
    yours = [learning_rate(int(s), total, warmup, base, low) for s in steps]
    expected = [optim.warmup_cosine(s, total, warmup, base, low) for s in steps]
    progress = np.clip((steps - warmup) / (total - warmup), 0, 1)
    cosine = 0.5 * (1 + np.cos(np.pi * progress))
    warm = steps < warmup
    mistakes = {
        "a warmup from 0 (step / W instead of (step + 1) / W)": np.where(warm, base * steps / warmup, expected),
        "a cosine that ends at 0 instead of min_lr": np.where(warm, expected, base * cosine),
        "a cosine over the whole run (progress step / T instead of (step - W) / (T - W))":
            np.where(warm, expected, low + 0.5 * (base - low) * (1 + np.cos(np.pi * steps / total))),
        "a cosine one step short at the end (progress (step - W) / (T - W - 1): min_lr is reached at step T - 1, "
        "expected one step later, at T)":
            np.where(warm, expected, low + 0.5 * (base - low)
                     * (1 + np.cos(np.pi * np.clip((steps - warmup) / (total - warmup - 1), 0, 1)))),
        "a cosine that falls to min_lr in half the time (cos(2 pi progress)?)":
            np.where(warm, expected, low + 0.5 * (base - low) * (1 + np.cos(2 * np.pi * progress))),
    }
    check_curve(steps, yours, expected, "your schedule against minivit.optim.warmup_cosine",
                ylabel="learning rate", segments={"warmup": (0, warmup), "cosine decay": (warmup, total)},
                mistakes=mistakes, rtol=1e-9)
    what = "with no warmup (warmup_steps = 0) the schedule starts at base_lr"
    try:
        first = learning_rate(0, 100, 0, base, low)
    except ZeroDivisionError:
        raise NotYet(what, ["your schedule divides by zero when warmup_steps = 0: skip the warmup "
                            "branch then"]) from None
    check_value(first, base, what, rtol=1e-9)


# --- lesson 9 -------------------------------------------------------------------------------------

def check_seconds_per_call(seconds_per_call) -> None:
    calls = []

    def sleepy():
        calls.append(time.perf_counter())
        time.sleep(0.02)

    seconds = seconds_per_call(sleepy, repeats=3)
    check_value(len(calls), 4, "one warm-up call, then three timed calls",
                mistakes={"timing without a warm-up call": 3, "timing twice per repeat": 7})
    what = "about 0.02 s per call (the function sleeps 20 ms)"
    if seconds is None or np.ndim(seconds) != 0:
        raise NotYet(what, [f"yours is {seconds!r}: return one number, the median seconds per call"])
    lines = [f"yours {float(seconds):.4f} s, expected about 0.0200 s"]
    if 0.019 < seconds < 0.05:
        print(f"PASS: {what} ({lines[0]})")
        return
    if 0.055 < seconds < 0.3:
        lines.append("that is about three calls' worth: did you return the total instead of the time per call?")
    elif seconds < 0.019:
        lines.append("less than the sleep itself: did you read the clock before the call finished, or divide twice?")
    raise NotYet(what, lines)


def check_gelu_kernel(gelu_kernel_parts) -> None:
    """Compile the learner's GELU ElementwiseKernel with NVRTC (no GPU needed), evaluate its operation
    as host C on 10,001 points against the exact GELU (no GPU needed: the tanh approximation fails
    here), and where a GPU is present, run it there and compare again."""
    what = "your GELU ElementwiseKernel"
    parts = gelu_kernel_parts()
    if not isinstance(parts, dict) or set(parts) != {"in_params", "out_params", "operation", "name"}:
        raise NotYet(what, ["return a dict with in_params, out_params, operation and name (cupy.ElementwiseKernel's "
                            "four arguments)"])
    try:
        from minivit.kernels.nvrtc import CompileError, compile_elementwise
    except ImportError as error:
        print(f"SKIPPED: {what}: this engine has no minivit.kernels.nvrtc ({error}).")
        return
    try:
        compile_elementwise(parts["in_params"], parts["out_params"], parts["operation"], parts["name"])
    except CompileError as error:  # the compiler's log: the learner's CUDA C
        log = [line for line in str(error).splitlines() if line.strip()][:20]
        raise NotYet(f"{what} compiles with NVRTC", log) from None
    except RuntimeError as error:  # no CuPy, or no NVRTC library: nothing to compile with here
        print(f"SKIPPED: {what}: compiling it needs CuPy's NVRTC, which this machine lacks ({error}). "
              "The numerical check against the reference GELU needs a GPU as well.")
        return
    print(f"PASS: {what} compiles with NVRTC (CUDA C checked without a GPU)")
    x = np.linspace(-6, 6, 10001)
    expected = x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    mistakes = {"the tanh approximation (gelu_new), not the exact erf form":
                0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
                "x * erf(x / sqrt 2), without the (1 + ...) / 2": x * np.vectorize(math.erf)(x / math.sqrt(2)),
                "x * Phi(x) with Phi(x) = (1 + erf(x)) / 2, the 1/sqrt(2) left out":
                0.5 * x * (1 + np.vectorize(math.erf)(x))}
    on_host = _elementwise_on_host(parts, x)
    if isinstance(on_host, str):
        print(f"SKIPPED: the numbers of your kernel on this machine's CPU: {on_host}")
    else:
        check_array(on_host, expected, "your kernel's operation, compiled as C for this CPU, equals the exact GELU "
                    "on 10,001 points in [-6, 6]", "gelu(x)", rtol=1e-12, atol=1e-12, mistakes=mistakes)
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if not has_gpu:
        print("SKIPPED: running your kernel on a GPU (this machine has none); its operation's numbers were "
              "checked on the CPU above.")
        return
    kernel = cupy.ElementwiseKernel(parts["in_params"], parts["out_params"], parts["operation"], parts["name"])
    yours = cupy.asnumpy(kernel(cupy.asarray(x)))
    check_array(yours, expected, "your kernel on the GPU equals the exact GELU", "gelu(x)", rtol=1e-12, atol=1e-12,
                mistakes=mistakes)


# What CUDA offers an elementwise operation that the host's C library names otherwise.
_CUDA_ON_HOST = """
#include <math.h>
#ifndef M_SQRT1_2
#define M_SQRT1_2 0.70710678118654752440
#endif
static double normcdf(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }
static float normcdff(float x) { return 0.5f * erfcf(-x * (float)M_SQRT1_2); }
static double rsqrt(double x) { return 1.0 / sqrt(x); }
static float rsqrtf(float x) { return 1.0f / sqrtf(x); }
#define __expf expf
#define __logf logf
#define __fdividef(a, b) ((a) / (b))
"""
_C_TYPES = {"T": "double", "float64": "double", "double": "double", "float32": "float", "float": "float"}


def _elementwise_on_host(parts, x):
    """Evaluate an ElementwiseKernel's operation (one input, one output) as plain C on this machine's
    CPU: the operation's text goes into a loop, compiled with the system's C compiler and called
    through ctypes. No GPU needed: the same C expressions, the host's libm. Returns the outputs, or a
    string saying why it could not run (no compiler, a parameter list it does not handle)."""
    import ctypes
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    def parameter(text):
        words = text.replace(",", " ").split()
        if len(words) != 2 or words[0] not in _C_TYPES:
            return None
        return _C_TYPES[words[0]], words[1]

    inputs, outputs = parameter(parts["in_params"]), parameter(parts["out_params"])
    if inputs is None or outputs is None:
        return (f"in_params {parts['in_params']!r} and out_params {parts['out_params']!r}: this check reads one "
                "input and one output, each 'T name' or 'float64 name'")
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return "this machine has no C compiler (cc, gcc or clang)"
    (in_type, in_name), (out_type, out_name) = inputs, outputs
    source = (_CUDA_ON_HOST + "typedef double T;\n"
              f"void run(const double *in, double *out, long n) {{\n"
              f"  for (long i = 0; i < n; ++i) {{\n    {in_type} {in_name} = ({in_type})in[i];\n"
              f"    {out_type} {out_name};\n    {parts['operation']};\n    out[i] = (double){out_name};\n  }}\n}}\n")
    with tempfile.TemporaryDirectory() as folder:
        c_file, library = Path(folder) / "kernel.c", Path(folder) / "kernel.so"
        c_file.write_text(source)
        built = subprocess.run([compiler, "-O1", "-shared", "-fPIC", "-o", str(library), str(c_file), "-lm"],
                               capture_output=True, text=True)
        if built.returncode != 0:
            log = [line for line in built.stderr.splitlines() if "error" in line][:3]
            return f"as host C it does not compile ({'; '.join(log) or built.stderr[:200]})"
        run = ctypes.CDLL(str(library)).run
        values = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty_like(values)
        pointer = ctypes.POINTER(ctypes.c_double)
        run.argtypes = [pointer, pointer, ctypes.c_long]
        run(values.ctypes.data_as(pointer), out.ctypes.data_as(pointer), values.size)
    return out


def check_train_steps(train_steps) -> None:
    """On the simulated GPU: the losses of a few steps, and how often the loop made the host wait."""
    import minivit
    from minivit import backend, optim
    from minivit.ops import cross_entropy_backward, cross_entropy_forward

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32, num_labels=4)
    host_images = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype("float32")
    host_labels = np.arange(8) % 4
    steps, read_every = 8, 4
    previous = backend.name
    try:
        backend.use("cupy-sim")
        model = minivit.ViTForImageClassification(config, seed=0)
        optimizer = optim.AdamW(model.named_parameters(), lr=1e-3)
        images, labels = backend.asarray(host_images), backend.asarray(host_labels)
        backend.reset_sim_counters()
        losses = train_steps(model, optimizer, images, labels, steps, read_every)
        counters = backend.sim_counters()
        reference = minivit.ViTForImageClassification(config, seed=0)
        reference_optimizer = optim.AdamW(reference.named_parameters(), lr=1e-3)
        expected = []
        for _ in range(steps):
            reference_optimizer.zero_grad()
            loss, cache = cross_entropy_forward(reference.forward(images), labels)
            reference.backward(cross_entropy_backward(1.0, cache))
            reference_optimizer.step()
            expected.append(loss)
        expected = backend.to_numpy(backend.xp.stack(expected))
    finally:
        backend.use(previous)
    what = f"train_steps: {steps} steps, the loss read every {read_every}"
    if losses is None or len(losses) != steps:
        raise NotYet(what, [f"return the {steps} losses, one float per step (yours: "
                            f"{'None' if losses is None else len(losses)})"])
    try:
        losses = np.array([float(loss) for loss in losses])
    except TypeError:
        raise NotYet(what, ["return host numbers (floats), read with backend.to_numpy: a simulated GPU "
                            "array refuses float() outside the loop too"]) from None
    check_array(losses, expected, f"{what}: the losses", "losses", rtol=1e-5)
    allowed = math.ceil(steps / read_every)
    sites = sorted(set(counters.get("sync_sites", [])))
    hint = ""
    if counters["syncs"] >= steps:
        hint = ("at least one synchronisation per step: a float(loss) or .item() inside the loop? Keep the "
                "losses on the device and read them together every read_every steps")
    check_true(counters["syncs"] <= allowed, f"at most {allowed} host synchronisations in {steps} steps",
               yours=counters["syncs"], expected=f"<= {allowed}",
               hint=hint + (f" (they came from {', '.join(sites[:4])})" if sites else ""))


# --- lesson 10 ------------------------------------------------------------------------------------

def _resize_variant(in_size, out_size, align_corners=False, clamp=True):
    from minivit.ops.interpolate import cubic_weights

    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        x = i * (in_size - 1) / max(out_size - 1, 1) if align_corners else (i + 0.5) * in_size / out_size - 0.5
        left = math.floor(x)
        for offset, weight in zip((-1, 0, 1, 2), cubic_weights(x - left)):
            index = left + offset
            index = min(max(index, 0), in_size - 1) if clamp else index % in_size
            matrix[i, index] += weight
    return matrix


def check_resize_matrix(resize_matrix) -> None:
    from minivit import backend
    from minivit.ops.interpolate import bicubic_matrix

    for n_in, n_out in ((8, 12), (12, 8), (3, 7)):
        expected = backend.to_numpy(bicubic_matrix(n_in, n_out))
        border = np.zeros_like(expected, dtype=bool)
        border[:2], border[-2:] = True, True
        check_array(resize_matrix(n_in, n_out), expected,
                    f"your {n_out}x{n_in} resize matrix equals minivit's", "R", rtol=1e-12,
                    mistakes={"align_corners=True (x = i (n_in - 1) / (n_out - 1)); PyTorch's and transformers' "
                              "resize uses align_corners=False": _resize_variant(n_in, n_out, align_corners=True),
                              "indices that wrap around at the borders instead of being clamped to 0 ... n_in - 1":
                              _resize_variant(n_in, n_out, clamp=False)},
                    regions={"in the rows near the borders (the first and last two outputs): clamp the "
                             "indices floor - 1 ... floor + 2 to 0 ... n_in - 1": border})


def check_layer_decay_scale(layer_decay_scale) -> None:
    from minivit import finetune

    L, decay = 4, 0.75
    names = (["embeddings.cls_token", "embeddings.position_embeddings",
              "embeddings.patch_embeddings.projection.weight"]
             + [f"encoder.layers.{i}.{part}" for i in range(L) for part in ("attention.q_proj.weight", "mlp.fc1.bias")]
             + ["layernorm.weight", "classifier.weight", "classifier.bias"])
    expected = finetune.layer_decay_scales(names, L, decay)
    yours = {name: layer_decay_scale(name, L, decay) for name in names}

    def layer(name):
        if name.startswith("embeddings."):
            return 0
        if name.startswith("encoder.layers."):
            return int(name.split(".")[2]) + 1
        return L + 1

    from_zero = {n: decay ** (L + 1 - (layer(n) - 1 if n.startswith("encoder.") else layer(n))) for n in names}
    one_short = {n: decay ** (L - layer(n)) for n in names}
    what = f"layer_decay_scale for every kind of name ({L} layers, decay {decay})"
    try:
        values = np.array([float(yours[n]) for n in names])
    except (TypeError, ValueError):
        raise NotYet(what, ["return one number per name"]) from None
    lines = diagnose(values, np.array([expected[n] for n in names]), "scales",
                     mistakes={"counting encoder layers from 0 (encoder.layers.0 is layer 1; the embeddings are 0)":
                               np.array([from_zero[n] for n in names]),
                               "the exponent L - l, one power of the decay short everywhere (the head must get "
                               "decay^0 = 1)": np.array([one_short[n] for n in names])})
    if lines:
        wrong = [f"{n}: yours {float(yours[n]):.6g}, expected {expected[n]:.6g}" for n in names
                 if not math.isclose(float(yours[n]), expected[n], rel_tol=1e-9)]
        raise NotYet(what, lines[:-2] + wrong[:6] + (["..."] if len(wrong) > 6 else []))
    print(f"PASS: {what} ({len(names)} names, from {min(expected.values()):.4f} for the embeddings to 1 for the head)")


# --- lesson 11 ------------------------------------------------------------------------------------

def check_principal_components(principal_components) -> None:
    rng = np.random.default_rng(12)
    filters = rng.standard_normal((40, 3, 2, 2)) + np.linspace(0, 2, 12).reshape(3, 2, 2)  # a mean filter
    flat = filters.reshape(40, -1)
    _, s, vt = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    _, s_raw, vt_raw = np.linalg.svd(flat, full_matrices=False)
    count = 5
    what = "principal_components"
    components, shares = _pair(principal_components(filters.copy(), count), what,
                               "components, shares")
    check_array(shares, (s**2 / np.sum(s**2))[:count], "the share of variance of each component", "shares",
                mistakes={"leaving the mean filter in (no centring before the SVD)":
                          (s_raw**2 / np.sum(s_raw**2))[:count],
                          "shares of the singular values S instead of S^2": (s / np.sum(s))[:count]})
    components = np.asarray(components, dtype=np.float64)
    expected = vt[:count].reshape(count, 3, 2, 2)
    if components.shape == expected.shape:  # a component's sign is arbitrary: align each with the expected
        signs = np.sign(np.sum(components.reshape(count, -1) * expected.reshape(count, -1), axis=1))
        components = components * np.where(signs == 0, 1, signs).reshape(count, 1, 1, 1)
    raw = vt_raw[:count].reshape(count, 3, 2, 2)
    if components.shape == raw.shape:
        raw = raw * np.sign(np.sum(raw.reshape(count, -1) * components.reshape(count, -1), axis=1)).reshape(-1, 1, 1, 1)
    check_array(components, expected, "the components (the first rows of V^T, shaped as filters; signs aligned)",
                "components", rtol=1e-9,
                mistakes={"leaving the mean filter in (no centring before the SVD)": raw})


def check_attention_distance(attention_distance) -> None:
    rng = np.random.default_rng(13)
    B, H, g = 2, 3, 3
    T = g * g + 1
    probs = _softmax(rng.standard_normal((B, H, T, T)) * 2)
    centres = np.stack(np.meshgrid(np.arange(g), np.arange(g), indexing="ij"), -1).reshape(-1, 2) * 4 + 2.0
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    between = probs[:, :, 1:, 1:]
    renormalised = between / between.sum(-1, keepdims=True)
    expected = (renormalised * distances).sum(-1).mean(axis=(0, 2))
    check_array(attention_distance(probs.copy(), distances.copy()), expected,
                "mean attention distance per head", "distance", rtol=1e-9,
                mistakes={"leaving out the renormalisation over the patches (the CLS token's share is lost)":
                          (between * distances).sum(-1).mean(axis=(0, 2))},
                sizes={"the batch size B": B, "the number of patches N": T - 1})


# --- lesson 12 ------------------------------------------------------------------------------------

def _shard_gradients(sizes, seed=0):
    """The engine's model in float64: each shard's gradient (of its own mean loss) and the whole batch's."""
    import minivit
    from minivit.ops import cross_entropy_backward, cross_entropy_forward

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=12, num_labels=3)
    model = minivit.ViTForImageClassification(config, seed=seed, dtype="float64").train()
    rng = np.random.default_rng(seed)
    images, labels = rng.standard_normal((sum(sizes), 3, 8, 8)), rng.integers(0, 3, sum(sizes))

    def gradient(part):
        model.zero_grad()
        loss, cache = cross_entropy_forward(model.forward(images[part]), labels[part])
        model.backward(cross_entropy_backward(1.0, cache))
        return model.flat.grad.copy()

    bounds = np.cumsum([0, *sizes])
    return [gradient(slice(start, stop)) for start, stop in zip(bounds[:-1], bounds[1:])], gradient(slice(None))


def check_mean_of_shards(mean_of_shards) -> None:
    for sizes in ((4, 4, 4), (5, 3, 4)):
        gradients, whole = _shard_gradients(sizes)
        B, N = sum(sizes), len(sizes)
        yours = mean_of_shards([gradient.copy() for gradient in gradients], list(sizes))
        mistakes = {"the sum of the shards' gradients (each is already a mean: divide by the number of shards, "
                    "or weight by the shares)": sum(gradients),
                    "the shards' gradients weighted by their sizes, but not divided by the batch size B":
                        sum(size * gradient for size, gradient in zip(sizes, gradients))}
        if len(set(sizes)) > 1:
            mistakes["the plain mean of the shards' gradients, right only for equal shards: weight each by its "
                     "share of the batch, n_r / B"] = sum(gradients) / N
        check_array(yours, whole, f"shards of {', '.join(map(str, sizes))} images: the gradient of the whole "
                    f"batch of {B}", "the batch's gradient", rtol=0.0, atol=1e-12, mistakes=mistakes,
                    sizes={"the number of shards N": N, "the batch size B": B})


RANK_TIMEOUT = 5.0  # seconds a simulated rank waits for a message before the check calls it a deadlock


def _run_on_ranks(program, size: int, what: str):
    """``run_ranks(size, program)``, with a deadlock turned into a hint."""
    from minivit.distributed.simulated_ranks import Deadlock, run_ranks

    try:
        return run_ranks(size, program, timeout=RANK_TIMEOUT)
    except Deadlock as error:
        raise NotYet(what, [str(error), "every recv must be matched by a send that another rank makes first: "
                            "send, then receive (comm.sendrecv does both in that order)"]) from None


def check_allreduce_through_rank_0(allreduce_through_rank_0) -> None:
    for N in (1, 2, 4):
        arrays = [_distinct((6,), seed=rank) + rank for rank in range(N)]
        what = f"allreduce_through_rank_0 on {N} rank{'s' if N > 1 else ''}: every rank returns the sum"
        results = _run_on_ranks(lambda comm, arrays=arrays: allreduce_through_rank_0(comm, arrays[comm.rank].copy()),
                                N, what)
        expected = sum(arrays)
        for rank, result in enumerate(results):
            if result is None:
                raise NotYet(what, [f"rank {rank} returned None: every rank returns the sum (rank 0 sends it back)"])
            mistakes = {}
            if rank:  # first: with two ranks, rank 1's own array is also the sum without rank 0's
                mistakes["this rank's own array, unchanged: rank 0 must send the sum back to every rank"] = \
                    arrays[rank]
            mistakes["the mean, not the sum"] = expected / N
            if N > 1:
                mistakes["the sum without rank 0's own array: start rank 0's total from its own array"] = \
                    expected - arrays[0]
            lines = diagnose(np.asarray(result), expected, f"rank {rank}'s result", rtol=0.0, atol=1e-12,
                             mistakes=mistakes, sizes={"the number of ranks N": N})
            if lines:
                raise NotYet(what, lines)
        print(f"PASS: {what}")


def check_ring_allreduce(ring_allreduce) -> None:
    for N in (1, 2, 3, 5):
        for length in (60, 7):
            arrays = [_distinct((length,), seed=rank) + rank for rank in range(N)]
            what = f"ring_allreduce on {N} rank{'s' if N > 1 else ''}, arrays of {length}: every rank returns the sum"
            results = _run_on_ranks(lambda comm, arrays=arrays: (ring_allreduce(comm, arrays[comm.rank].copy()),
                                                                 comm.bytes_sent), N, what)
            expected = sum(arrays)
            for rank, (result, _) in enumerate(results):
                if result is None:
                    raise NotYet(what, [f"rank {rank} returned None: return the summed array"])
                result = np.asarray(result)
                lines = diagnose(result, expected, f"rank {rank}'s result", rtol=0.0, atol=1e-12,
                                 mistakes={"the mean, not the sum": expected / N},
                                 sizes={"the number of ranks N": N})
                if lines and result.shape == expected.shape and N > 1:
                    right = np.isclose(result, expected, rtol=0, atol=1e-12)
                    if 0 < right.sum() <= -(-length // N) + 1:
                        lines.append(f"only {right.sum()} of {length} elements (one chunk) hold the sum: the "
                                     "reduce-scatter ran, but the all-gather that passes the finished chunks "
                                     "around did not")
                if lines:
                    raise NotYet(what, lines)
            if length == 60:  # chunks of equal size: each rank sends exactly 2(N-1)/N of the array
                size, expected_bytes = arrays[0].nbytes, 2 * (N - 1) * arrays[0].nbytes // N
                wrong = [(rank, sent) for rank, (_, sent) in enumerate(results) if sent != expected_bytes]
                if wrong:
                    rank, sent = wrong[0]
                    check_value(sent, expected_bytes, f"{N} ranks: rank {rank} sends 2(N-1)/N of its "
                                f"{size}-byte array", unit=" bytes",
                                mistakes={"sending the whole array at every step of both halves (send one chunk: "
                                          "np.array_split into N)": 2 * (N - 1) * size,
                                          "passing the whole array around the ring, N - 1 times: the sum is right, "
                                          "but a ring of N chunks sends N/2 times less": (N - 1) * size,
                                          "sending the reduce-scatter's chunks only (the all-gather half is "
                                          "missing)": (N - 1) * size // N})
        print(f"PASS: ring_allreduce on {N} rank{'s' if N > 1 else ''}: every rank returns the sum, and sends "
              f"{2 * (N - 1) * 480 // N} bytes = 2(N-1)/N of its 480-byte array")


def check_ring_allreduce_seconds(ring_allreduce_seconds) -> None:
    for S, N, alpha, beta in ((1e7, 4, 1e-5, 1e9), (10.8e6, 8, 20e-6, 1.25e9), (1e3, 64, 5e-6, 300e9)):
        expected = 2 * (N - 1) * (alpha + S / N / beta)
        check_value(ring_allreduce_seconds(S, N, alpha, beta), expected,
                    f"{S:g} bytes on {N} ranks, latency {alpha:g} s, bandwidth {beta:g} bytes/s", rtol=1e-9,
                    unit=" s", mistakes={
                        "one half only (the reduce-scatter or the all-gather: there are two)": expected / 2,
                        "the whole array in every message: each message carries S/N bytes":
                            2 * (N - 1) * (alpha + S / beta),
                        "no latency term": 2 * (N - 1) * S / N / beta,
                        "no bandwidth term": 2 * (N - 1) * alpha})
    check_value(ring_allreduce_seconds(1e7, 1, 1e-5, 1e9), 0.0, "one rank: nothing to send", atol=1e-15, unit=" s")
