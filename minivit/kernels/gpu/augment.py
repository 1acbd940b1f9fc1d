"""Crop, flip and normalise on the GPU: replaces ops.crop_flip_normalize, one launch (augment.cu), one
thread per output pixel, instead of the reference's ~12."""

from __future__ import annotations

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import CudaKernel, contiguous, grid
from minivit.kernels.registry import replaces


def _stand_in(images, top, left, flip, padding, mean, std, out, B, C, H, W):
    out[...] = ops.crop_flip_normalize(images, top, left, flip, int(padding), mean, std)


CROP_FLIP_NORMALIZE = CudaKernel("augment.cu", "crop_flip_normalize", _stand_in)


@replaces("crop_flip_normalize")
def crop_flip_normalize(images, top, left, flip, padding: int, mean, std):
    """Replaces ops.crop_flip_normalize: one kernel, one thread per output pixel (augment.cu)."""
    xp = backend.xp
    if images.dtype != xp.uint8 or images.ndim != 4:
        return ops.crop_flip_normalize(images, top, left, flip, padding, mean, std)
    B, C, H, W = images.shape
    out = xp.empty((B, C, H, W), dtype=xp.float32)
    CROP_FLIP_NORMALIZE(grid(out.size), (contiguous(images), contiguous(top.astype(xp.int64, copy=False)),
                                         contiguous(left.astype(xp.int64, copy=False)),
                                         contiguous(flip.astype(xp.bool_, copy=False)), np.int32(padding),
                                         contiguous(xp.asarray(mean, dtype=xp.float32)),
                                         contiguous(xp.asarray(std, dtype=xp.float32)), out,
                                         np.int32(B), np.int32(C), np.int32(H), np.int32(W)))
    return out
