"""What a trained ViT has learned, drawn as the ViT paper draws it (Dosovitskiy et al. 2021, Fig. 7).

    python -m minivit.visualize --checkpoint runs/cifar-tiny/checkpoint-best.npz \\
        --data-dir data/cifar10-jpg

writes four figures into the run's folder, ``runs/cifar-tiny/figures/`` (or into ``--out DIR``;
a figure already there is replaced only with ``--overwrite``, except in the run's own folder):

    learned-filters.png      the principal components of the patch-embedding filters
    position-similarity.png  cosine similarity of each position embedding with all the others,
                             laid out on the patch grid
    attention-distance.png   mean attention distance of every head against depth
    attention-rollout.png    attention rollout (Abnar & Zuidema 2020) over sample test images

The analysis functions take a model (and images) and return NumPy arrays, so a
notebook can draw them its own way. This is analysis on the host, after the fact.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np  # host-side analysis of weights and attention maps

from minivit import backend
from minivit.cli import ArgumentParser, run_command
from minivit.nn import no_grad
from minivit.option_checks import whole_number_problem
from minivit.outputs import check_new_files, in_run_folder
from minivit.plots import _new_figure, save_figure

FIGURE_NAMES = ("learned-filters.png", "position-similarity.png", "attention-distance.png", "attention-rollout.png")

# --- the analyses ---------------------------------------------------------------------------------

def filter_components(model, count: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` principal components of the D patch-embedding filters.

    Each filter is one row of the projection, a (C, p, p) patch of weights; PCA over the D
    filters finds the patterns that the embedding spans. Returns (components (count, C, p, p),
    fraction of the variance each explains).
    """
    weight = backend.to_numpy(model.embeddings.patch_embeddings.projection.weight.data).astype(np.float64)
    D, C, p, _ = weight.shape
    filters = weight.reshape(D, C * p * p)
    centred = filters - filters.mean(axis=0)
    _, singular_values, directions = np.linalg.svd(centred, full_matrices=False)
    count = min(count, directions.shape[0])
    explained = singular_values**2 / np.sum(singular_values**2)
    return directions[:count].reshape(count, C, p, p), explained[:count]


def position_similarity(model) -> np.ndarray:
    """(g, g, g, g): cosine similarity between the position embedding of patch (i, j) and
    that of every patch (k, l), on the g x g grid (the CLS position left out)."""
    if model.embeddings.position_embeddings is None:
        raise ValueError("This model has no position embeddings (position_embedding_type 'none'): there is no "
                         "position similarity to show.")
    positions = backend.to_numpy(model.embeddings.position_embeddings.data)[0, 1:].astype(np.float64)
    g = model.config.grid_size
    unit = positions / np.linalg.norm(positions, axis=1, keepdims=True)
    return (unit @ unit.T).reshape(g, g, g, g)


def _attention_maps(model, pixel_values, batch_size: int = 100):
    """For each batch of images, the list over layers of (B, H, T, T) attention probabilities."""
    model.eval()
    for start in range(0, len(pixel_values), batch_size):
        with no_grad():  # no backward follows
            model.forward(backend.asarray(pixel_values[start:start + batch_size].astype(model.dtype)))
        yield [backend.to_numpy(probs).astype(np.float64) for probs in model.attention_maps()]


def patch_centres(config) -> np.ndarray:
    """(N, 2): the (row, column) pixel position of each patch's centre."""
    g, stride, p = config.grid_size, config.stride, config.patch_size
    rows, columns = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    return np.stack([rows.ravel() * stride + p / 2, columns.ravel() * stride + p / 2], axis=1)


def mean_attention_distance(model, pixel_values) -> np.ndarray:
    """(layers, heads): how far, in pixels, each head looks on average.

    For a patch attending to the other patches with weights a_ij (renormalised over the
    patches, the CLS token left out), the distance is sum_j a_ij |x_i - x_j|; it is
    averaged over all patches of all images. Like a CNN's receptive field, but learned,
    and per head: the ViT paper's Figure 7 (right).
    """
    centres = patch_centres(model.config)
    distances = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)  # (N, N)
    total = 0.0
    for maps in _attention_maps(model, pixel_values):
        per_layer = []
        for probs in maps:
            between_patches = probs[:, :, 1:, 1:]  # (B, H, N, N)
            between_patches = between_patches / between_patches.sum(axis=-1, keepdims=True)
            per_layer.append((between_patches * distances).sum(axis=-1).mean(axis=2).sum(axis=0))  # (H,)
        total = total + np.stack(per_layer)
    return total / len(pixel_values)


