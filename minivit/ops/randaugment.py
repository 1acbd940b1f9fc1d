"""RandAugment (Cubuk et al. 2019) on a batch, as plain array math: the reference.

Each operation takes float images in [0, 255] (B, C, H, W), a per-image sign (+1 or -1) and
the magnitude scaled to [0, 1]; ranges follow RandAugment as timm sets them. ``rand_augment``
gives every image one operation per round, chosen at random. ``minivit.augment`` draws the
rest of the recipe; on a GPU one CUDA kernel per round replaces this (minivit/kernels/gpu/randaugment.py).
"""

from __future__ import annotations

import math

from minivit import backend


def affine(images, matrices, fill: float = 128.0):
    """Warp each image by a 2x3 matrix mapping output pixel (x, y), centred, to its
    source pixel; nearest-neighbour sampling, ``fill`` outside the image."""
    xp = backend.xp
    B, C, H, W = images.shape
    ys, xs = xp.meshgrid(xp.arange(H, dtype=images.dtype) - (H - 1) / 2,
                         xp.arange(W, dtype=images.dtype) - (W - 1) / 2, indexing="ij")
    m = matrices[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    source_x = m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2] + (W - 1) / 2  # (B, H, W)
    source_y = m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2] + (H - 1) / 2
    column = xp.rint(source_x).astype(xp.int64)
    row = xp.rint(source_y).astype(xp.int64)
    inside = (column >= 0) & (column < W) & (row >= 0) & (row < H)
    gathered = images[xp.arange(B)[:, None, None, None], xp.arange(C)[None, :, None, None],
                      xp.clip(row, 0, H - 1)[:, None], xp.clip(column, 0, W - 1)[:, None]]
    return xp.where(inside[:, None], gathered, fill).astype(images.dtype)


def _matrices(B, a, b, c, d, e, f):
    """Stack per-image coefficients (arrays of shape (B,) or scalars) into (B, 2, 3) matrices."""
    xp = backend.xp
    rows = [xp.broadcast_to(xp.asarray(v, dtype=xp.float32), (B,)) for v in (a, b, c, d, e, f)]
    return xp.stack(rows, axis=1).reshape(B, 2, 3)


def _grayscale(images):
    weights = backend.xp.asarray([0.299, 0.587, 0.114], dtype=images.dtype)[:, None, None]
    if images.shape[1] != 3:
        return images.mean(axis=1, keepdims=True)
    return (images * weights).sum(axis=1, keepdims=True)


def _blend(degenerate, images, factor):
    """factor 0: the degenerate image; 1: the original; > 1 extrapolates. Clipped to [0, 255]."""
    return backend.xp.clip(degenerate + factor[:, None, None, None] * (images - degenerate), 0, 255)


def _identity(images, sign, level):
    return images


def _autocontrast(images, sign, level):
    xp = backend.xp
    low = images.min(axis=(2, 3), keepdims=True)
    high = images.max(axis=(2, 3), keepdims=True)
    scale = xp.where(high > low, 255.0 / xp.maximum(high - low, 1e-3), 1.0)
    return xp.where(high > low, (images - low) * scale, images)


def _brightness(images, sign, level):
    return _blend(backend.xp.zeros_like(images), images, 1.0 + sign * 0.9 * level)


def _color(images, sign, level):
    return _blend(_grayscale(images), images, 1.0 + sign * 0.9 * level)


def _contrast(images, sign, level):
    mean = _grayscale(images).mean(axis=(1, 2, 3), keepdims=True)
    return _blend(mean, images, 1.0 + sign * 0.9 * level)


def _sharpness(images, sign, level):
    """Blend with a smoothed copy (PIL's SMOOTH kernel: 1s around a centre 5, / 13); borders kept."""
    xp = backend.xp
    padded = xp.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    H, W = images.shape[2:]
    smooth = 4.0 * images
    for dy in range(3):
        for dx in range(3):
            smooth = smooth + padded[:, :, dy:dy + H, dx:dx + W]
    smooth = smooth / 13.0
    return _blend(smooth, images, 1.0 + sign * 0.9 * level)


def _posterize(images, sign, level):
    keep_bits = 8 - int(round(4 * level))  # 8 bits at level 0, 4 at level 1
    step = 2.0 ** (8 - keep_bits)
    return backend.xp.floor(images / step) * step


def _solarize(images, sign, level):
    threshold = 256.0 - 256.0 * level
    return backend.xp.where(images >= threshold, 255.0 - images, images)


def _rotate(images, sign, level):
    angle = sign * math.radians(30.0) * level
    cos, sin = backend.xp.cos(angle), backend.xp.sin(angle)
    return affine(images, _matrices(images.shape[0], cos, -sin, 0.0, sin, cos, 0.0))


def _shear_x(images, sign, level):
    return affine(images, _matrices(images.shape[0], 1.0, sign * 0.3 * level, 0.0, 0.0, 1.0, 0.0))


def _shear_y(images, sign, level):
    return affine(images, _matrices(images.shape[0], 1.0, 0.0, 0.0, sign * 0.3 * level, 1.0, 0.0))


def _translate_x(images, sign, level):
    shift = sign * 0.45 * level * images.shape[3]
    return affine(images, _matrices(images.shape[0], 1.0, 0.0, shift, 0.0, 1.0, 0.0))


def _translate_y(images, sign, level):
    shift = sign * 0.45 * level * images.shape[2]
    return affine(images, _matrices(images.shape[0], 1.0, 0.0, 0.0, 0.0, 1.0, shift))


RANDAUGMENT_OPS = {
    "identity": _identity, "autocontrast": _autocontrast, "brightness": _brightness,
    "color": _color, "contrast": _contrast, "sharpness": _sharpness, "posterize": _posterize,
    "solarize": _solarize, "rotate": _rotate, "shear_x": _shear_x, "shear_y": _shear_y,
    "translate_x": _translate_x, "translate_y": _translate_y,
}


def round_draws(rng, batch_size: int, dtype):
    """One round's draws: each image's operation (an index into RANDAUGMENT_OPS) and sign (+1 or -1).
    Every implementation of RandAugment draws through this, so all give an image the same operation."""
    xp = backend.xp
    choice = rng.integers(0, len(RANDAUGMENT_OPS), size=batch_size)
    sign = xp.where(rng.random(batch_size) < 0.5, -1.0, 1.0).astype(dtype)
    return choice, sign


def rand_augment(images, num_ops: int, magnitude: float, rng):
    """RandAugment: ``num_ops`` rounds; in each, every image gets one op chosen uniformly.

    Branch-free: every op runs on the whole batch and ``where`` keeps, per image,
    the chosen result. That costs len(RANDAUGMENT_OPS) times the work of one op on
    a small batch, but needs no boolean indexing, hence no device synchronisation.
    (Equalize is left out: it needs a per-image histogram.)
    """
    xp = backend.xp
    level = magnitude / 10.0
    ops = list(RANDAUGMENT_OPS.values())
    for _ in range(num_ops):
        choice, sign = round_draws(rng, images.shape[0], images.dtype)
        result = images
        for index, op in enumerate(ops):
            result = xp.where((choice == index)[:, None, None, None], op(images, sign, level), result)
        images = result
    return images
