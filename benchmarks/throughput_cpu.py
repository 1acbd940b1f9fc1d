"""Images per second on the CPU: minivit's fast kernels, minivit's pure reference, and transformers'
ViT on PyTorch, in one run.

    python benchmarks/throughput_cpu.py [--preset cifar-tiny] [--batch-size 128] [--threads N] [--rounds 3]

Same config, same batch, same thread count (BLAS threads for NumPy, torch.set_num_threads for
PyTorch). NumPy is imported before minivit, as in every notebook, and the process is tuned with
the one explicit call the command lines make (``minivit.kernels.tune_process()``). Inference is a
forward pass under ``no_grad``; a training step is forward, cross-entropy, backward and an AdamW
step. The sides take turns, --rounds times (a shared or virtual machine's speed drifts over
minutes: turns expose every side to the same drift); each round times --steps iterations of
each. Prints each side (the median over rounds), the ratios to PyTorch, the range of the
per-round ratios, and the machine.
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
    parser.add_argument("--rounds", type=int, default=3, help="turns of every side")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="leave out minivit's pure reference (MINIVIT_KERNELS=reference)")
    return parser.parse_args()


args = parse_args()
# BLAS reads its thread count when NumPy is first imported.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(args.threads)

import numpy as np  # noqa: E402  (NumPy first, as a notebook imports it)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402
from timing import median_seconds, minivit_step_functions  # noqa: E402

import minivit  # noqa: E402
from minivit import dispatch, optim  # noqa: E402
from minivit.kernels import tune_process  # noqa: E402

tuning = tune_process()


def minivit_functions(config, images, labels, mode: str):
    """(inference, train_step) running minivit with the fast kernels or the pure reference."""
    model = minivit.ViTForImageClassification(config, seed=0)
    optimizer = optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05)
    inference, train_step = minivit_step_functions(model, optimizer, images, labels)

    def in_mode(function):
        def run():
            previous = dispatch.use(mode)
            try:
                function()
            finally:
                dispatch.use(previous)
        return run

    return in_mode(inference), in_mode(train_step)


def torch_functions(config, images, labels):
    """(inference, train_step, attention implementation) for transformers' ViT."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    import minivit.convert

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
    config = minivit.preset(args.preset)
    rng = np.random.default_rng(0)
    size = config.image_size
    images = rng.standard_normal((args.batch_size, config.num_channels, size, size)).astype("float32")
    labels = rng.integers(0, config.num_labels, args.batch_size)

    torch_inference, torch_train_step, attention = torch_functions(config, images, labels)
    sides = {"minivit (fast kernels)": minivit_functions(config, images, labels, "fast")}
    if args.reference:
        sides["minivit (reference)"] = minivit_functions(config, images, labels, "reference")
    sides["PyTorch"] = (torch_inference, torch_train_step)
    seconds = {(side, kind): [] for side in sides for kind in ("inference", "training step")}
    for _ in range(args.rounds):
        for side, (inference, train_step) in sides.items():
            seconds[side, "inference"].append(median_seconds(inference, args.steps, args.warmup))
            seconds[side, "training step"].append(median_seconds(train_step, args.steps, args.warmup))

    B = args.batch_size
    print(describe(args.threads))
    print(f"config: {args.preset}, batch {B}, float32; {args.rounds} rounds, every side in turn, of "
          f"{args.steps} timed iterations after {args.warmup} warm-up (median); NumPy imported before minivit; "
          f"transformers attention: {attention}")
    print(f"tune_process(): {tuning}")
    print()
    print("| images/s | " + " | ".join(sides) + " | " + " | ".join(
        f"{side} / PyTorch" for side in sides if side != "PyTorch") + " |")
    print("|---|" + "---|" * (2 * len(sides) - 1))
    for kind in ("inference", "training step"):
        torch_times = np.array(seconds["PyTorch", kind])
        cells = [f"{B / np.median(seconds[side, kind]):.1f}" for side in sides]
        for side in sides:
            if side == "PyTorch":
                continue
            ours = np.array(seconds[side, kind])
            ratios = torch_times / ours
            cells.append(f"{np.median(torch_times) / np.median(ours):.2f}x ({ratios.min():.2f}x to "
                         f"{ratios.max():.2f}x)")
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
