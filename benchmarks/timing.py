"""What the throughput benchmarks time, and how: shared by throughput_cpu.py and throughput_gpu.py."""

from __future__ import annotations

import time

import numpy as np

from minivit import no_grad
from minivit.training.step import TrainStep


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
    """(inference, train_step) for a minivit model: a forward in eval mode; the training run's own
    step (minivit.training.step.TrainStep: forward, cross-entropy, backward, an optimizer step and the
    step's correct count) at the optimizer's learning rate, without clipping or label smoothing, as
    the PyTorch side it is compared with."""
    take_step = TrainStep(model, optimizer)

    def inference():
        model.eval()
        with no_grad():  # no backward follows: keep no activations
            model.forward(images)

    def train_step():
        take_step(images, labels, optimizer.lr)

    return inference, train_step
