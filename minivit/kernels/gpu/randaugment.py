"""RandAugment on the GPU: replaces ops.rand_augment with the same draws per round (each image's operation
and sign), then one kernel that applies the round (randaugment.cu): ~6 launches a round instead of ~300."""

from __future__ import annotations

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import CudaKernel, Replay, contiguous
from minivit.kernels.registry import replaces


def _stand_in(images, choice, sign, level, posterize_step, solarize_threshold, out, C, H, W):
    # One round of the reference, replaying the round's draws: each image's operation (choice) and the
    # uniform draw that gave its sign (below 0.5: -1).
    drawn = Replay(integers=choice, random=backend.xp.where(sign < 0, 0.0, 1.0))
    out[...] = ops.rand_augment(images, 1, 10.0 * float(level), drawn)


RANDAUGMENT_ROUND = CudaKernel("randaugment.cu", "randaugment_round", _stand_in)


@replaces("rand_augment")
def rand_augment(images, num_ops: int, magnitude: float, rng):
    """Replaces ops.rand_augment: the same draws per round (each image's operation and sign), then
    one kernel applies the round (randaugment.cu): ~6 launches a round instead of ~300."""
    xp = backend.xp
    if images.dtype != xp.float32 or images.ndim != 4 or images.shape[1] > 4:
        return ops.rand_augment(images, num_ops, magnitude, rng)
    from minivit.ops.randaugment import round_draws

    level = magnitude / 10.0
    posterize_step = 2.0 ** (8 - (8 - int(round(4 * level))))  # as ops.randaugment's posterize works it out
    solarize_threshold = 256.0 - 256.0 * level
    B, C, H, W = images.shape
    for _ in range(num_ops):
        choice, sign = round_draws(rng, B, images.dtype)
        images = contiguous(images)
        out = xp.empty_like(images)
        RANDAUGMENT_ROUND(B, (images, choice, sign, np.float32(level), np.float32(posterize_step),
                              np.float32(solarize_threshold), out, np.int32(C), np.int32(H), np.int32(W)),
                          shared_mem=C * H * W * 4)
        images = out
    return images
