"""Where a training step's time goes: seconds per step in each forward/backward function.

    python benchmarks/profile_step.py [--preset cifar-tiny] [--batch-size 128] [--steps 3]

Wraps every op function that the modules call with a timer (nested calls are counted in both:
multi_head_attention_backward includes its linear_backward), runs a few training steps of
minivit on NumPy, and prints the mean time per step of each, largest first.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minivit  # noqa: E402, I001  (before NumPy: minivit.backend sets OpenBLAS's thread timeout)
import numpy as np  # noqa: E402
from minivit import model as model_module  # noqa: E402
from minivit import nn as nn_module  # noqa: E402
from minivit import optim  # noqa: E402
from minivit.ops import attention as attention_module  # noqa: E402
from minivit.ops import cross_entropy_backward, cross_entropy_forward  # noqa: E402

seconds = collections.defaultdict(float)


def timed(name, function):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds[name] += time.perf_counter() - start
        return result
    return wrapper


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    for module in (model_module, nn_module, attention_module):
        for name in list(vars(module)):
            if name.endswith(("_forward", "_backward")) or name in ("im2col", "col2im", "merge_heads"):
                setattr(module, name, timed(name, getattr(module, name)))

    model = minivit.ViTForImageClassification(args.preset)
    optimizer = optim.AdamW(model.named_parameters())
    rng = np.random.default_rng(0)
    config = model.config
    images = rng.standard_normal((args.batch_size, config.num_channels, config.image_size,
                                  config.image_size)).astype("float32")
    labels = rng.integers(0, config.num_labels, args.batch_size)

    def step():
        optimizer.zero_grad()
        loss, cache = cross_entropy_forward(model.forward(images), labels)
        model.backward(cross_entropy_backward(1.0, cache))
        start = time.perf_counter()
        optimizer.step()
        seconds["optimizer step"] += time.perf_counter() - start

    step()  # warm-up: kernels compile, memory is allocated
    seconds.clear()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    total = (time.perf_counter() - start) / args.steps
    print(f"{args.preset}, batch {args.batch_size}: {total * 1000:.0f} ms per training step "
          f"(mean of {args.steps})")
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        if value / args.steps >= 0.0005:
            print(f"  {name:32s} {value / args.steps * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
