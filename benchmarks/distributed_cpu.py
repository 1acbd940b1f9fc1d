"""Data parallelism on one machine: N ranks of cores/N threads against one process on all the cores.

    python benchmarks/distributed_cpu.py [--preset cifar-tiny] [--batch-size 128] [--ranks 2] [--steps 10] [--rounds 3]

Both sides run the training step of ``python -m minivit.train`` (``Trainer.train_step``: crop and
flip, forward, cross-entropy, backward, all-reduce, clipping, AdamW), same model, same global
batch, on synthetic CIFAR-sized images (written once into a temporary folder in CIFAR-10's
format; the pace of a step does not depend on what the pixels show):

  * one process: ``python`` on all the machine's cores (BLAS, numba and minivit threads = cores);
  * data parallel: ``mpiexec -n N ... --distributed``: each rank computes the gradient of B/N of
    the batch on cores/N threads, then one all-reduce averages the ranks' gradients.

The sides take turns, --rounds times (a shared or virtual machine's speed drifts over minutes:
turns expose both to the same drift); each turn starts a fresh process (or N) that times
--steps steps after --warmup untimed ones. Prints both sides' images per second (the median
over the rounds), their ratio and its range over the rounds, the ranks' step phase by phase
with the share of the all-reduce (which also holds the wait for the slower rank), the
all-reduce of the gradient buffer timed on its own, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--model", default="{}", help="ViTConfig overrides as JSON, e.g. '{\"hidden_size\": 96}'")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch, on both sides")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per turn")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=3, help="turns of one process, then the ranks")
    parser.add_argument("--images", type=int, default=2560, help="synthetic training images")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # the data folder: run one side's steps, print JSON
    parser.add_argument("--distributed-side", action="store_true", help=argparse.SUPPRESS)  # (a rank of N)
    return parser.parse_args(argv)


# --- one side: a process, or one rank of N -----------------------------------------------------------

def run_worker(args) -> None:
    from minivit.kernels import limit_threads, tune_process

    tune_process()
    distributed = args.distributed_side
    if not distributed:
        limit_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    import numpy as np

    from minivit.augment import AugmentConfig
    from minivit.profile import Profiler
    from minivit.training.options import TrainConfig
    from minivit.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(preset=args.preset, model=json.loads(args.model), data_dir=args.worker,
                             out=str(Path(out) / "run"), batch_size=args.batch_size, epochs=1000, progress=False,
                             augment=AugmentConfig(crop_padding=4, horizontal_flip=True), distributed=distributed)
        trainer = Trainer(config)
        comm = trainer.comm
        for _ in range(args.warmup):
            trainer.train_step()
            trainer.step += 1
        seconds = []
        with Profiler() as profiler:
            for _ in range(args.steps):
                comm.allreduce_sum(np.zeros(1))  # the ranks start each timed step together
                start = time.perf_counter()
                trainer.train_step()
                seconds.append(time.perf_counter() - start)
                trainer.step += 1
        gradient = trainer.model.flat.grad
        allreduce_seconds = []
        for _ in range(max(3, args.steps)):  # the all-reduce alone: no rank waits for a slower one
            comm.allreduce_sum(np.zeros(1))
            start = time.perf_counter()
            comm.allreduce_mean(gradient)
            allreduce_seconds.append(time.perf_counter() - start)
        phases = {name: total / args.steps for name, total in profiler.seconds.items()}
        from minivit.kernels import cpu

        report = {"step": statistics.median(seconds), "phases": phases, "threads": cpu.num_threads,
                  "allreduce_alone": statistics.median(allreduce_seconds), "gradient_bytes": int(gradient.nbytes),
                  "parameters": int(gradient.size), "ranks": comm.size, "description": comm.description}
        reports = comm.gather_object(report)
        trainer.run_folder.release()
    if comm.is_root:
        print("REPORT " + json.dumps(reports))


# --- the driver -----------------------------------------------------------------------------------------

def write_synthetic_cifar(folder: Path, count: int) -> Path:
    """``count`` random 32x32 images in CIFAR-10's python format (5 training batches and a test batch)."""
    import numpy as np

    rng = np.random.default_rng(0)
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    per_batch = max(1, count // 5)
    for name, size in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", 10)]:
        batch = {b"batch_label": name.encode(), b"labels": [int(label) for label in rng.integers(0, 10, size)],
                 b"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(size)]}
        (batches / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (batches / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in names]}, protocol=2))
    return folder


