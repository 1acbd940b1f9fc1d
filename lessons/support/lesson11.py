"""Lesson 11, what a ViT learns: the model it looks into, the numbers it reads off the pictures, its
exercises' checks, their solutions, its answers.

``trained_checkpoint`` trains the lesson's model once (``python -m minivit.train --preset cifar-cpu
--epochs ...``, the command line's own code) into a cache folder and reuses it on every later run;
``initial_model`` is the same model before its first step, the baseline beside every figure. The
summaries (``spectrum_summary``, ``similarity_by_distance``, ``rollout_peak``) turn each figure into the
numbers the lesson's conclusions cite.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import shown_path
from .diagnosis import check_array, returned_pair
from .exercises import solution
from .lesson04 import reference_softmax

# --- the model: trained once, cached, and its initial state -----------------------------------------

def training_command(folder, data_dir, epochs: int, options=()) -> list[str]:
    """The arguments of ``python -m minivit.train`` that train the lesson's model into ``folder``: the
    cifar-cpu recipe for a fixed number of epochs (the same model on a busy machine as on a quiet one,
    where a time budget would give a busy one fewer steps), with a one-epoch warmup."""
    return ["--preset", "cifar-cpu", "--data-dir", str(data_dir), "--out", str(folder),
            "--epochs", str(epochs), "--warmup-epochs", "1", *options]


def _finished(meta: dict, epochs: int) -> bool:
    """Whether a run's checkpoint is its end: every epoch of its schedule taken."""
    return meta.get("epoch", 0.0) >= epochs - 1e-9


def trained_checkpoint(folder, data_dir, epochs: int, options=(), yours=None, progress: bool = True) -> Path:
    """The checkpoint this lesson looks into.

    ``yours`` (a path to a minivit checkpoint): that one, checked to exist. Otherwise the run in
    ``folder``: reused when it has finished (all its epochs trained), continued (``--resume``) when a
    run there was interrupted, trained from scratch when there is none. ``options``: more command-line
    options (fast mode's tiny model). The run is the command line's own: ``python -m minivit.train``
    with ``training_command``'s arguments does the same.
    """
    from minivit.checkpoint import read_checkpoint
    from minivit.train import train
    from minivit.training.arguments import config_from_args

    if yours is not None:
        path = Path(yours).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"your_checkpoint = {str(yours)!r}: no such file. Point it to a minivit "
                                    "checkpoint (a run folder's checkpoint-last.npz or checkpoint-best.npz), or "
                                    "set it to None to train the lesson's own model.")
        print(f"Looking into your model: {shown_path(path)}")
        return path
    folder = Path(folder)
    checkpoint = folder / "checkpoint-last.npz"
    # relative to here: the run's messages name its folder, and a notebook shows no machine paths
    arguments = training_command(os.path.relpath(folder), data_dir, epochs, options)
    arguments += [] if progress else ["--no-progress"]
    shown = " ".join(training_command(shown_path(folder), "$MINIVIT_DATA_DIR", epochs, options))
    if checkpoint.is_file():
        meta = read_checkpoint(checkpoint)[0]
        if _finished(meta, epochs):
            print(f"Reusing the model trained in {shown_path(folder)} ({meta['epoch']:.0f} epochs, validation "
                  f"accuracy {meta['best_accuracy']:.1%}); delete that folder to train it again.")
            _say_if_another_size(meta, arguments, folder)
            return checkpoint
        print(f"Continuing the interrupted run in {shown_path(folder)} (at epoch {meta['epoch']:.1f} of {epochs}).")
        config, resume = config_from_args(arguments + ["--resume"])
    else:
        print(f"Training the lesson's model once (cached in {shown_path(folder)}, reused on every later run):\n"
              f"    python -m minivit.train {shown}")
        config, resume = config_from_args(arguments)
    if train(config, resume=resume)["stop_reason"] == "interrupted":  # Ctrl-C: no half-trained model to look into
        raise KeyboardInterrupt(f"Training stopped; the run is saved in {shown_path(folder)}: run this cell "
                                f"again to continue it.")
    return checkpoint


