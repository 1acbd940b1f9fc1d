"""What each fast CPU kernel buys: its time beside its reference's, on a cifar-tiny step's shapes.

    python benchmarks/kernels_cpu.py [--batch-size 128] [--repeats 20]

For every function in minivit/kernels/cpu.py, the median time of the kernel and of the reference
it replaces (minivit/ops), on the arrays a cifar-tiny training step gives it (batch 128: tokens
(128, 65, 192), the MLP's (128, 65, 768), attention's (128, 3, 65, 65), the flat parameter
buffer of 2.7M values, a batch of 32x32 images for RandAugment), both measured in this one run,
in turns. Prints the table for the kernel table of docs/kernels.md, the speed-up of each, and the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

from minivit import ops  # noqa: E402
from minivit.kernels import registry, tune_process  # noqa: E402


def cases(B: int) -> dict:
    """{kernel name: (arguments, what they are)} at cifar-tiny's sizes."""
    rng = np.random.default_rng(0)

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    T, D, H, M = 65, 192, 3, 768
    tokens, hidden = normal(B, T, D, scale=2.0), normal(B, T, M, scale=2.0)
    gamma, beta = normal(D), normal(D)
    qkv, scores = normal(B, T, 3 * D), normal(B, H, T, T, scale=3.0)
    weight, bias = normal(D, 3 * D, scale=0.05), normal(3 * D)
    fc1_weight, fc1_bias = normal(D, M, scale=0.05), normal(M)
    branch = normal(B, T, D)
    ln_cache = ops.layernorm_forward(tokens, gamma, beta, 1e-12)[1]
    probs = ops.softmax_forward(scores)[0]
    attention_cache = ops.attention_heads_forward(qkv, H)[1]
    size = 2_693_578  # cifar-tiny's parameters
    flat = [normal(size), normal(size), np.zeros(size, np.float32), np.zeros(size, np.float32)]
    decay = np.where(np.arange(size) % 4 == 0, 0.0, 0.05).astype(np.float32)
    pixels = rng.integers(0, 256, (B, 3, 32, 32)).astype(np.float32)  # a batch of CIFAR images, for augmentation
    return {
        "linear_forward": ((tokens, weight, bias), f"q/k/v product ({B * T}, 192) @ (192, 576) + bias"),
        "linear_backward": ((qkv, (tokens, weight, True)), "its backward: dx, dW and db"),
        "linear_gelu_inference": ((tokens, fc1_weight, fc1_bias, "none"),
                                  f"inference: fc1 ({B * T}, 192) @ (192, 768) + bias, then GELU"),
        "gelu_forward": ((hidden, "none"), f"exact GELU on ({B}, 65, 768)"),
        "gelu_backward": ((hidden, (hidden, "none")), "its backward"),
        "layernorm_forward": ((tokens, gamma, beta, 1e-12), f"LayerNorm on ({B}, 65, 192)"),
        "layernorm_backward": ((tokens, ln_cache), "its backward"),
        "residual_forward": ((tokens, branch), f"residual add on ({B}, 65, 192)"),
        "residual_layernorm_inference": ((tokens, branch, gamma, beta, 1e-12),
                                         f"inference: residual add, then LayerNorm, on ({B}, 65, 192)"),
        "softmax_forward": ((scores,), f"softmax on ({B}, 3, 65, 65)"),
        "softmax_backward": ((scores, (probs, -1)), "its backward"),
        "attention_heads_forward": ((qkv, H), f"attention, 3 heads, from qkv ({B}, 65, 576)"),
        "attention_heads_backward": ((tokens, attention_cache), "its backward"),
        "adamw_update": ((*flat, 1e-3, 1.0, decay, 0.9, 0.999, 1e-8, 2), "AdamW over 2.7M parameters"),
        "sgd_update": ((flat[0], flat[1], flat[2], 0.1, 1.0, decay, 0.9, False, 2), "SGD over 2.7M parameters"),
        "clip_by_norm": ((flat[1], 1e9), "the gradient norm of 2.7M values"),
        "rand_augment": ((pixels, 2, 5.0, np.random.default_rng(0)), f"RandAugment 2/5 on ({B}, 3, 32, 32)"),
    }


def median_seconds(function, args, repeats: int) -> float:
    function(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    tuning = tune_process()
    print(describe())
    print(f"tune_process(): {tuning}")
    print(f"shapes of a cifar-tiny step at batch {args.batch_size}; median of {args.repeats} calls each, float32\n")
    print("| kernel (minivit/kernels/cpu.py) | on | reference ms | kernel ms | speed-up |")
    print("|---|---|---|---|---|")
    for name, (arguments, what) in cases(args.batch_size).items():
        reference = median_seconds(getattr(ops, name), arguments, args.repeats)
        fast = median_seconds(registry.kernels("cpu")[name], arguments, args.repeats)
        print(f"| {name} | {what} | {1000 * reference:.2f} | {1000 * fast:.2f} | {reference / fast:.1f}x |",
              flush=True)


if __name__ == "__main__":
    main()