def run_side(command: list[str]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("MINIVIT_NUM_THREADS", None)
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    reports = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    if result.returncode != 0 or not reports:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(reports[-1][len("REPORT "):])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    from machine import describe

    from minivit.distributed.launch import mpiexec_command

    if args.batch_size % args.ranks:
        sys.exit(f"--batch-size {args.batch_size} must divide among --ranks {args.ranks}")
    this_script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as data:
        write_synthetic_cifar(Path(data), args.images)
        worker = [this_script, *(argv if argv is not None else sys.argv[1:]), "--worker", data]
        one_process = [sys.executable, *worker]
        ranks = [*mpiexec_command(args.ranks), sys.executable, *worker, "--distributed-side"]
        rounds = []
        for _ in range(args.rounds):
            rounds.append((run_side(one_process)[0], run_side(ranks)))

    B = args.batch_size
    single_rate = [B / single["step"] for single, _ in rounds]
    ranks_rate = [B / max(report["step"] for report in reports) for _, reports in rounds]
    ratios = [ours / theirs for ours, theirs in zip(ranks_rate, single_rate)]
    last_single, last_ranks = rounds[-1]
    slowest = max(last_ranks, key=lambda report: report["step"])
    print(describe())
    launcher = mpiexec_command(args.ranks)
    print(f"config: {args.preset} {json.loads(args.model) or ''}, global batch {B}, float32, synthetic images; "
          f"{args.rounds} rounds, each side in turn, of {args.steps} timed steps after {args.warmup} warm-up "
          f"(median); ranks started by: {' '.join([Path(launcher[0]).name, *launcher[1:]])}")
    print(f"parameters: {last_single['parameters']:,} ({last_single['gradient_bytes'] / 1e6:.1f} MB of float32 "
          f"gradient, all-reduced once per step); ranks: {slowest['description']}")
    print()
    print("| side | processes x threads | images/s | ms per step | all-reduce, ms per step | share of the step |")
    print("|---|---|---|---|---|---|")
    print(f"| one process | 1 x {last_single['threads']} | {statistics.median(single_rate):.1f} | "
          f"{1000 * B / statistics.median(single_rate):.0f} | - | - |")
    allreduce = max(report["phases"].get("allreduce", 0.0) for report in last_ranks)
    print(f"| data parallel | {args.ranks} x {slowest['threads']} | {statistics.median(ranks_rate):.1f} | "
          f"{1000 * B / statistics.median(ranks_rate):.0f} | {1000 * allreduce:.1f} | "
          f"{100 * allreduce / slowest['step']:.1f}% |")
    print()
    print(f"data parallel / one process: {statistics.median(ratios):.2f}x (per round {min(ratios):.2f}x to "
          f"{max(ratios):.2f}x)")
    alone = max(report["allreduce_alone"] for report in last_ranks)
    N, size = args.ranks, last_single["gradient_bytes"]
    print(f"the all-reduce alone ({size / 1e6:.1f} MB): {1000 * alone:.2f} ms, each rank sending "
          f"2(N-1)/N x {size / 1e6:.1f} MB = {2 * (N - 1) / N * size / 1e6:.1f} MB: "
          f"{2 * (N - 1) / N * size / alone / 1e9:.2f} GB/s")
    print()
    print("the ranks' step, phase by phase (ms; the slowest rank's of the last round):")
    print(" | ".join(f"{name} {1000 * seconds:.1f}" for name, seconds in
                     sorted(slowest["phases"].items(), key=lambda item: -item[1])))


if __name__ == "__main__":
    main()
