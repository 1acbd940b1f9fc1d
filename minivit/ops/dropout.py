"""Inverted dropout: zero each element with probability p, scale the rest by 1 / (1 - p).

The scaling keeps the expected activation unchanged, so evaluation needs no rescaling.
"""

from __future__ import annotations


def dropout_forward(x, p: float, rng, training: bool = True):
    """rng: a backend generator (``minivit.backend.default_rng``), or in training a per-image stream
    (``minivit.sample_random.SampleStream``: the same ``random`` call). Identity when not training or p == 0."""
    if not training or p == 0.0:
        return x, None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"Dropout probability must be in [0, 1); got {p}.")
    draw_dtype = "float32" if x.dtype == "float16" else x.dtype  # generators draw float32 at the least
    keep = rng.random(x.shape, dtype=draw_dtype) >= p
    mask = keep.astype(x.dtype) * (1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dout, mask):
    """The same mask (already scaled) multiplies the gradient."""
    return dout if mask is None else dout * mask
