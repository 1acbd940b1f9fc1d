"""Random numbers that belong to samples, not to a process: the same on any number of ranks.

A generator such as ``numpy.random.default_rng(seed)`` gives the n-th number of its sequence:
what an image gets depends on how many numbers the process drew before it. Split a batch over
two ranks and each rank's generator hands its images other numbers than one process would;
resume a run and the generator must be restored exactly. ``SampleStream`` draws instead from a
counter-based generator: the number at (row r, element j) of the k-th draw is a hash of

    (key, samples[r], k, j)        key: e.g. (seed, what it is for, epoch)

and of nothing else. Row r belongs to sample ``samples[r]`` (an image's index in the data set),
so a rank that holds images 17 and 3 draws for them what one process holding the whole batch
draws in their rows, and a resumed run draws what the uninterrupted one drew. A stream has no
state to save beyond its key.

It answers the two calls the engine's operations make of a generator, with the first axis the
samples' (its length must be ``len(samples)``):

    stream.random(shape, dtype)          uniform in [0, 1): 24 random bits in float32, 32 in float64
    stream.integers(low, high, size)     uniform integers in [low, high)

so ``ops.dropout_forward``, ``augment.random_crop`` and ``ops.rand_augment`` take it where they
take a generator, on NumPy and on CuPy alike: the draws are computed on the backend (nothing is
drawn on the host or copied to the device).

The hash (minivit.ops.counter_random, the reference; one CUDA kernel on a GPU): each row's
32-bit key is SplitMix64 of (key, k, sample), and element j is ``lowbias32(row key XOR
lowbias32(j))``. 32-bit words halve the memory traffic of a 64-bit hash: on the CPU a draw
costs about what NumPy's own generator costs (benchmarks/sample_random_cost.py measures both).
"""

from __future__ import annotations

import numpy as np  # host side: dtypes, the scalar keys

from minivit import backend, dispatch

_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15  # (minivit.ops.counter_random.GOLDEN64)


def splitmix64(value: int) -> int:
    """SplitMix64's output function on one 64-bit integer (Python ints, exact)."""
    value = (value + _GOLDEN64) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def stream_key(*parts: int) -> int:
    """One 64-bit key from whole numbers, e.g. ``stream_key(seed, purpose, epoch)``."""
    key = 0
    for part in parts:
        key = splitmix64(key ^ (int(part) & _MASK64))
    return key


class SampleStream:
    """Random draws whose row r is a function of (key, samples[r], draw number) alone.

    ``key``: a 64-bit integer (``stream_key(seed, purpose, epoch)``); ``samples``: the samples'
    indices (B,), integers, on the backend or the host. Draws are numbered from 0 in the order
    they are made; ``restart`` points the stream at other samples and numbers from 0 again.
    """

    def __init__(self, key: int = 0, samples=None):
        self.restart(key, samples if samples is not None else np.zeros(0, dtype=np.int64))

    def restart(self, key: int, samples) -> SampleStream:
        """Draw for ``samples`` under ``key`` from draw number 0. Returns self."""
        self.key = int(key) & _MASK64
        self.samples = backend.asarray(samples).astype(np.uint64)
        self.draws = 0
        return self

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def random(self, size=None, dtype="float64"):
        """Uniform floats in [0, 1) of shape ``size`` (its first axis the samples'): float32 or float64."""
        shape = (len(self),) if size is None else ((size,) if np.ndim(size) == 0 else tuple(size))
        shape = tuple(int(n) for n in shape)
        if not shape or shape[0] != len(self):
            raise ValueError(f"This stream draws for {len(self)} samples (one row each), but a draw of shape "
                             f"{shape} was asked of it: a model that draws per sample (dropout in a training "
                             "step) must run on the step's own batch; call model.eval() for other inputs.")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"SampleStream.random draws float32 or float64; got dtype {np.dtype(dtype)}.")
        draw_key = splitmix64(self.key ^ splitmix64(self.draws))  # the k-th draw's own key
        self.draws += 1
        return dispatch.sample_uniform(self.samples, draw_key, shape, np.dtype(dtype))

    def integers(self, low: int, high: int | None = None, size=None):
        """Uniform int64 in [low, high) (NumPy's convention: ``integers(n)`` is [0, n))."""
        xp = backend.xp
        if high is None:
            low, high = 0, low
        if high <= low:
            raise ValueError(f"SampleStream.integers: high ({high}) must be above low ({low}).")
        uniform = self.random(size, dtype="float64")  # below 1 - 2**-32: the floor stays below high
        return xp.floor(uniform * (high - low)).astype(xp.int64) + low


def install_dropout_stream(model, stream) -> None:
    """Make every dropout of ``model`` (the modules sharing ``model.rng``) draw from ``stream``."""
    shared = model.rng
    for module in model.modules():
        if getattr(module, "rng", None) is shared:
            module.rng = stream
    model.rng = stream
