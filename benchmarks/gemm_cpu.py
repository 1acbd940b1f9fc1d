"""The linear layers' matrix products alone: NumPy (its BLAS) beside PyTorch, same shapes, same threads.

    python benchmarks/gemm_cpu.py

For one cifar-tiny encoder layer at batch 128 (M = 128 x 65 tokens): the forward product
x @ W and the backward's dout @ W^T and x^T @ dout, for q/k/v (fused, 192 -> 576), the output
projection (192 -> 192), fc1 (192 -> 768) and fc2 (768 -> 192). Prints milliseconds per
product for both sides and their totals: the part of a training step no elementwise fusion
can speed up.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from machine import describe


def milliseconds(matmul, a, b, repeats: int = 20) -> float:
    matmul(a, b)
    matmul(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        matmul(a, b)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    threads = torch.get_num_threads()
    print(describe(threads))
    rng = np.random.default_rng(0)
    M = 128 * 65
    totals = {"numpy": 0.0, "torch": 0.0}
    print("| layer (in -> out) | product | NumPy ms | PyTorch ms |\n|---|---|---|---|")
    for name, (d_in, d_out) in {"qkv": (192, 576), "o_proj": (192, 192), "fc1": (192, 768),
                                "fc2": (768, 192)}.items():
        x = rng.standard_normal((M, d_in)).astype(np.float32)
        w = rng.standard_normal((d_in, d_out)).astype(np.float32)
        d = rng.standard_normal((M, d_out)).astype(np.float32)
        xt, wt, dt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(d)
        products = {"x @ W": ((x, w), (xt, wt)), "dout @ W^T": ((d, w.T), (dt, wt.T)),
                    "x^T @ dout": ((x.T, d), (xt.T, dt))}
        for product, (numpy_operands, torch_operands) in products.items():
            a, b = milliseconds(np.matmul, *numpy_operands), milliseconds(torch.matmul, *torch_operands)
            totals["numpy"] += a
            totals["torch"] += b
            print(f"| {name} ({d_in} -> {d_out}) | {product} | {a:.1f} | {b:.1f} |")
    print(f"| all 12, one layer | | {totals['numpy']:.1f} | {totals['torch']:.1f} |")
    print(f"NumPy / PyTorch time: {totals['numpy'] / totals['torch']:.2f}")


if __name__ == "__main__":
    main()
