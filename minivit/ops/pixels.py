"""From stored pixels to the model's input: normalisation, and the crop-flip-normalise of a batch.

    normalize             uint8 (or float) [0, 255] -> (x / 255 - mean) / std, per channel
    crop_flip_normalize   random crop, horizontal flip and normalisation in one operation
                          (one kernel on a GPU: minivit/kernels/gpu/augment.py)

The random draws are made by ``minivit.augment``; these are the plain array math.
"""

from __future__ import annotations

from minivit import backend


def normalize(images, mean, std):
    """uint8 or float [0, 255] -> (x / 255 - mean) / std, float32, per channel."""
    xp = backend.xp
    mean = xp.asarray(mean, dtype=xp.float32)[None, :, None, None]
    std = xp.asarray(std, dtype=xp.float32)[None, :, None, None]
    return (images.astype(xp.float32) / 255.0 - mean) / std


def crop_flip_normalize(images, top, left, flip, padding: int, mean, std):
    """Random crop, horizontal flip and normalisation of a batch, as one operation.

    images uint8 (B, C, H, W); top, left (B,) integer offsets of each image's window in
    the image padded by ``padding`` zeros on every side; flip (B,) booleans; mean, std (C,).
    Returns float32 (B, C, H, W): pixel [b, c, i, j] of the window, read from the right
    when flip[b], as (x / 255 - mean[c]) / std[c]. The same as random_crop, horizontal_flip
    and normalize one after the other with these draws (one kernel on a GPU).
    """
    xp = backend.xp
    B, C, H, W = images.shape
    padded = xp.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    rows = (top[:, None] + xp.arange(H))[:, None, :, None]  # (B, 1, H, 1)
    columns = left[:, None] + xp.where(flip[:, None], xp.arange(W - 1, -1, -1), xp.arange(W))  # (B, W)
    window = padded[xp.arange(B)[:, None, None, None], xp.arange(C)[None, :, None, None], rows,
                    columns[:, None, None, :]]
    return normalize(window, mean, std)