def attention_rollout(model, pixel_values, keep_residual: float = 0.5) -> np.ndarray:
    """(B, g, g): how much the CLS token's output draws on each patch, through every layer,
    each map stretched to [0, 1].

    Attention rollout (Abnar & Zuidema 2020): average each layer's attention over the heads,
    account for the residual connection by mixing in the identity,
    A_l <- keep_residual * I + (1 - keep_residual) * A_l, and multiply the layers'
    matrices, R = A_L ... A_2 A_1. The CLS row of R, over the patches, is the map.
    """
    maps = [np.concatenate(layer) for layer in zip(*_attention_maps(model, pixel_values))]
    B, _, T, _ = maps[0].shape
    rollout = np.broadcast_to(np.eye(T), (B, T, T))
    for probs in maps:
        mixed = keep_residual * np.eye(T) + (1 - keep_residual) * probs.mean(axis=1)
        mixed = mixed / mixed.sum(axis=-1, keepdims=True)
        rollout = mixed @ rollout
    g = model.config.grid_size
    cls_to_patches = rollout[:, 0, 1:].reshape(B, g, g)
    low = cls_to_patches.min(axis=(1, 2), keepdims=True)
    high = cls_to_patches.max(axis=(1, 2), keepdims=True)
    return (cls_to_patches - low) / np.maximum(high - low, 1e-12)  # each map stretched to [0, 1]


# --- the figures ----------------------------------------------------------------------------------

