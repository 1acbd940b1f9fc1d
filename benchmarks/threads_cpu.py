"""Where the second core goes: what a hand-off to a pool of threads costs, and minivit's training step
and inference under its two threading designs, side by side on this machine.

    python benchmarks/threads_cpu.py [--preset cifar-cpu] [--batch-size 128] [--rounds 3]

Why: on a 2-core Intel Xeon (2026-12-06) minivit's training step ran at 0.92x PyTorch on one
thread and at 0.71x on two (benchmarks/throughput_cpu.py --threads 1, then 2): the gap was in how
the work is shared between the cores, not in the arithmetic. The designs (minivit.kernels.tuning,
``MINIVIT_PRODUCTS``):
  * "three pools" (``blas``; the default on Intel until 2026-12-06, on AMD until 2026-12-07):
    OpenBLAS's threads for the products, numba's workqueue threads for the compiled loops, minivit's
    own for attention's small products, each sleeping between calls so as not to take the cores
    from the others;
  * "one pool" (``loops``): numba's OpenMP threads, which spin briefly between loops as PyTorch's
    do, run the compiled loops and the products too, a slab of rows each, with SciPy's OpenBLAS on
    one thread per call.
Part 1 times an empty parallel region (microseconds per hand-off); part 2 the training step and the
inference forward (images per second). Each design runs in its own process (numba's threading layer
is fixed for the life of a process), in turns, ``--rounds`` times; the tables give the medians.
The comparison with PyTorch is benchmarks/throughput_cpu.py's, with MINIVIT_PRODUCTS set to each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

DESIGNS = ("three pools", "one pool")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="turns of each design, each in a fresh process")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per turn (median)")
    parser.add_argument("--design", choices=DESIGNS, help=argparse.SUPPRESS)  # one turn, in this process
    return parser.parse_args(argv)


def one_turn(design: str, preset: str, batch_size: int, repeats: int) -> dict:
    """Hand-off times and the training step's pace under ``design``, in this process (set up for it first)."""
    os.environ["MINIVIT_PRODUCTS"] = "blas" if design == "three pools" else "loops"  # read by tune_process()
    import numba
    import numpy as np
    from timing import median_seconds, minivit_step_functions

    import minivit
    from minivit import optim
    from minivit.kernels import cpu, tuning

    tuning.tune_process()  # as a training run's first dispatched operation does
    if (design == "one pool") != tuning.products_on_loop_threads():
        raise SystemExit(f"this process could not be set up for {design!r}: {tuning.tune_process()}")

    @numba.njit(parallel=True, cache=False)
    def empty_region(a):
        for i in numba.prange(a.shape[0]):
            a[i] += 1.0

    def microseconds(function, count):
        function()
        start = time.perf_counter()
        for _ in range(count):
            function()
        return (time.perf_counter() - start) / count * 1e6

    flag = np.zeros(cpu.num_threads, dtype=np.float32)
    handoffs = {"numba parallel loop": microseconds(lambda: empty_region(flag), 2000)}
    if design == "three pools":
        pool = cpu._pool()
        handoffs["minivit's thread pool"] = microseconds(lambda: pool.submit(int).result(), 2000)

    config = minivit.config.preset(preset)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch_size, 3, config.image_size, config.image_size), dtype=np.float32)
    labels = rng.integers(0, config.num_labels, batch_size)
    model = minivit.ViTForImageClassification(config, seed=0)
    optimizer = optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05)
    inference, train_step = minivit_step_functions(model, optimizer, images, labels)
    return {"handoff_us": handoffs, "numba_layer": numba.threading_layer(), "threads": cpu.num_threads,
            "train_images_per_second": batch_size / median_seconds(train_step, repeats, 3),
            "inference_images_per_second": batch_size / median_seconds(inference, repeats, 3)}


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
    print(describe(turns["three pools"][0]["threads"]))
    print(f"{args.preset}, batch {args.batch_size}; {args.rounds} turns of each design, each in its own process, "
          f"median of {args.repeats} steps per turn")
    print()
    print("| hand-off (empty parallel region) | microseconds |")
    print("|---|---|")
    for design in DESIGNS:
        for pool in turns[design][0]["handoff_us"]:
            values = [turn["handoff_us"][pool] for turn in turns[design]]
            layer = turns[design][0]["numba_layer"]
            label = f"{pool} ({layer} layer)" if pool.startswith("numba") else pool
            print(f"| {label} | {statistics.median(values):.1f} ({min(values):.1f} to {max(values):.1f}) |")
    print()
    print("| images/s, median of the turns | training step | inference |")
    print("|---|---|---|")
    for design in DESIGNS:
        train = [turn["train_images_per_second"] for turn in turns[design]]
        infer = [turn["inference_images_per_second"] for turn in turns[design]]
        print(f"| {design} | {statistics.median(train):.0f} ({min(train):.0f} to {max(train):.0f}) | "
              f"{statistics.median(infer):.0f} ({min(infer):.0f} to {max(infer):.0f}) |")
    for column in ("train", "inference"):
        three_pools, one_pool = (statistics.median([turn[f"{column}_images_per_second"] for turn in turns[design]])
                           for design in DESIGNS)
        print(f"one pool / three pools, {'training step' if column == 'train' else 'inference'}: "
              f"{one_pool / three_pools:.2f}x")


if __name__ == "__main__":
    main()
