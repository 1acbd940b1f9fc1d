"""What the throughput benchmarks time, and how: shared by throughput_cpu.py and throughput_gpu.py."""

from __future__ import annotations

import time

import numpy as np

from minivit import no_grad
from minivit.dispatch import cross_entropy_backward, cross_entropy_forward


def median_seconds(function, steps: int, warmup: int, synchronize=None) -> float:
    """Seconds per call: the median of ``steps`` timed calls after ``warmup`` untimed ones.
    ``synchronize`` (e.g. backend.synchronize) waits for the device before each clock read."""
    synchronize = synchronize or (lambda: None)
    for _ in range(warmup):
        function()
    synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def minivit_step_functions(model, optimizer, images, labels):
    """(inference, train_step) for a minivit model: a forward in eval mode; forward,
    cross-entropy, backward and an optimizer step in training mode."""

    def inference():
        model.eval()
        with no_grad():  # no backward follows: keep no activations
            model.forward(images)

    def train_step():
        model.train()
        optimizer.zero_grad()
        loss, cache = cross_entropy_forward(model.forward(images), labels)
        model.backward(cross_entropy_backward(1.0, cache))
        optimizer.step()

    return inference, train_step