def _say_if_another_size(meta: dict, arguments: list, folder) -> None:
    """A cached model trained before the preset changed size is still a trained ViT and every figure
    works on it, but this lesson's text describes the preset as it is now: say so, and how to retrain."""
    from minivit.config import ViTConfig
    from minivit.training.arguments import config_from_args

    config = config_from_args(arguments)[0]
    expected, cached = config.model_config(), ViTConfig.from_dict(meta["config"])
    differences = [f"{name} {value} (the lesson's model: {getattr(expected, name)})"
                   for name, value in cached.to_dict().items() if getattr(expected, name) != value]
    if differences:
        print(f"  That model is not the lesson's {config.preset} as it is now ({', '.join(differences)}; the "
              f"preset changed size on 2026-12-07), so your numbers will differ from the text's. Delete "
              f"{shown_path(folder)} to train the preset's model instead.")


def initial_model(model):
    """``model``'s architecture with the weights its run started from (the same seed): what training
    changed is the difference between the two. (A run finetuned from pretrained weights started from
    those: its baseline is then a random initialisation of the same architecture, and says so.)
    Normalisation and class names are copied over."""
    from minivit.model import ViTForImageClassification

    meta = model.checkpoint_meta
    seed = meta.get("train_config", {}).get("seed", 0)
    if meta.get("train_config", {}).get("init_from"):
        print(f"This model was finetuned from pretrained weights: the baseline is a random initialisation of "
              f"its architecture (seed {seed}), not the weights its run started from.")
    initial = ViTForImageClassification(model.config, seed=seed, dtype=meta.get("dtype", "float32"))
    initial.checkpoint_meta = dict(meta)
    return initial.eval()


# --- the numbers behind the figures ------------------------------------------------------------------

def spectrum_summary(shares, first: int = 5) -> dict:
    """How concentrated the filters' variance is, from the shares of all their principal components:
    ``first``: the share of the first ``first`` components; ``effective``: the effective number of
    components, 1 / sum(share^2) (all of them for a flat spectrum, 1 when one direction holds it all)."""
    shares = np.asarray(shares, dtype=np.float64)
    shares = shares / shares.sum()
    return {"first": float(shares[:first].sum()), "effective": float(1.0 / np.sum(shares**2))}


def similarity_by_distance(similarity) -> tuple[np.ndarray, np.ndarray, float]:
    """From the (g, g, g, g) position similarity: the distinct grid distances between two different
    positions, the mean similarity at each, and the correlation of similarity with distance over all
    pairs (about 0 without 2-D structure, strongly negative when near positions are alike)."""
    similarity = np.asarray(similarity, dtype=np.float64)
    g = similarity.shape[0]
    cells = np.stack(np.meshgrid(np.arange(g), np.arange(g), indexing="ij"), -1).reshape(-1, 2)
    apart = np.linalg.norm(cells[:, None] - cells[None], axis=-1)  # (N, N) in grid steps
    values = similarity.reshape(g * g, g * g)
    pairs = ~np.eye(g * g, dtype=bool)
    distances = np.unique(np.round(apart[pairs], 6))
    means = np.array([values[pairs & np.isclose(apart, d)].mean() for d in distances])
    correlation = float(np.corrcoef(apart[pairs], values[pairs])[0, 1])
    return distances, means, correlation


def rollout_peak(shares) -> np.ndarray:
    """(B,): each rollout map's largest patch share, in units of the uniform share (1: flat)."""
    shares = np.asarray(shares, dtype=np.float64)
    B = shares.shape[0]
    flat = shares.reshape(B, -1)
    return flat.max(axis=1) / flat.mean(axis=1)

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
    r"""Read each picture's numbers against the initialisation's, printed beside them. For scale: a
    model trained for one epoch (lesson 10's pretraining, which this lesson used to look into) was
    still close to its initialisation in all of them: attention distances within 0.5 px of uniform
    attention, a flat filter spectrum, position similarities with little 2-D structure. The 8
    epochs here moved all four pictures away from the initialisation; which moves first, and which
    keeps changing between 2 and 8 epochs, is what your run at 2 epochs measures.""",
    r"""Look for what section 2 shows for the trained model: bright bands along each tile's own row
    and column. The bicubic resize keeps a smooth 2-D structure on the finer grid (it interpolates
    between neighbouring positions), and a short finetuning adjusts it rather than replacing it, so
    the structure should survive, smoother than before; a resized grid without it would say the
    pretrained model had not learned the layout in the first place.""",
    r"""A convolution is local and translation-equivariant by construction; a ViT has to learn from
    data that nearby patches matter (the local heads in the attention distance) and where each
    patch lies (the 2-D structure of the position embeddings, section 2). Learning these priors
    takes data; with little data a CNN's built-in priors win.""",
]
