"""Lesson 3, embeddings (the CLS token and position embeddings): its checks, solutions and answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import numpy as np

from .diagnosis import check_gradients
from .exercises import keep_engine_function, solution

# --- checks ---------------------------------------------------------------------------------------

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
    keep_engine_function(cls_concat_backward, "cls_concat_backward")


# --- solutions ------------------------------------------------------------------------------------

@solution
def cls_concat_backward(dout, batch_size):
    return dout[:, 1:, :], dout[:, :1, :].sum(axis=0, keepdims=True)


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""Shuffling the patches and their position embeddings together changes nothing: attention
    treats its input as a set, and each token keeps its own position. Shuffling only the patches
    changes the logits: each patch now carries another position's embedding, so the model sees
    a different (scrambled) image.""",
    r"""Weight decay pulls weights towards zero, which acts as a prior that small weights are
    better. For the CLS token and position embeddings, zero is no better than any other value:
    they are learned inputs, not multipliers of inputs, and decaying them only erases what they
    learned (the same holds for biases and LayerNorm gains).""",
    r"""None becomes useless, but the CLS token loses its special role. minivit's mean pooling
    (`pool_forward(..., "mean")`) averages all $T = N + 1$ tokens, the CLS token's final state
    included, so the head reads it with weight $1/T$ like any patch, and it also enters every
    layer's attention as a key and value. Its gradient is therefore not zero: it is the gradient
    of one more learned token among $T$, no longer of the summary the head reads alone. Only if
    the CLS token were dropped from the sequence would its gradient be exactly zero.""",
]
