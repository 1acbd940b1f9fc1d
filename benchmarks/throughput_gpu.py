"""GPU throughput: minivit on CuPy against transformers' ViT on PyTorch (eager and torch.compile).

    python benchmarks/throughput_gpu.py [--presets cifar-tiny cifar-gpu] [--batch-sizes 128 512]

For each preset and batch size, in one run on one GPU: training images per second
(forward, cross-entropy, backward, AdamW step), inference images per second, and
peak GPU memory. Timings synchronise the device before reading the clock.
Writes the table to benchmarks/results/gpu-throughput-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import median_seconds, minivit_step_functions  # noqa: E402 (beside this script)


def minivit_side(preset: str, batch_size: int, steps: int, warmup: int) -> dict:
    import cupy

    import minivit
    from minivit import backend, optim

    backend.use("cupy")
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    config = minivit.preset(preset)
    model = minivit.ViTForImageClassification(config, seed=0)
    optimizer = optim.AdamW(model.named_parameters())
    rng = np.random.default_rng(0)
    images = backend.asarray(rng.standard_normal((batch_size, 3, 32, 32)).astype("float32"))
    labels = backend.asarray(rng.integers(0, 10, batch_size))

    inference, train_step = minivit_step_functions(model, optimizer, images, labels)
    train = median_seconds(train_step, steps, warmup, backend.synchronize)
    infer = median_seconds(inference, steps, warmup, backend.synchronize)
    return {"train_images_per_second": batch_size / train, "inference_images_per_second": batch_size / infer,
            "peak_memory_mib": pool.total_bytes() / 2**20}


def torch_side(preset: str, batch_size: int, steps: int, warmup: int, compiled: bool) -> dict:
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    import minivit
    from minivit.convert import hf_config_kwargs

    torch.backends.cuda.matmul.allow_tf32 = False  # float32, as minivit
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = ViTForImageClassification(ViTConfig(**hf_config_kwargs(minivit.preset(preset)))).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    forward = torch.compile(model) if compiled else model
    images = torch.randn(batch_size, 3, 32, 32, device="cuda")
    labels = torch.randint(0, 10, (batch_size,), device="cuda")

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(forward(pixel_values=images).logits, labels).backward()
        optimizer.step()

    def inference():
        model.eval()
        with torch.inference_mode():
            forward(pixel_values=images)

    train = median_seconds(train_step, steps, warmup + (3 if compiled else 0), torch.cuda.synchronize)
    infer = median_seconds(inference, steps, warmup + (3 if compiled else 0), torch.cuda.synchronize)
    return {"train_images_per_second": batch_size / train, "inference_images_per_second": batch_size / infer,
            "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["cifar-tiny", "cifar-gpu"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    import cupy
    import torch

    device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    header = (f"device: {device}; driver {cupy.cuda.runtime.driverGetVersion()}, CUDA runtime "
              f"{cupy.cuda.runtime.runtimeGetVersion()}, CuPy {cupy.__version__}, PyTorch {torch.__version__}")
    print(header)
    print("| preset | batch | side | train img/s | inference img/s | peak MiB | train vs eager |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for preset in args.presets:
        for batch_size in args.batch_sizes:
            sides = {"minivit (CuPy)": minivit_side(preset, batch_size, args.steps, args.warmup),
                     "PyTorch eager": torch_side(preset, batch_size, args.steps, args.warmup, False),
                     "torch.compile": torch_side(preset, batch_size, args.steps, args.warmup, True)}
            eager = sides["PyTorch eager"]["train_images_per_second"]
            for side, result in sides.items():
                ratio = result["train_images_per_second"] / eager
                print(f"| {preset} | {batch_size} | {side} | {result['train_images_per_second']:.0f} | "
                      f"{result['inference_images_per_second']:.0f} | {result['peak_memory_mib']:.0f} | {ratio:.2f}x |",
                      flush=True)
                rows.append({"preset": preset, "batch_size": batch_size, "side": side, **result})
    out = ROOT / "benchmarks" / "results" / f"gpu-throughput-{device.replace(' ', '-')}.json"
    out.write_text(json.dumps({"header": header, "command": " ".join(sys.argv), "rows": rows}, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
