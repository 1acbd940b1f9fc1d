"""Where the second core goes: what a hand-off to each thread pool costs, and one encoder layer's
products and compiled loops under two threading designs, side by side on this machine.

    python benchmarks/threads_cpu.py [--preset cifar-cpu] [--batch-size 128] [--rounds 5]

Why: on a 2-core Intel Xeon (2026-12-06) minivit's training step ran at 0.92x PyTorch on one
thread and at 0.71x on two (benchmarks/throughput_cpu.py --threads 1, then 2): the gap is in how
the work is shared between the cores, not in the arithmetic. The fast kernels use three pools of
threads (OpenBLAS's for the products, numba's for the compiled loops, minivit's own for map_rows
and batched_matmul), and each pool's threads sleep between calls so as not to take the cores
from the others (minivit.kernels.tuning). Waking a sleeping thread is cheap on bare metal and
costly in a virtual machine. PyTorch runs everything on one OpenMP pool whose threads spin
between calls.

Part 1 times an empty parallel region in each pool (microseconds per hand-off). Part 2 times the
matrix products and compiled loops of one pre-norm encoder layer, forward and backward, at the
preset's shapes (attention's small per-head products left out), under:
  * "today": the fast kernels' design: NumPy's OpenBLAS on all threads, sleeping soon after each
    product; numba's loops on its workqueue threads (as tuned on first use);
  * "one pool": OpenBLAS on one thread, each product cut into row slabs inside a numba parallel
    loop on numba's OpenMP layer, whose threads spin between loops (as PyTorch's do), so the
    products and the loops share one pool.
Each design runs in its own process (numba's threading layer is fixed for the life of a process),
in turns, ``--rounds`` times; the table gives the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DESIGNS = ("today", "one pool")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="turns of each design, each in a fresh process")
    parser.add_argument("--repeats", type=int, default=20, help="timed layers per turn (median)")
    parser.add_argument("--design", choices=DESIGNS, help=argparse.SUPPRESS)  # one turn, in this process
    return parser.parse_args(argv)


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def one_turn(design: str, preset: str, batch_size: int, repeats: int) -> dict:
    """Hand-off and layer times of ``design`` in this process; the process is set up for it first."""
    if design == "one pool":
        os.environ["NUMBA_THREADING_LAYER"] = "omp"  # before numba is imported
    import ctypes

    import numba
    import numpy as np

    from minivit.config import preset as preset_config
    from minivit.kernels import cpu, tuning

    tuning.tune_process()  # as a training run's first dispatched operation does
    threads = cpu.num_threads
    if design == "one pool":
        for path in tuning._loaded_openblas_paths():
            library = ctypes.CDLL(path)
            for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                         "openblas_set_num_threads"):
                if hasattr(library, name):
                    getattr(library, name)(1)
                    break

    @numba.njit(parallel=True, cache=False)
    def empty_region(a):
        for i in numba.prange(a.shape[0]):
            a[i] += 1.0

    @numba.njit(parallel=True, cache=False)
    def slab_product(a, b, bias, out, parts):  # out = a @ b + bias, rows of a cut into ``parts`` slabs
        rows = a.shape[0]
        for part in numba.prange(parts):
            start, stop = rows * part // parts, rows * (part + 1) // parts
            out[start:stop] = np.dot(a[start:stop], b) + bias

    @numba.njit(parallel=True, cache=False)
    def slab_product_plain(a, b, out, parts):  # out = a @ b, the same slabs
        rows = a.shape[0]
        for part in numba.prange(parts):
            start, stop = rows * part // parts, rows * (part + 1) // parts
            np.dot(a[start:stop], b, out[start:stop])

    @numba.njit(parallel=True, cache=False)
    def slab_weight_gradient(x, dout, partial, parts):  # sum over slabs of x^T dout, one partial each
        rows = x.shape[0]
        for part in numba.prange(parts):
            start, stop = rows * part // parts, rows * (part + 1) // parts
            partial[part] = np.dot(x[start:stop].T, dout[start:stop])

    @numba.njit(parallel=True, cache=False)
    def layernorm_rows(x, out):
        for i in numba.prange(x.shape[0]):
            mean = x[i].mean()
            centred = x[i] - mean
            out[i] = centred / np.sqrt((centred * centred).mean() + 1e-12)

    @numba.njit(parallel=True, cache=False)
    def gelu_rows(x, out):
        for i in numba.prange(x.shape[0]):
            for j in range(x.shape[1]):
                v = x[i, j]
                out[i, j] = 0.5 * v * (1.0 + np.tanh(0.7978845608 * (v + 0.044715 * v * v * v)))

    def product(a, b, bias=None):
        """The forward's products take a bias (today: cpu.addmm, SciPy's OpenBLAS); the backward's do not."""
        if design == "today":
            return a @ b if bias is None else cpu.addmm(bias, a, b)
        out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        if bias is None:
            slab_product_plain(a, b, out, threads)
        else:
            slab_product(a, b, bias, out, threads)
        return out

    def weight_gradient(x, dout):
        if design == "today":
            return x.T @ dout
        partial = np.empty((threads, x.shape[1], dout.shape[1]), dtype=x.dtype)
        slab_weight_gradient(x, dout, partial, threads)
        return partial.sum(axis=0)

    config = preset_config(preset)
    rows = batch_size * ((config.image_size // config.patch_size) ** 2 + 1)
    hidden, mlp = config.hidden_size, config.intermediate_size
    rng = np.random.default_rng(0)
    weights = {name: (rng.standard_normal(shape, dtype=np.float32) * 0.05)
               for name, shape in {"qkv": (hidden, 3 * hidden), "o_proj": (hidden, hidden),
                                   "fc1": (hidden, mlp), "fc2": (mlp, hidden)}.items()}
    biases = {name: np.zeros(weight.shape[1], dtype=np.float32) for name, weight in weights.items()}
    x = rng.standard_normal((rows, hidden), dtype=np.float32)

    def layer():
        normed = np.empty_like(x)
        layernorm_rows(x, normed)
        qkv = product(normed, weights["qkv"], biases["qkv"])
        context = np.ascontiguousarray(qkv[:, :hidden])  # stands in for attention
        attended = product(context, weights["o_proj"], biases["o_proj"])
        normed2 = np.empty_like(x)
        layernorm_rows(attended, normed2)
        hidden_mlp = product(normed2, weights["fc1"], biases["fc1"])
        activated = np.empty_like(hidden_mlp)
        gelu_rows(hidden_mlp, activated)
        out = product(activated, weights["fc2"], biases["fc2"])
        dout = out  # the backward: each layer's dx = dout W^T and dW = x^T dout, and GELU's loop
        dactivated = product(dout, np.ascontiguousarray(weights["fc2"].T))
        weight_gradient(activated, dout)
        dhidden = np.empty_like(dactivated)
        gelu_rows(dactivated, dhidden)
        dnormed2 = product(dhidden, np.ascontiguousarray(weights["fc1"].T))
        weight_gradient(normed2, dhidden)
        dattended = np.empty_like(dnormed2)
        layernorm_rows(dnormed2, dattended)
        dcontext = product(dattended, np.ascontiguousarray(weights["o_proj"].T))
        weight_gradient(context, dattended)
        dqkv = np.concatenate([dcontext, dcontext, dcontext], axis=1)
        dnormed = product(dqkv, np.ascontiguousarray(weights["qkv"].T))
        weight_gradient(normed, dqkv)
        layernorm_rows(dnormed, np.empty_like(dnormed))

    # Both designs compute the same products (to float32 rounding: the slabs' sums run in another order).
    dout_check = rng.standard_normal((rows, mlp), dtype=np.float32)
    np.testing.assert_allclose(product(x, weights["fc1"], biases["fc1"]), x @ weights["fc1"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(weight_gradient(x, dout_check), x.T @ dout_check, rtol=1e-4, atol=1e-3)

    def microseconds(function, count):
        function()
        start = time.perf_counter()
        for _ in range(count):
            function()
        return (time.perf_counter() - start) / count * 1e6

    flag = np.zeros(threads, dtype=np.float32)
    handoffs = {"numba parallel loop": microseconds(lambda: empty_region(flag), 2000)}
    if design == "today":
        pool = cpu._pool()
        handoffs["minivit's thread pool"] = microseconds(lambda: pool.submit(int).result(), 2000)
    for _ in range(3):
        layer()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer()
        times.append((time.perf_counter() - start) * 1000)
    return {"handoff_us": handoffs, "layer_ms": median(times), "threads": threads,
            "numba_layer": numba.threading_layer()}


def main():
    args = parse_args()
    if args.design:
        print(json.dumps(one_turn(args.design, args.preset, args.batch_size, args.repeats)))
        return
    from machine import describe

    turns = {design: [] for design in DESIGNS}
    for _ in range(args.rounds):
        for design in DESIGNS:
            command = [sys.executable, os.path.abspath(__file__), "--design", design, "--preset", args.preset,
                       "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
            finished = subprocess.run(command, capture_output=True, text=True, check=True)
            turns[design].append(json.loads(finished.stdout.strip().splitlines()[-1]))
    print(describe(turns["today"][0]["threads"]))
    print(f"{args.preset}, batch {args.batch_size}; {args.rounds} turns of each design, each in its own process, "
          f"median of {args.repeats} layers per turn")
    print()
    print("| hand-off (empty parallel region) | microseconds |")
    print("|---|---|")
    for design in DESIGNS:
        for pool in turns[design][0]["handoff_us"]:
            values = [turn["handoff_us"][pool] for turn in turns[design]]
            layer = turns[design][0]["numba_layer"]
            label = f"{pool} ({layer} layer)" if pool.startswith("numba") else pool
            print(f"| {label} | {median(values):.1f} ({min(values):.1f} to {max(values):.1f}) |")
    print()
    today = [turn["layer_ms"] for turn in turns["today"]]
    one_pool = [turn["layer_ms"] for turn in turns["one pool"]]
    print("| one encoder layer's products and loops, forward and backward | ms |")
    print("|---|---|")
    print(f"| today (three pools that sleep) | {median(today):.2f} ({min(today):.2f} to {max(today):.2f}) |")
    print(f"| one pool (OpenMP, spinning; BLAS on one thread inside) | {median(one_pool):.2f} "
          f"({min(one_pool):.2f} to {max(one_pool):.2f}) |")
    print(f"today / one pool: {median(today) / median(one_pool):.2f}x")


if __name__ == "__main__":
    main()
