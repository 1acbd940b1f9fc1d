"""Uniform draws from a counter-based generator, one row per sample: the reference.

    uniform = sample_uniform(samples, draw_key, shape, dtype)    # (B, ...) in [0, 1)

Element (r, j) of the draw (j counts the row's elements in order) is a hash of
(draw_key, samples[r], j) and of nothing else:

    row_key[r] = top 32 bits of SplitMix64(samples[r] * 0x9E3779B97F4A7C15 + draw_key)
    word[r, j] = lowbias32(row_key[r] XOR lowbias32(j))
    float32: (word >> 8) * 2**-24        float64: word * 2**-32

SplitMix64 is the output function of Steele, Lea and Flood's generator (2014); lowbias32 is
Chris Wellons' 32-bit integer hash (a bijection with very low bias). minivit.sample_random
builds its per-sample streams on this; on a GPU one CUDA kernel computes the same words
(minivit/kernels/gpu/counter_random.cu) instead of the ~25 launches of this array math.
"""

from __future__ import annotations

import math

from minivit import backend

GOLDEN64 = 0x9E3779B97F4A7C15


def splitmix64(values):
    """SplitMix64's output function on a uint64 array (arithmetic modulo 2**64)."""
    u64 = backend.xp.uint64  # (NumPy's integer types: CuPy uses the same)
    values = values + u64(GOLDEN64)
    values = (values ^ (values >> u64(30))) * u64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> u64(27))) * u64(0x94D049BB133111EB)
    return values ^ (values >> u64(31))


def lowbias32(words):
    """Wellons' lowbias32 on a uint32 array, in place."""
    u32 = backend.xp.uint32
    words ^= words >> u32(16)
    words *= u32(0x7FEB352D)
    words ^= words >> u32(15)
    words *= u32(0x846CA68B)
    words ^= words >> u32(16)
    return words


def sample_uniform(samples, draw_key: int, shape: tuple, dtype):
    """Uniform floats in [0, 1) of ``shape`` (float32: 24 random bits; float64: 32), row r drawn for
    ``samples[r]`` (uint64 (B,), B = shape[0]) under ``draw_key`` (a 64-bit integer)."""
    xp = backend.xp
    rows = int(shape[0])
    row_length = math.prod(int(size) for size in shape[1:])
    row_keys = (splitmix64(samples * xp.uint64(GOLDEN64) + xp.uint64(draw_key)) >> xp.uint64(32)).astype(xp.uint32)
    words = row_keys[:, None] ^ lowbias32(xp.arange(row_length, dtype=xp.uint32))[None, :]  # (B, row_length)
    words = lowbias32(words).reshape(rows, *shape[1:])
    if xp.dtype(dtype) == xp.float32:  # the top 24 bits: every float32 in [0, 1) with 24-bit spacing
        words >>= xp.uint32(8)
        uniform = words.astype(xp.float32)
        uniform *= xp.float32(2.0 ** -24)
        return uniform
    uniform = words.astype(xp.float64)
    uniform *= 2.0 ** -32
    return uniform
