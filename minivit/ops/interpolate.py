"""Bicubic resampling of the position-embedding grid, for inputs of another resolution.

A model trained on a g x g grid of patches has a (1, 1 + g*g, D) position table.
At another resolution the grid is h' x w', so the patch part of the table is
read as a D-channel g x g image and resized bicubically to h' x w'; the CLS
position is kept apart, unchanged. This is transformers' ``interpolate_pos_encoding``
(``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``), written out:

    output pixel i sits at source coordinate x = (i + 0.5) * in_size / out_size - 0.5
    it mixes the 4 source pixels floor(x)-1 ... floor(x)+2 (clamped to the border)
    with the cubic-convolution weights of t = x - floor(x) (Keys, a = -0.75, as PyTorch).

Bicubic resizing is separable and linear, so it is two small matrices:
    grid' = R_h @ grid @ R_w^T         (per channel)
and its backward multiplies by their transposes.
"""

from __future__ import annotations

import math

from minivit import backend

CUBIC_A = -0.75  # PyTorch's (and OpenCV's) choice for the cubic-convolution kernel


def cubic_weights(t: float, a: float = CUBIC_A) -> tuple[float, float, float, float]:
    """Weights of the source pixels at offsets -1, 0, +1, +2 for a point t in [0, 1) past offset 0."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def bicubic_matrix(in_size: int, out_size: int, dtype="float64"):
    """The (out_size, in_size) matrix R with resized = R @ signal (align_corners=False)."""
    rows = [[0.0] * in_size for _ in range(out_size)]
    scale = in_size / out_size
    for i in range(out_size):
        x = (i + 0.5) * scale - 0.5
        left = math.floor(x)
        for offset, weight in zip((-1, 0, 1, 2), cubic_weights(x - left)):
            rows[i][min(max(left + offset, 0), in_size - 1)] += weight  # border pixels repeat
    return backend.xp.asarray(rows, dtype=dtype)


def interpolate_position_forward(position_embeddings, old_grid: tuple[int, int], new_grid: tuple[int, int]):
    """(1, 1 + h*w, D) table on an h x w grid -> (1, 1 + h'*w', D) on an h' x w' grid.

    Returns (table, cache); the CLS position (row 0) passes through unchanged.
    """
    xp = backend.xp
    (h, w), (new_h, new_w) = old_grid, new_grid
    D = position_embeddings.shape[-1]
    cls_position = position_embeddings[:, :1]
    grid = position_embeddings[0, 1:].reshape(h, w, D)
    resize_h = bicubic_matrix(h, new_h, position_embeddings.dtype)
    resize_w = bicubic_matrix(w, new_w, position_embeddings.dtype)
    rows = xp.einsum("ia,abd->ibd", resize_h, grid)  # along the height: (h', w, D)
    resized = xp.einsum("jb,ibd->ijd", resize_w, rows)  # then the width: (h', w', D)
    table = xp.concatenate([cls_position, resized.reshape(1, new_h * new_w, D)], axis=1)
    return table, (resize_h, resize_w, D)


def interpolate_position_backward(dtable, cache):
    """d(1, 1 + h'*w', D) -> d(1, 1 + h*w, D): the transposed resize matrices carry the gradient back."""
    xp = backend.xp
    resize_h, resize_w, D = cache
    new_h, h = resize_h.shape
    new_w, w = resize_w.shape
    dresized = dtable[0, 1:].reshape(new_h, new_w, D)
    drows = xp.einsum("jb,ijd->ibd", resize_w, dresized)  # (h', w, D)
    dgrid = xp.einsum("ia,ibd->abd", resize_h, drows)  # (h, w, D)
    return xp.concatenate([dtable[:, :1], dgrid.reshape(1, h * w, D)], axis=1)
