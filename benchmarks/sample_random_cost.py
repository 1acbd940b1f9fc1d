"""What drawing randomness per sample costs: SampleStream against the backend's generator.

    python benchmarks/sample_random_cost.py [--preset cifar-tiny] [--batch-size 128] [--dropout 0.1] [--steps 20]
                                            [--backend numpy|cupy]

A training run draws its augmentation and dropout masks per image (minivit.training.randomness:
the same on any number of ranks). This times, in one process, each side of three comparisons:
  draw       one dropout mask of the hidden states (B, N+1, D): SampleStream.random against
             the backend's Generator.random (float32)
  augment    the batch's augmentation with every augmentation on (crop, flip, RandAugment 2x9,
             mixup/cutmix): per-sample streams (RunRandomness.augment_step) against two generators
             (augment.augment_batch)
  step       a training step (forward, cross-entropy, backward, AdamW) of the preset with dropout
             --dropout on the hidden states and attention probabilities: masks from the per-sample
             stream against masks from a generator
and prints milliseconds per call (the median of --steps) and the ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402
from timing import median_seconds, minivit_step_functions  # noqa: E402

from minivit import backend  # noqa: E402
from minivit.augment import AugmentConfig, augment_batch  # noqa: E402
from minivit.config import preset  # noqa: E402
from minivit.model import ViTForImageClassification  # noqa: E402
from minivit.optim import AdamW  # noqa: E402
from minivit.sample_random import SampleStream, install_dropout_stream, stream_key  # noqa: E402
from minivit.training.data import Batches  # noqa: E402
from minivit.training.randomness import RunRandomness  # noqa: E402

EVERY_AUGMENTATION = AugmentConfig(crop_padding=4, horizontal_flip=True, randaugment_ops=2,
                                   randaugment_magnitude=9, mixup_alpha=0.8, cutmix_alpha=1.0)


def row(name: str, per_sample: float, generator: float) -> str:
    return (f"{name:<10} per-sample {per_sample * 1e3:8.2f} ms   generator {generator * 1e3:8.2f} ms   "
            f"ratio {per_sample / generator:5.2f}")


def step_seconds(config, per_sample: bool, pixels, labels, steps: int) -> float:
    """A training step's median seconds, its dropout masks from a per-sample stream or from the model's generator."""
    model = ViTForImageClassification(config, seed=0)
    _, train_step = minivit_step_functions(model, AdamW(model.named_parameters()), pixels, labels)
    if not per_sample:
        return median_seconds(train_step, steps, 2, backend.synchronize)
    stream = SampleStream(stream_key(0, 1, 0), np.arange(len(labels)))
    install_dropout_stream(model, stream)

    def per_sample_step():
        stream.restart(stream.key, stream.samples)  # as RunRandomness does before each step
        train_step()

    return median_seconds(per_sample_step, steps, 2, backend.synchronize)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    args = parser.parse_args()
    backend.use(args.backend)
    B, steps = args.batch_size, args.steps
    config = preset(args.preset, hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    tokens = (config.image_size // config.patch_size) ** 2 + 1
    print(describe())
    print(f"{args.preset}, batch {B}, dropout {args.dropout}, {steps} timed calls each (median)\n")

    generator = backend.default_rng(0)
    stream = SampleStream(stream_key(0, 1, 0), np.arange(B))
    shape = (B, tokens, config.hidden_size)
    print(row("draw", median_seconds(lambda: stream.restart(stream.key, stream.samples).random(shape, "float32"),
                                     steps, 2, backend.synchronize),
              median_seconds(lambda: generator.random(shape, dtype=np.float32), steps, 2, backend.synchronize)))

    rng = np.random.default_rng(1)
    size = config.image_size
    images = rng.integers(0, 256, (4 * B, config.num_channels, size, size)).astype(np.uint8)
    labels = rng.integers(0, config.num_labels, 4 * B)
    mean, std = backend.asarray(np.full(3, 0.5, np.float32)), backend.asarray(np.full(3, 0.25, np.float32))
    model = ViTForImageClassification(config, seed=0)
    batches = Batches(images, labels, B, seed=0)
    randomness = RunRandomness(0, batches, model)
    batch = batches.get(0)
    host_rng = np.random.default_rng(2)
    print(row("augment",
              median_seconds(lambda: randomness.augment_step(0, *batch, EVERY_AUGMENTATION, mean, std,
                                                             config.num_labels), steps, 2, backend.synchronize),
              median_seconds(lambda: augment_batch(*batch, EVERY_AUGMENTATION, mean, std, config.num_labels,
                                                   generator, host_rng), steps, 2, backend.synchronize)))

    pixels = backend.asarray(rng.standard_normal((B, config.num_channels, size, size)), dtype="float32")
    step_labels = backend.asarray(rng.integers(0, config.num_labels, B))
    times = {side: step_seconds(config, side == "per-sample", pixels, step_labels, steps)
             for side in ("generator", "per-sample")}
    print(row("step", times["per-sample"], times["generator"]))


if __name__ == "__main__":
    main()
