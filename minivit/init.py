"""Parameter initialisation, on the host.

Initial values are drawn with ``numpy.random.default_rng(seed)`` on the CPU and
only then moved to the active backend, so one seed gives the same initial
weights on NumPy and on CuPy. (Host-side module: it imports NumPy on purpose.)
"""

from __future__ import annotations

import numpy as np


def trunc_normal(rng: np.random.Generator, shape: tuple, std: float, low: float = -2.0, high: float = 2.0):
    """Normal(0, std^2) values, redrawn until they lie in [low, high].

    This is ``torch.nn.init.trunc_normal_(tensor, std=std)`` as transformers calls
    it: the bounds are absolute (+-2), so at std = 0.02 they sit at +-100 std and
    almost nothing is redrawn; it is, in effect, a normal distribution.
    """
    values = rng.normal(0.0, std, size=shape)
    outside = (values < low) | (values > high)
    while outside.any():
        values[outside] = rng.normal(0.0, std, size=int(outside.sum()))
        outside = (values < low) | (values > high)
    return values


def host_rng(seed: int) -> np.random.Generator:
    """The host generator that draws a model's initial values."""
    return np.random.default_rng(seed)


def zeros(shape: tuple):
    return np.zeros(shape)


def ones(shape: tuple):
    return np.ones(shape)


def child_seed(seed: int, stream: int) -> int:
    """An independent seed derived from ``seed`` for a second random stream (e.g. dropout)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])
