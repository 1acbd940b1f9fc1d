"""Images per second, minivit on NumPy beside transformers' ViT on PyTorch CPU, in one run.

    python benchmarks/throughput_cpu.py [--preset cifar-tiny] [--batch-size 128] [--threads N]

Same config, same batch, same thread count (BLAS threads for NumPy, torch.set_num_threads
for PyTorch). Inference is a forward pass in eval mode; a training step is forward,
cross-entropy, backward and an AdamW step. Prints both sides, their ratio and the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=10, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    return parser.parse_args()


args = parse_args()
# BLAS reads its thread count when NumPy is first imported.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(args.threads)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import minivit  # noqa: E402  (before NumPy: minivit.backend sets OpenBLAS's thread timeout)
from minivit import optim  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from machine import describe  # noqa: E402
from timing import median_seconds, minivit_step_functions  # noqa: E402


def minivit_times(config, images, labels):
    model = minivit.ViTForImageClassification(config, seed=0)
    optimizer = optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05)
    inference, train_step = minivit_step_functions(model, optimizer, images, labels)
    return median_seconds(inference, args.steps, args.warmup), median_seconds(train_step, args.steps, args.warmup)


def torch_times(config, images, labels):
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.set_num_threads(args.threads)
    hf_config = ViTConfig(**minivit.convert.hf_config_kwargs(config))
    model = ViTForImageClassification(hf_config)
    decay = [p for n, p in model.named_parameters() if not optim.no_weight_decay(n.removeprefix("vit."))]
    no_decay = [p for n, p in model.named_parameters() if optim.no_weight_decay(n.removeprefix("vit."))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)

    def inference():
        model.eval()
        with torch.inference_mode():
            model(pixel_values=x)

    def train_step():
        model.train()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y)
        loss.backward()
        optimizer.step()

    return (median_seconds(inference, args.steps, args.warmup), median_seconds(train_step, args.steps, args.warmup),
            hf_config._attn_implementation)


def main():
    import minivit.convert  # noqa: F401

    config = minivit.preset(args.preset)
    rng = np.random.default_rng(0)
    size = config.image_size
    images = rng.standard_normal((args.batch_size, config.num_channels, size, size)).astype("float32")
    labels = rng.integers(0, config.num_labels, args.batch_size)

    ours_inference, ours_train = minivit_times(config, images, labels)
    torch_inference, torch_train, attention = torch_times(config, images, labels)

    B = args.batch_size
    print(describe(args.threads))
    print(f"config: {args.preset}, batch {B}, float32; median of {args.steps} timed iterations "
          f"after {args.warmup} warm-up; transformers attention: {attention}")
    print()
    print("| images/s | minivit (NumPy) | transformers (PyTorch CPU) | minivit / PyTorch |")
    print("|---|---|---|---|")
    for label, ours, theirs in [("inference", ours_inference, torch_inference),
                                ("training step", ours_train, torch_train)]:
        print(f"| {label} | {B / ours:.1f} | {B / theirs:.1f} | {theirs / ours:.2f}x |")


if __name__ == "__main__":
    main()
