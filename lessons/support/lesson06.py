"""Lesson 6, the whole model: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import numpy as np

from .diagnosis import NotYet, check_array, check_count, check_value, numerical_gradient, returned_pair
from .exercises import keep_engine_function, solution

# --- checks ---------------------------------------------------------------------------------------

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
        loss, cache = returned_pair(cross_entropy_forward(logits.copy(), labels.copy(), eps), what, "loss, cache")
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
    loss, _ = returned_pair(cross_entropy_forward(large.copy(), labels.copy(), 0.0), what, "loss, cache")
    if not np.isfinite(float(np.asarray(loss))):
        raise NotYet(what, [f"yours is {float(np.asarray(loss))}: exp(1000) overflows float64 (its largest is "
                            "about exp(709)). Subtract each row's largest logit before the exp: log softmax(z) = "
                            "(z - m) - log sum exp(z - m), the same for every m (log-sum-exp)"])
    check_value(float(np.asarray(loss)), float(ops.cross_entropy_forward(large, labels)[0]), what, rtol=1e-9)
    keep_engine_function(cross_entropy_forward, "cross_entropy_forward")


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
    keep_engine_function(cross_entropy_backward, "cross_entropy_backward")


# --- solutions ------------------------------------------------------------------------------------

@solution
def parameters_per_layer(D, M, qkv_bias=True):
    layernorms = 2 * 2 * D
    attention = 4 * D * D + (3 * D if qkv_bias else 0) + D
    mlp = D * M + M + M * D + D
    return layernorms + attention + mlp


@solution
def cross_entropy_forward(logits, targets, label_smoothing=0.0):
    B, K = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)  # log-sum-exp: exp never overflows
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (B, K)
    q = np.eye(K)[targets] if targets.ndim == 1 else targets  # class labels, or probabilities (mixup)
    q = (1 - label_smoothing) * q + label_smoothing / K
    return -(q * log_probs).sum() / B, (log_probs, q)


@solution
def cross_entropy_backward(dloss, cache):
    log_probs, q = cache
    return (np.exp(log_probs) - q) * dloss / log_probs.shape[0]  # (p - q) / B


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""The encoder layers hold almost all of it: 6 × 444,864 = 2.67 M of 2.69 M parameters, most
    in the MLPs (2/3 of each layer). The compute is also in the encoder, in proportion to
    parameters × tokens for the linear layers (each weight is used once per token, 65 times per
    image) plus attention's $T^2$ products; the classifier and the embeddings are a rounding
    error.""",
    r"""4.6 is $2 \ln 10$: logits that are far from uniform at initialisation, i.e. weights drawn
    too large (an `initializer_range` of 1 instead of 0.02, a missing $1/\sqrt{d}$ in attention),
    or a loss summed where it should be averaged over something. Lesson 7 plots the initial loss
    against the initialisation scale.""",
    r"""Because the backward pass is linear in its upstream gradient: for any loss,
    $\partial L/\partial \theta = J^\top\, \partial L/\partial\,\text{logits}$, with $J$ the
    Jacobian of the logits. Comparing $J^\top g$ for a random $g$ checks the whole of $J^\top$ in
    one direction (a random one, so a mistake almost surely shows), and the loss's own
    derivative is checked separately.""",
]
