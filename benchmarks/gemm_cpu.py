"""The linear layers' matrix products alone: NumPy (its BLAS) beside PyTorch, same shapes, same threads.

    python benchmarks/gemm_cpu.py

For one cifar-tiny encoder layer at batch 128 (M = 128 x 65 tokens): the forward product
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

SHAPES = {"qkv": (192, 576), "o_proj": (192, 192), "fc1": (192, 768), "fc2": (768, 192)}
PRODUCTS = ("x @ W", "dout @ W^T", "x^T @ dout")


def milliseconds(matmul, a, b, repeats: int = 20) -> float:
    matmul(a, b)
    matmul(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        matmul(a, b)
    return (time.perf_counter() - start) / repeats * 1000


def measure(library: str) -> dict:
    """Milliseconds per product, keyed "layer|product", for "numpy" or "torch" (this process only)."""
    import numpy as np

    if library == "torch":
        import torch

        matmul, convert = torch.matmul, torch.from_numpy
    else:
        matmul, convert = np.matmul, (lambda array: array)
    rng = np.random.default_rng(0)
    M = 128 * 65
    times = {}
    for name, (d_in, d_out) in SHAPES.items():
        x, w, d = (convert(rng.standard_normal(shape).astype(np.float32))
                   for shape in ((M, d_in), (d_in, d_out), (M, d_out)))
        operands = {"x @ W": (x, w), "dout @ W^T": (d, w.T), "x^T @ dout": (x.T, d)}
        for product in PRODUCTS:
            times[f"{name}|{product}"] = milliseconds(matmul, *operands[product])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.library:  # the child process: one library, printed as JSON
        print(json.dumps(measure(args.library)))
        return

    from machine import describe

    threads = len(os.sched_getaffinity(0))
    environment = {**os.environ, **{variable: str(threads) for variable in
                                    ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    times = {library: json.loads(subprocess.run(
        [sys.executable, __file__, "--library", library], env=environment, check=True,
        capture_output=True, text=True).stdout) for library in ("numpy", "torch")}
    print(describe(threads))
    print("each library timed in its own process")
    print("| layer (in -> out) | product | NumPy ms | PyTorch ms |\n|---|---|---|---|")
    for key in times["numpy"]:
        name, product = key.split("|")
        d_in, d_out = SHAPES[name]
        print(f"| {name} ({d_in} -> {d_out}) | {product} | {times['numpy'][key]:.1f} | {times['torch'][key]:.1f} |")
    totals = {library: sum(values.values()) for library, values in times.items()}
    print(f"| all 12, one layer | | {totals['numpy']:.1f} | {totals['torch']:.1f} |")
    print(f"NumPy / PyTorch time: {totals['numpy'] / totals['torch']:.2f}")


if __name__ == "__main__":
    main()
