"""Lesson 11, what a ViT learns: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import numpy as np

from .diagnosis import check_array, returned_pair
from .exercises import solution
from .lesson04 import reference_softmax

# --- checks ---------------------------------------------------------------------------------------

def check_principal_components(principal_components) -> None:
    rng = np.random.default_rng(12)
    filters = rng.standard_normal((40, 3, 2, 2)) + np.linspace(0, 2, 12).reshape(3, 2, 2)  # a mean filter
    flat = filters.reshape(40, -1)
    _, s, vt = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    _, s_raw, vt_raw = np.linalg.svd(flat, full_matrices=False)
    count = 5
    what = "principal_components"
    components, shares = returned_pair(principal_components(filters.copy(), count), what,
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
    probs = reference_softmax(rng.standard_normal((B, H, T, T)) * 2)
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


# --- solutions ------------------------------------------------------------------------------------

@solution
def principal_components(filters, count):
    D = filters.shape[0]
    flat = filters.reshape(D, -1)
    _, singular_values, directions = np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)
    shares = singular_values**2 / np.sum(singular_values**2)
    return directions[:count].reshape(count, *filters.shape[1:]), shares[:count]


@solution
def attention_distance(probs, distances):
    between_patches = probs[:, :, 1:, 1:]
    between_patches = between_patches / between_patches.sum(axis=-1, keepdims=True)
    return (between_patches * distances).sum(axis=-1).mean(axis=(0, 2))


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""Trust maps that are consistent across images of a class and that put the weight on the
    object; distrust maps that look the same for every image (the position or the border dominates)
    or that change with a small shift of the image. A map is misleading when the value vectors
    or the MLPs do the work: rollout sees only where attention points, not what is carried.""",
    r"""Usually the position similarity and the attention distance change most with training: the
    2-D structure of the position embeddings sharpens, and heads specialise into local and global
    ones. The filter components change less (they are few and low-frequency from early on).""",
    r"""Mostly yes: the bicubic resize keeps the smooth 2-D structure on the finer grid, and a short
    finetuning adjusts it without destroying it. The resized similarities are smoother than the
    original ones.""",
    r"""A convolution is local and translation-equivariant by construction; a ViT has to learn from
    data that nearby patches matter (the local heads in the attention distance) and where each
    patch lies (the 2-D structure of the position embeddings, section 2). Learning these priors
    takes data; with little data a CNN's built-in priors win.""",
]