def _to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, h, w) values -> (h, w, 3) in [0, 1], stretched to their own range."""
    image = (image - image.min()) / max(float(np.ptp(image)), 1e-12)
    image = image.transpose(1, 2, 0)
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def draw_filter_components(components: np.ndarray, explained: np.ndarray, path) -> Path:
    columns = 7
    rows = -(-len(components) // columns)
    fig = _new_figure((columns * 1.1, rows * 1.25 + 0.5))
    for index, component in enumerate(components):
        axis = fig.add_subplot(rows, columns, index + 1)
        axis.imshow(_to_rgb(component), interpolation="nearest")
        axis.set_title(f"{100 * explained[index]:.1f}%", fontsize=7)
        axis.axis("off")
    fig.suptitle(f"Principal components of the {components.shape[1]}x{components.shape[2]}x"
                 f"{components.shape[3]} patch-embedding filters (% of variance)", fontsize=9)
    return _save(fig, path)


def draw_position_similarity(similarity: np.ndarray, path) -> Path:
    g = similarity.shape[0]
    fig = _new_figure((g * 0.75 + 1, g * 0.75 + 0.6))
    grid = fig.add_gridspec(g, g + 1, width_ratios=[1] * g + [0.15], wspace=0.08, hspace=0.08)
    image = None
    for i in range(g):
        for j in range(g):
            axis = fig.add_subplot(grid[i, j])
            image = axis.imshow(similarity[i, j], vmin=-1, vmax=1, cmap="viridis", interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if j == 0:
                axis.set_ylabel(str(i + 1), fontsize=7)
            if i == g - 1:
                axis.set_xlabel(str(j + 1), fontsize=7)
    fig.colorbar(image, cax=fig.add_subplot(grid[:, g]), label="cosine similarity")
    fig.suptitle("Position embedding similarity (each tile: one patch against all)", fontsize=9)
    return _save(fig, path)


def uniform_attention_distance(config) -> float:
    """The mean attention distance of a head that attends to all patches equally."""
    centres = patch_centres(config)
    return float(np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1).mean())


def draw_attention_distance(distances: np.ndarray, path, uniform: float | None = None) -> Path:
    """distances: (layers, heads); ``uniform``: the distance of uniform attention, drawn dashed."""
    fig = _new_figure((5, 3.8))
    axis = fig.add_subplot(1, 1, 1)
    layers, heads = distances.shape
    for head in range(heads):
        axis.scatter(np.arange(1, layers + 1), distances[:, head], s=18, label=f"head {head + 1}")
    if uniform is not None:
        axis.axhline(uniform, color="gray", linestyle="--", linewidth=1, label="uniform attention")
    axis.set_xlabel("network depth (layer)")
    axis.set_ylabel("mean attention distance (pixels)")
    axis.set_xticks(np.arange(1, layers + 1))
    axis.set_ylim(0, 1.15 * max(float(distances.max()), uniform or 0.0))
    axis.grid(alpha=0.3)
    if heads <= 12:
        axis.legend(fontsize=7, ncol=2)
    axis.set_title("How far each head looks", fontsize=9)
    return _save(fig, path)


def draw_attention_rollout(images: np.ndarray, rollout: np.ndarray, path, titles=None) -> Path:
    """images: uint8 (B, C, H, W); rollout: (B, g, g) maps in [0, 1]."""
    B = len(images)
    fig = _new_figure((B * 1.4, 3.1))
    size = images.shape[-1]
    for index in range(B):
        picture = images[index].transpose(1, 2, 0)
        upsampled = np.kron(rollout[index], np.ones((size // rollout.shape[1], size // rollout.shape[2])))
        top = fig.add_subplot(2, B, index + 1)
        top.imshow(picture, interpolation="nearest")
        top.axis("off")
        if titles is not None:
            top.set_title(titles[index], fontsize=7)
        bottom = fig.add_subplot(2, B, B + index + 1)
        bottom.imshow(picture, interpolation="nearest")
        bottom.imshow(upsampled, cmap="inferno", alpha=0.6, vmin=0, vmax=1, interpolation="bilinear",
                      extent=(-0.5, size - 0.5, size - 0.5, -0.5))
        bottom.axis("off")
    fig.suptitle("Attention rollout: where the CLS token looks, through all layers", fontsize=9)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path, bbox_inches="tight")


# --- command line ---------------------------------------------------------------------------------

def draw_all(model, images: np.ndarray, labels: np.ndarray, class_names: list[str], mean, std, out,
             num_rollout: int = 8) -> list[Path]:
    """All four figures into the folder ``out``; images uint8 (B, C, H, W) from the test split."""
    from minivit.augment import normalize

    pixel_values = backend.to_numpy(normalize(backend.asarray(images), mean, std))
    out = Path(out)
    components, explained = filter_components(model)
    # one image per class for the rollout, as many classes as fit
    shown = [int(np.flatnonzero(labels == label)[0]) for label in range(len(class_names))
             if np.any(labels == label)][:num_rollout]
    rollout = attention_rollout(model, pixel_values[shown])
    filters, positions, distance, rollout_figure = (out / name for name in FIGURE_NAMES)
    return [
        draw_filter_components(components, explained, filters),
        draw_position_similarity(position_similarity(model), positions),
        draw_attention_distance(mean_attention_distance(model, pixel_values), distance,
                                uniform_attention_distance(model.config)),
        draw_attention_rollout(images[shown], rollout, rollout_figure, [class_names[labels[i]] for i in shown]),
    ]


def main(argv=None) -> int:
    return run_command(_main, argv)


def _main(argv) -> int:
    from minivit.checkpoint import CheckpointError, load_checkpoint
    from minivit.data import load_split
    from minivit.evaluate import data_for_model

    parser = ArgumentParser(prog="python -m minivit.visualize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by minivit.train")
    parser.add_argument("--data-dir", required=True, help="the data set whose test images to look at")
    parser.add_argument("--out", help="folder for the four figures (default: figures/ beside the checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="replace figures already in --out")
    parser.add_argument("--images", type=int, default=500, help="test images for the attention distances")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    problems = [whole_number_problem("--images", args.images, 1),
                whole_number_problem("--seed", args.seed, 0, 2**32 - 1)]
    out = Path(args.out) if args.out is not None else Path(args.checkpoint).parent / "figures"
    if out.exists() and not out.is_dir():
        problems.append(f"--out {out} is a file; the four figures need a folder")
    problems = [problem for problem in problems if problem]
    if problems:
        raise ValueError("; ".join(problems) + ".")
    # the default folder of a checkpoint in a run folder is that run's own: its figures are refreshed
    own_output = args.out is None and in_run_folder(args.checkpoint)
    check_new_files([out / name for name in FIGURE_NAMES], "--out", args.overwrite or own_output)
    model = load_checkpoint(args.checkpoint)  # refuses non-finite weights
    meta = model.checkpoint_meta
    if "mean" not in meta or "class_names" not in meta:
        raise CheckpointError(f"{args.checkpoint} has no normalisation statistics: it was not written "
                              "by minivit.train.")
    test = data_for_model(load_split(args.data_dir, "test", image_size=model.config.image_size,
                                     progress=sys.stderr.isatty()), meta,
                          f"The test split of {args.data_dir}")
    if len(test) == 0:
        raise ValueError(f"The test split of {args.data_dir} has no images of the model's classes.")
    chosen = np.random.default_rng(args.seed).permutation(len(test))[:args.images]
    paths = draw_all(model, test.images[chosen], test.labels[chosen], test.class_names,
                     np.array(meta["mean"], dtype=np.float32), np.array(meta["std"], dtype=np.float32), out)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
