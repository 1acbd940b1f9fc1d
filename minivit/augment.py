"""Data augmentation on the active backend, a whole batch at a time.

Images arrive as uint8 (B, C, H, W) and leave as normalised float32, with
targets as labels (B,) or, after mixup/cutmix, as probabilities (B, K).
Every operation is batched array math (gathers, ``where``, reductions), so the
same code runs on NumPy and on CuPy, and nothing is copied but the batch.

Two sources of randomness drive it: ``rng`` draws per-image randomness (crop
offsets, flips, RandAugment's choices), and ``host_rng`` (NumPy's) draws the
per-batch scalars (whether to mix, mixup's lambda, cutmix's box), which therefore
never need a device-to-host read. Any generator will do; a training run passes a
``minivit.sample_random.SampleStream``, whose draws for an image depend on the image
alone, and a ``host_rng`` of (seed, step), so that a batch split over ranks is
augmented as one process augments it (minivit.training.randomness).

Mixing pairs image i of the batch with image B-1-i. A rank that holds one shard of
the batch passes ``partners``: the images its shard's partners are (they lie on
another rank), which it augments itself, drawing what their own rank draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minivit import backend, dispatch
from minivit.ops.pixels import crop_flip_normalize, normalize  # noqa: F401 (part of this module's API)
from minivit.ops.randaugment import RANDAUGMENT_OPS, _matrices, affine, rand_augment  # noqa: F401 (likewise)
from minivit.option_checks import number_problem, whole_number_problem


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
        problems = [
            whole_number_problem("AugmentConfig.crop_padding", self.crop_padding, 0),
            None if isinstance(self.horizontal_flip, bool) else
            f"AugmentConfig.horizontal_flip must be True or False; got {self.horizontal_flip!r}",
            whole_number_problem("AugmentConfig.randaugment_ops", self.randaugment_ops, 0, len(RANDAUGMENT_OPS)),
            number_problem("AugmentConfig.randaugment_magnitude", self.randaugment_magnitude, 0, 10),
            # Beta(alpha, alpha) draws the mixing share; 0 turns the mix off
            number_problem("AugmentConfig.mixup_alpha", self.mixup_alpha, 0),
            number_problem("AugmentConfig.cutmix_alpha", self.cutmix_alpha, 0),
            number_problem("AugmentConfig.mix_prob", self.mix_prob, 0, 1),
        ]
        problems = [problem for problem in problems if problem]
        if problems:
            raise ValueError("; ".join(problems) + ".")


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


# --- mixing ----------------------------------------------------------------------------------

def one_hot(labels, num_classes: int, dtype="float32"):
    xp = backend.xp
    return (labels[:, None] == xp.arange(num_classes)[None, :]).astype(dtype)


def mixup(images, targets, alpha: float, host_rng, partner_images=None, partner_targets=None):
    """x = lam x + (1 - lam) x_partner, targets likewise; the partner of image i is image B-1-i,
    or image i of ``partner_images`` (with ``partner_targets``) when given."""
    if partner_images is None:
        partner_images, partner_targets = images[::-1], targets[::-1]
    lam = float(host_rng.beta(alpha, alpha))
    return lam * images + (1.0 - lam) * partner_images, lam * targets + (1.0 - lam) * partner_targets


def cutmix(images, targets, alpha: float, host_rng, partner_images=None, partner_targets=None):
    """Paste a box from the partner image (as in ``mixup``); the targets mix by the box's share of the area."""
    xp = backend.xp
    if partner_images is None:
        partner_images, partner_targets = images[::-1], targets[::-1]
    _, _, H, W = images.shape
    lam = float(host_rng.beta(alpha, alpha))
    cut_h, cut_w = int(H * math.sqrt(1.0 - lam)), int(W * math.sqrt(1.0 - lam))
    cy, cx = int(host_rng.integers(H)), int(host_rng.integers(W))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, H)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, W)
    mixed = images.copy()
    mixed[:, :, top:bottom, left:right] = partner_images[:, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (H * W)
    return mixed, lam * targets + (1.0 - lam) * xp.asarray(partner_targets)


# --- the pipeline ----------------------------------------------------------------------------

def augment_images(images, config: AugmentConfig, mean, std, rng):
    """Geometry and RandAugment on pixels, then normalise: uint8 (B, C, H, W) -> float32 (B, C, H, W).

    Image i's result depends on image i and on row i of each draw from ``rng`` alone.
    """
    xp = backend.xp
    if config.randaugment_ops:
        images = random_crop(images, config.crop_padding, rng)
        if config.horizontal_flip:
            images = horizontal_flip(images, rng)
        images = dispatch.rand_augment(images.astype(xp.float32), config.randaugment_ops,
                                       config.randaugment_magnitude, rng)
        return normalize(images, mean, std)
    # crop, flip and normalise as one operation (one kernel on a GPU)
    B, padding = images.shape[0], config.crop_padding
    no_shift = xp.zeros(B, dtype=xp.int64)
    top = rng.integers(0, 2 * padding + 1, size=B) if padding else no_shift
    left = rng.integers(0, 2 * padding + 1, size=B) if padding else no_shift
    flip = rng.random(B) < 0.5 if config.horizontal_flip else xp.zeros(B, dtype=bool)
    return dispatch.crop_flip_normalize(images, top, left, flip, padding, mean, std)


def augment_batch(images, labels, config: AugmentConfig, mean, std, num_classes: int, rng, host_rng,
                  partners=None, mix: bool = True):
    """One training batch: geometry and RandAugment on pixels, normalise, then mix.

    Returns (pixel_values float32 (B, C, H, W), targets): integer labels, or
    (B, num_classes) probabilities when mixup or cutmix is on. ``partners``: None (image i
    mixes with image B-1-i of this batch), or a function returning (images, labels, rng) of
    the images that this batch's images mix with, in order, and the generator that augments
    them as their own rank does: called only when the batch is mixed. ``mix=False`` leaves
    mixup and cutmix out (the end of a run, ``--mixing-stops-at``).
    """
    xp = backend.xp
    pixel_values = augment_images(images, config, mean, std, rng)
    targets = labels
    if mix and (config.mixup_alpha > 0 or config.cutmix_alpha > 0):
        targets = one_hot(labels, num_classes)
        if float(host_rng.random()) < config.mix_prob:
            use_cutmix = config.cutmix_alpha > 0 and (config.mixup_alpha == 0 or host_rng.random() < 0.5)
            partner_pixels = partner_targets = None  # (None: the batch reversed)
            if partners is not None:
                partner_images, partner_labels, partner_rng = partners()
                partner_pixels = augment_images(partner_images, config, mean, std, partner_rng)
                partner_targets = one_hot(partner_labels, num_classes)
            mix = cutmix if use_cutmix else mixup
            alpha = config.cutmix_alpha if use_cutmix else config.mixup_alpha
            pixel_values, targets = mix(pixel_values, targets, alpha, host_rng, partner_pixels, partner_targets)
    return pixel_values.astype(xp.float32, copy=False), targets
