"""Where a training step's time goes on the CPU: milliseconds per step in each dispatched operation.

    python benchmarks/profile_step.py [--preset cifar-tiny] [--batch-size 128] [--steps 3] [--kernels fast] [--shapes]

The step is the training run's own (minivit.training.step.TrainStep, with gradient clipping at 1).
Every operation the model, the loss and the optimizer run goes through minivit.dispatch, so a wrapper
put on every operation (``dispatch.wrap``) times them all, each call once (a composite such as
attention_heads_forward calls its softmax directly, not through dispatch: no double counting). Runs a few
training steps with the fast kernels (default) or the pure reference (--kernels reference), and
prints the mean time per step of each operation, largest first, and what is left outside them. With
--shapes each operation is counted apart for each set of array shapes it was called with, a layout that
is not C-ordered marked "F/strided" (a kernel that falls back to its reference for such an array shows
up as the slow one of its calls; docs/kernels.md, the patch projection's weight).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minivit  # noqa: E402
from minivit import dispatch, optim  # noqa: E402
from minivit.kernels import tune_process  # noqa: E402
from minivit.training.step import TrainStep  # noqa: E402

seconds = collections.defaultdict(float)


by_shapes = False  # --shapes: one line per operation and shapes of its arrays
calls = collections.Counter()


def describe_arrays(args) -> str:
    """The shapes of a call's arrays (and of those in a cache tuple), e.g. "(128, 17, 384) cache((128, 17, 128))"."""
    def one(array):
        return f"{array.shape}" + ("" if array.flags.c_contiguous else " F/strided")

    parts = []
    for arg in args:
        if isinstance(arg, np.ndarray):
            parts.append(one(arg))
        elif isinstance(arg, tuple):
            inner = [one(item) for item in arg if isinstance(item, np.ndarray)]
            if inner:
                parts.append(f"cache({', '.join(inner)})")
    return " ".join(parts)


def timed(name: str, function):
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            key = f"{name} {describe_arrays(args)}" if by_shapes else name
            seconds[key] += time.perf_counter() - start
            calls[key] += 1
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--kernels", choices=dispatch.MODES, default="fast")
    parser.add_argument("--shapes", action="store_true", help="one line per operation and shapes of its arrays")
    args = parser.parse_args()
    global by_shapes
    by_shapes = args.shapes
    tune_process()
    dispatch.use(args.kernels)
    dispatch.wrap(timed)  # every operation, timed (for the rest of the process)

    model = minivit.ViTForImageClassification(args.preset)
    optimizer = optim.AdamW(model.named_parameters())
    rng = np.random.default_rng(0)
    config = model.config
    images = rng.standard_normal((args.batch_size, config.num_channels, config.image_size,
                                  config.image_size)).astype("float32")
    labels = rng.integers(0, config.num_labels, args.batch_size)

    take_step = TrainStep(model, optimizer, grad_clip=1.0)  # the training run's step

    def step():
        take_step(images, labels, optimizer.lr)

    step()  # warm-up: kernels compile, memory is allocated
    seconds.clear()
    calls.clear()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    total = (time.perf_counter() - start) / args.steps
    print(f"{args.preset}, batch {args.batch_size}, {args.kernels} kernels: {total * 1000:.0f} ms per training step "
          f"(mean of {args.steps})")
    in_operations = sum(seconds.values()) / args.steps  # no double counting: composites call no dispatcher
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        if value / args.steps >= 0.0005:
            print(f"  {name:32s} {value / args.steps * 1000:7.1f} ms" +
                  (f"  ({calls[name] // args.steps} a step)" if by_shapes else ""))
    print(f"  {'outside the operations':32s} {max(0.0, total - in_operations) * 1000:7.1f} ms (Python, += of "
          "gradients, reshapes)")


if __name__ == "__main__":
    main()
