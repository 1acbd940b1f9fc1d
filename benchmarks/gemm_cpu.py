"""The linear layers' matrix products alone: NumPy (its BLAS) beside PyTorch, same shapes, same threads.

    python benchmarks/gemm_cpu.py [--preset cifar-tiny] [--batch-size 128]

For one encoder layer of the preset at the batch size (cifar-tiny at 128: M = 128 x 65 tokens; cifar-cpu,
8-px patches: 128 x 17): the forward product
x @ W and the backward's dout @ W^T and x^T @ dout, for q/k/v (fused, 192 -> 576), the output
projection (192 -> 192), fc1 (192 -> 768) and fc2 (768 -> 192). Prints milliseconds per
product for both sides and their totals: the part of a training step no elementwise fusion
can speed up.

Each library runs in its own process, so that neither's thread pool can slow the other down:
an earlier version timed both in one process and once had PyTorch at 92.9 ms for the 12
products, against 57-64 ms in a process of its own on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # minivit, for the presets' shapes

PRODUCTS = ("x @ W", "dout @ W^T", "x^T @ dout")


def milliseconds(matmul, a, b, repeats: int = 20) -> float:
    matmul(a, b)
    matmul(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        matmul(a, b)
    return (time.perf_counter() - start) / repeats * 1000


def layer_shapes(preset: str, batch_size: int) -> tuple[int, dict]:
    """(M, {layer: (in, out)}) of one encoder layer of ``preset`` at ``batch_size``: M rows of tokens."""
    from minivit.config import preset as preset_config

    config = preset_config(preset)
    hidden, mlp = config.hidden_size, config.intermediate_size
    tokens = (config.image_size // config.patch_size) ** 2 + 1
    return batch_size * tokens, {"qkv": (hidden, 3 * hidden), "o_proj": (hidden, hidden), "fc1": (hidden, mlp),
                                 "fc2": (mlp, hidden)}


def measure(library: str, preset: str, batch_size: int) -> dict:
    """Milliseconds per product, keyed "layer|product", for "numpy" or "torch" (this process only)."""
    import numpy as np

    if library == "torch":
        import torch

        matmul, convert = torch.matmul, torch.from_numpy
    else:
        matmul, convert = np.matmul, (lambda array: array)
    rng = np.random.default_rng(0)
    M, shapes = layer_shapes(preset, batch_size)
    times = {}
    for name, (d_in, d_out) in shapes.items():
        x, w, d = (convert(rng.standard_normal(shape).astype(np.float32))
                   for shape in ((M, d_in), (d_in, d_out), (M, d_out)))
        operands = {"x @ W": (x, w), "dout @ W^T": (d, w.T), "x^T @ dout": (x.T, d)}
        for product in PRODUCTS:
            times[f"{name}|{product}"] = milliseconds(matmul, *operands[product])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-tiny", help="whose encoder layer (hidden, MLP and token count)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--library", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.library:  # the child process: one library, printed as JSON
        print(json.dumps(measure(args.library, args.preset, args.batch_size)))
        return

    from machine import describe

    threads = len(os.sched_getaffinity(0))
    environment = {**os.environ, **{variable: str(threads) for variable in
                                    ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    times = {library: json.loads(subprocess.run(
        [sys.executable, __file__, "--library", library, "--preset", args.preset, "--batch-size", str(args.batch_size)],
        env=environment, check=True,
        capture_output=True, text=True).stdout) for library in ("numpy", "torch")}
    print(describe(threads))
    M, shapes = layer_shapes(args.preset, args.batch_size)
    print(f"{args.preset}, batch {args.batch_size}: M = {M} token rows; each library timed in its own process")
    print("| layer (in -> out) | product | NumPy ms | PyTorch ms |\n|---|---|---|---|")
    for key in times["numpy"]:
        name, product = key.split("|")
        d_in, d_out = shapes[name]
        print(f"| {name} ({d_in} -> {d_out}) | {product} | {times['numpy'][key]:.2f} | {times['torch'][key]:.2f} |")
    totals = {library: sum(values.values()) for library, values in times.items()}
    print(f"| all 12, one layer | | {totals['numpy']:.2f} | {totals['torch']:.2f} |")
    print(f"NumPy / PyTorch time: {totals['numpy'] / totals['torch']:.2f}")


if __name__ == "__main__":
    main()
