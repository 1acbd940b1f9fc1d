"""Lesson 5, the encoder block: its exercises' checks, their solutions, its answers.

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

from .diagnosis import NotYet, check_array, check_gradients, diagnose, numerical_gradient
from .exercises import keep_engine_function, solution

# --- checks ---------------------------------------------------------------------------------------

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
    keep_engine_function(layernorm_backward, "layernorm_backward")


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


# --- solutions ------------------------------------------------------------------------------------

@solution
def layernorm_backward_by_graph(dout, x, gamma, eps):
    D = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * rstd
    sum_axes = tuple(range(x.ndim - 1))
    dgamma = (dout * xhat).sum(axis=sum_axes)
    dbeta = dout.sum(axis=sum_axes)
    dxhat = dout * gamma
    dvar = (dxhat * (x - mu)).sum(axis=-1, keepdims=True) * -0.5 * rstd**3
    dmean = (-dxhat * rstd).sum(axis=-1, keepdims=True) + dvar * (-2 * (x - mu)).mean(axis=-1, keepdims=True)
    dx = dxhat * rstd + dvar * 2 * (x - mu) / D + dmean / D
    return {"dgamma": dgamma, "dbeta": dbeta, "dxhat": dxhat, "dvar": dvar, "dmean": dmean, "dx": dx}


@solution
def layernorm_backward(dout, cache):
    xhat, rstd, gamma = cache
    D = dout.shape[-1]
    dgamma = (dout * xhat).reshape(-1, D).sum(axis=0)
    dbeta = dout.reshape(-1, D).sum(axis=0)
    dxhat = dout * gamma
    dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


@solution
def encoder_layer_backward(dout, cache):
    g = {}
    # second residual: out = h + fc2(gelu(fc1(LN2(h)))); the MLP branch first
    g["dgelu_out"], g["dfc2_weight"], g["dfc2_bias"] = ops.linear_backward(dout, cache["fc2"])
    g["dfc1_out"] = ops.gelu_backward(g["dgelu_out"], cache["gelu"])
    g["dln2_out"], g["dfc1_weight"], g["dfc1_bias"] = ops.linear_backward(g["dfc1_out"], cache["fc1"])
    dbranch, g["dln2_gamma"], g["dln2_beta"] = ops.layernorm_backward(g["dln2_out"], cache["ln2"])
    g["dh"] = dout + dbranch  # the fork: the skip path's gradient plus the branch's
    # first residual: h = x + o_proj(attention(...)); the attention branch
    dmerged, g["do_weight"], g["do_bias"] = ops.linear_backward(g["dh"], cache["o"])
    g["dcontext"] = ops.split_heads(dmerged, cache["num_heads"])  # the inverse of merge_heads
    g["dq"], g["dk"], g["dv"] = ops.attention_backward(g["dcontext"], cache["attention"])
    g["dqkv"] = np.concatenate([ops.merge_heads(g[n]) for n in ("dq", "dk", "dv")], axis=-1)  # packed again
    g["dln1_out"], g["dqkv_weight"], g["dqkv_bias"] = ops.linear_backward(g["dqkv"], cache["qkv"])
    dbranch, g["dln1_gamma"], g["dln1_beta"] = ops.layernorm_backward(g["dln1_out"], cache["ln1"])
    g["dx"] = g["dh"] + dbranch
    return g


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""LayerNorm's output does not change when every feature of a row moves by the same amount
    (the mean is subtracted), so the derivative along the all-ones direction is zero:
    $\sum_i \partial L/\partial x_i = 0$. With the formula: $\sum_i (\hat g_i - \mathrm{mean}(\hat g)
    - \hat x_i\, \mathrm{mean}(\hat g \hat x)) = 0 - D\,\mathrm{mean}(\hat g \hat x)\,\mathrm{mean}(\hat x)
    = 0$ because $\hat x$ has mean zero. Numerically: `dx.sum(axis=-1)` is about 1e-16.""",
    r"""In a post-norm block every layer's output passes through a LayerNorm, so the gradient that
    reaches a lower layer has been multiplied by each LayerNorm's Jacobian on the way: there is no
    path on which it passes unchanged. Its size then depends on the scales of the activations at
    every layer, which is why post-norm transformers need learning-rate warmup and careful
    initialisation to train deep; pre-norm keeps the identity path clean.""",
    r"""With weights of standard deviation 0.02 in a $D = 192$ network, a linear layer scales its
    input's standard deviation by about $0.02 \sqrt{192} \approx 0.28$; the attention branch
    (values, then output projection) and the MLP (two layers) output roughly $0.28^2 \approx 0.08$
    of their (unit-variance, normalised) input, so each branch adds a small fraction to $h$. The
    network starts close to the identity map on $h$: training starts stable, and the branches
    grow as they learn something useful (lesson 7 measures this).""",
]
