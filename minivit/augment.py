"""Data augmentation on the active backend, a whole batch at a time.

Images arrive as uint8 (B, C, H, W) and leave as normalised float32, with
targets as labels (B,) or, after mixup/cutmix, as probabilities (B, K).
Every operation is batched array math (gathers, ``where``, reductions), so the
same code runs on NumPy and on CuPy, and nothing is copied but the batch.

Two generators drive it: ``rng`` (the backend's) draws per-image randomness
(crop offsets, flips, RandAugment's choices), and ``host_rng`` (NumPy's) draws
the per-batch scalars (mixup's lambda, cutmix's box), which therefore never
need a device-to-host read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minivit import backend, dispatch


@dataclass
class AugmentConfig:
    crop_padding: int = 4  # random crop after zero padding; 0 turns it off
    horizontal_flip: bool = True
    randaugment_ops: int = 0  # RandAugment: ops per image (0: off); 2 is the usual choice
    randaugment_magnitude: float = 9.0  # 0 ... 10
    mixup_alpha: float = 0.0  # 0: off; 0.8 in DeiT's recipe
    cutmix_alpha: float = 0.0  # 0: off; 1.0 in DeiT's recipe
    mix_prob: float = 1.0  # the chance that a batch is mixed at all (mixup or cutmix)

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0; got {self.crop_padding}.")
        if self.randaugment_ops < 0 or not 0 <= self.randaugment_magnitude <= 10:
            raise ValueError("randaugment_ops must be >= 0 and randaugment_magnitude in [0, 10]; got "
                             f"{self.randaugment_ops} and {self.randaugment_magnitude}.")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0 or not 0 <= self.mix_prob <= 1:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0, mix_prob in [0, 1].")


# --- geometry ----------------------------------------------------------------------------

def random_crop(images, padding: int, rng):
    """Pad each image by ``padding`` zeros on every side, then cut a random window of the original size."""
    xp = backend.xp
    if padding == 0:
        return images
    B, C, H, W = images.shape
    padded = xp.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    top = rng.integers(0, 2 * padding + 1, size=B)
    left = rng.integers(0, 2 * padding + 1, size=B)
    rows = (top[:, None] + xp.arange(H))[:, None, :, None]  # (B, 1, H, 1)
    columns = (left[:, None] + xp.arange(W))[:, None, None, :]  # (B, 1, 1, W)
    return padded[xp.arange(B)[:, None, None, None], xp.arange(C)[None, :, None, None], rows, columns]


def horizontal_flip(images, rng, probability: float = 0.5):
    xp = backend.xp
    flip = rng.random(images.shape[0]) < probability
    return xp.where(flip[:, None, None, None], images[..., ::-1], images)


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


# --- RandAugment -----------------------------------------------------------------------------
# Each op takes float images in [0, 255], a per-image sign (+1 or -1) and the magnitude
# scaled to [0, 1]; ranges follow RandAugment (Cubuk et al. 2019) as timm sets them.

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
    B = images.shape[0]
    for _ in range(num_ops):
        choice = rng.integers(0, len(ops), size=B)
        sign = xp.where(rng.random(B) < 0.5, -1.0, 1.0).astype(images.dtype)
        result = images
        for index, op in enumerate(ops):
            result = xp.where((choice == index)[:, None, None, None], op(images, sign, level), result)
        images = result
    return images


# --- mixing ----------------------------------------------------------------------------------

def one_hot(labels, num_classes: int, dtype="float32"):
    xp = backend.xp
    return (labels[:, None] == xp.arange(num_classes)[None, :]).astype(dtype)


def mixup(images, targets, alpha: float, host_rng):
    """x = lam x + (1 - lam) x_partner, targets likewise; the partner of image i is image B-1-i."""
    lam = float(host_rng.beta(alpha, alpha))
    return lam * images + (1.0 - lam) * images[::-1], lam * targets + (1.0 - lam) * targets[::-1]


def cutmix(images, targets, alpha: float, host_rng):
    """Paste a box from the partner image; the targets mix by the box's share of the area."""
    xp = backend.xp
    _, _, H, W = images.shape
    lam = float(host_rng.beta(alpha, alpha))
    cut_h, cut_w = int(H * math.sqrt(1.0 - lam)), int(W * math.sqrt(1.0 - lam))
    cy, cx = int(host_rng.integers(H)), int(host_rng.integers(W))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, H)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, W)
    mixed = images.copy()
    mixed[:, :, top:bottom, left:right] = images[::-1, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (H * W)
    return mixed, lam * targets + (1.0 - lam) * xp.asarray(targets[::-1])


# --- the pipeline ----------------------------------------------------------------------------

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


def augment_batch(images, labels, config: AugmentConfig, mean, std, num_classes: int, rng, host_rng):
    """One training batch: geometry and RandAugment on pixels, normalise, then mix.

    Returns (pixel_values float32 (B, C, H, W), targets): integer labels, or
    (B, num_classes) probabilities when mixup or cutmix is on.
    """
    xp = backend.xp
    if config.randaugment_ops:
        images = random_crop(images, config.crop_padding, rng)
        if config.horizontal_flip:
            images = horizontal_flip(images, rng)
        images = rand_augment(images.astype(xp.float32), config.randaugment_ops,
                              config.randaugment_magnitude, rng)
        pixel_values = normalize(images, mean, std)
    else:  # crop, flip and normalise as one operation (one kernel on a GPU)
        B, padding = images.shape[0], config.crop_padding
        no_shift = xp.zeros(B, dtype=xp.int64)
        top = rng.integers(0, 2 * padding + 1, size=B) if padding else no_shift
        left = rng.integers(0, 2 * padding + 1, size=B) if padding else no_shift
        flip = rng.random(B) < 0.5 if config.horizontal_flip else xp.zeros(B, dtype=bool)
        pixel_values = dispatch.crop_flip_normalize(images, top, left, flip, padding, mean, std)

    targets = labels
    if config.mixup_alpha > 0 or config.cutmix_alpha > 0:
        targets = one_hot(labels, num_classes)
        if float(host_rng.random()) < config.mix_prob:
            use_cutmix = config.cutmix_alpha > 0 and (config.mixup_alpha == 0 or host_rng.random() < 0.5)
            if use_cutmix:
                pixel_values, targets = cutmix(pixel_values, targets, config.cutmix_alpha, host_rng)
            else:
                pixel_values, targets = mixup(pixel_values, targets, config.mixup_alpha, host_rng)
    return pixel_values.astype(xp.float32, copy=False), targets
