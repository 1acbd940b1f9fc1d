"""Images per second, minivit on NumPy beside transformers' ViT on PyTorch CPU, in one run.

    python benchmarks/throughput_cpu.py [--preset cifar-tiny] [--batch-size 128] [--threads N]

Same config, same batch, same thread count (BLAS threads for NumPy, torch.set_num_threads
for PyTorch). Inference is a forward pass in eval mode; a training step is forward,
cross-entropy, backward and an AdamW step. The two sides take turns, --rounds times (a
shared or virtual machine's speed drifts over minutes: turns expose both sides to the
same drift); each round times --steps iterations of each. Prints both sides (the median
over rounds), their ratio, the range of the per-round ratios, and the machine.
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
    parser.add_argument("--rounds", type=int, default=3, help="turns of minivit, then PyTorch")
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


def minivit_functions(config, images, labels):
    model = minivit.ViTForImageClassification(config, seed=0)
    optimizer = optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05)
    return minivit_step_functions(model, optimizer, images, labels)


def torch_functions(config, images, labels):
    """(inference, train_step, attention implementation) for transformers' ViT."""
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

    return inference, train_step, hf_config._attn_implementation


def main():
    import minivit.convert  # noqa: F401

    config = minivit.preset(args.preset)
    rng = np.random.default_rng(0)
    size = config.image_size
    images = rng.standard_normal((args.batch_size, config.num_channels, size, size)).astype("float32")
    labels = rng.integers(0, config.num_labels, args.batch_size)

    torch_inference, torch_train_step, attention = torch_functions(config, images, labels)
    sides = {"minivit": minivit_functions(config, images, labels), "torch": (torch_inference, torch_train_step)}
    seconds = {(side, kind): [] for side in sides for kind in ("inference", "training step")}
    for _ in range(args.rounds):
        for side, (inference, train_step) in sides.items():
            seconds[side, "inference"].append(median_seconds(inference, args.steps, args.warmup))
            seconds[side, "training step"].append(median_seconds(train_step, args.steps, args.warmup))

    B = args.batch_size
    print(describe(args.threads))
    print(f"config: {args.preset}, batch {B}, float32; {args.rounds} rounds, each side in turn, of "
          f"{args.steps} timed iterations after {args.warmup} warm-up (median); transformers attention: {attention}")
    print()
    print("| images/s | minivit (NumPy) | transformers (PyTorch CPU) | minivit / PyTorch | per round |")
    print("|---|---|---|---|---|")
    for kind in ("inference", "training step"):
        ours, theirs = np.array(seconds["minivit", kind]), np.array(seconds["torch", kind])
        ratios = theirs / ours
        print(f"| {kind} | {B / np.median(ours):.1f} | {B / np.median(theirs):.1f} | "
              f"{np.median(theirs) / np.median(ours):.2f}x | {ratios.min():.2f}x to {ratios.max():.2f}x |")


if __name__ == "__main__":
    main()
