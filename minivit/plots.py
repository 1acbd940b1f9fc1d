"""Figures for training runs (matplotlib, drawn off-screen). Host side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minivit.atomic import atomic_write


def _new_figure(figsize):
    """A figure drawn off-screen, without touching pyplot's backend (a notebook keeps its own)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def image_formats() -> list[str]:
    """The file suffixes a figure can be saved as (png, pdf, svg, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return sorted(FigureCanvasAgg.get_supported_filetypes())


def save_figure(fig, path: str | Path, **options) -> Path:
    """``fig`` as an image file at ``path`` (format from its suffix, PNG if none), written atomically."""
    path = Path(path)
    image_format = path.suffix[1:].lower() or "png"
    return atomic_write(path, lambda file: fig.savefig(file, format=image_format, dpi=110, **options))


def training_curves(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Loss and accuracy against epoch, from the rows of metrics.jsonl."""
    epochs = [row["epoch"] for row in rows]
    fig = _new_figure((10, 3.8))
    loss_axis, accuracy_axis = fig.subplots(1, 2)
    loss_axis.plot(epochs, [row["train_loss"] for row in rows], label="train")
    if any(row.get("val_loss") is not None for row in rows):
        loss_axis.plot(epochs, [row.get("val_loss") for row in rows], label="validation")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("cross-entropy")
    loss_axis.legend()
    accuracy_axis.plot(epochs, [100 * row["train_accuracy"] for row in rows], label="train (augmented)")
    if any(row.get("val_accuracy") is not None for row in rows):
        accuracy_axis.plot(epochs, [100 * row.get("val_accuracy") for row in rows], label="validation")
    accuracy_axis.set_xlabel("epoch")
    accuracy_axis.set_ylabel("accuracy (%)")
    accuracy_axis.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_matrix_figure(matrix: np.ndarray, class_names: list[str], path: str | Path,
                            title: str = "") -> Path:
    """Rows: true class; columns: predicted class; cells: share of the true class."""
    shares = matrix / np.maximum(1, matrix.sum(axis=1, keepdims=True))
    size = max(4.5, 0.55 * len(class_names) + 2)
    fig = _new_figure((size, size))
    axis = fig.subplots()
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            axis.text(j, i, f"{100 * shares[i, j]:.0f}", ha="center", va="center", fontsize=7,
                      color="white" if shares[i, j] > 0.5 else "black")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if title:
        axis.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
