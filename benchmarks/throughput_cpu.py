"""Images per second on the CPU as a user gets them: minivit's fast kernels (and its pure reference)
against transformers' ViT on PyTorch, in one run, with no tuning call.

    python benchmarks/throughput_cpu.py [--preset cifar-tiny] [--batch-sizes 128,1] [--threads N] [--rounds 3]
    python benchmarks/throughput_cpu.py --each-entry-point [--no-reference]

This script is the fresh interpreter of the Python API case: NumPy is imported first, as in
every notebook, then minivit, and nothing is called to make minivit fast: whatever the fast
kernels set up in the process they set up on their first use (minivit/kernels/tuning.py),
and the table says what that was. ``--after ENTRY`` first runs one of minivit's entry points in
this process on a small synthetic data set (``train``: ``python -m minivit.train``'s main;
``evaluate``; ``finetune``; ``lesson``: a notebook cell calling ``minivit.train.train``), then
measures: the speed the kernels have in the process that entry point leaves.
``--each-entry-point`` runs the API case and every entry point, each in a fresh interpreter.

Same config, same batch, same thread count (BLAS threads for NumPy, torch.set_num_threads for
PyTorch). Inference is a forward pass under ``no_grad``; a training step is forward,
cross-entropy, backward and an AdamW step. The sides take turns, --rounds times (a shared or
virtual machine's speed drifts over minutes: turns expose every side to the same drift); each
round times --steps iterations of each. Prints, per batch size, each side (the median over
rounds), the ratios to PyTorch, the range of the per-round ratios, and the machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ENTRY_POINTS = ("api", "train", "evaluate", "finetune", "lesson")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--batch-sizes", default="128,1", help="comma-separated, e.g. 128,1")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=10, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="turns of every side")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="leave out minivit's pure reference (MINIVIT_KERNELS=reference)")
    parser.add_argument("--after", choices=ENTRY_POINTS, default="api",
                        help="run this entry point in this process first (api: nothing)")
    parser.add_argument("--work-dir", help="--after's data and checkpoint (made here if missing)")
    parser.add_argument("--each-entry-point", action="store_true",
                        help="every case of --after, each in a fresh interpreter")
    return parser.parse_args(argv)


args = parse_args()
# BLAS reads its thread count when NumPy is first imported.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(args.threads)

import numpy as np  # noqa: E402  (NumPy first, as a notebook imports it)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402
from timing import median_seconds, minivit_step_functions  # noqa: E402

import minivit  # noqa: E402
from minivit import dispatch, optim  # noqa: E402
from minivit.kernels import tuning  # noqa: E402  (read only: what the first use did)


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


# --- the entry points, run in this process before the measurement -------------------------------------


def prepare_work_dir(work_dir: Path) -> tuple[Path, Path]:
    """(data folder, checkpoint) for the entry points: synthetic CIFAR-10 batches and a checkpoint of a
    two-step cifar-tiny run, made by a separate interpreter (so that no process measured made them)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic_data import write_cifar_batches

    data_dir, run_dir = work_dir / "data", work_dir / "run"
    if not (data_dir / "cifar-10-batches-py").exists():
        write_cifar_batches(data_dir, per_batch=64, test_size=64)
    checkpoint = run_dir / "checkpoint-last.npz"
    if not checkpoint.exists():
        subprocess.run([sys.executable, "-m", "minivit.train", *tiny_run_options(data_dir, run_dir)],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return data_dir, checkpoint


def tiny_run_options(data_dir: Path, out: Path) -> list[str]:
    return ["--preset", "cifar-tiny", "--data-dir", str(data_dir), "--out", str(out), "--max-steps", "2",
            "--batch-size", "32", "--eval-batch-size", "64", "--no-progress"]


def run_entry_point(name: str, work_dir: Path) -> None:
    """Run entry point ``name`` in this process, its printed output discarded."""
    import contextlib
    import io

    data_dir, checkpoint = prepare_work_dir(work_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        if name == "train":
            from minivit.train import main
            assert main(tiny_run_options(data_dir, work_dir / "train")) == 0
        elif name == "evaluate":
            from minivit.evaluate import main
            assert main(["--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--json",
                         "--figure", str(work_dir / "confusion.png")]) == 0
        elif name == "finetune":
            from minivit.finetune import main
            assert main(["--init-from", str(checkpoint), *tiny_run_options(data_dir, work_dir / "finetune")]) == 0
        elif name == "lesson":  # what a lesson's training cell does
            from minivit.train import TrainConfig, train
            train(TrainConfig(preset="cifar-tiny", data_dir=str(data_dir), out=str(work_dir / "lesson"),
                              max_steps=2, batch_size=32, eval_batch_size=64, progress=False))


def each_entry_point() -> int:
    """Every case, each in a fresh interpreter (this script again, with --after)."""
    passed = [a for a in sys.argv[1:] if a != "--each-entry-point"]
    with tempfile.TemporaryDirectory(prefix="minivit-entry-points-") as work_dir:
        for name in ENTRY_POINTS:
            print(f"\n## after {name}" if name != "api" else "\n## Python API, nothing called", flush=True)
            result = subprocess.run([sys.executable, __file__, *passed, "--after", name, "--work-dir", work_dir])
            if result.returncode != 0:
                return result.returncode
    return 0


# --- the measurement ---------------------------------------------------------------------------------


def measure(config, batch_size: int) -> tuple[dict, str]:
    """{(side, kind): [seconds per round]} and transformers' attention implementation."""
    rng = np.random.default_rng(0)
    size = config.image_size
    images = rng.standard_normal((batch_size, config.num_channels, size, size)).astype("float32")
    labels = rng.integers(0, config.num_labels, batch_size)
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
    return seconds, attention


def print_table(seconds: dict, batch_size: int) -> None:
    sides = list(dict.fromkeys(side for side, _ in seconds))
    print("| batch " + str(batch_size) + ", images/s | " + " | ".join(sides) + " | " + " | ".join(
        f"{side} / PyTorch" for side in sides if side != "PyTorch") + " |")
    print("|---|" + "---|" * (2 * len(sides) - 1))
    for kind in ("inference", "training step"):
        torch_times = np.array(seconds["PyTorch", kind])
        cells = [f"{batch_size / np.median(seconds[side, kind]):.1f}" for side in sides]
        for side in sides:
            if side == "PyTorch":
                continue
            ours = np.array(seconds[side, kind])
            ratios = torch_times / ours
            cells.append(f"{np.median(torch_times) / np.median(ours):.2f}x ({ratios.min():.2f}x to "
                         f"{ratios.max():.2f}x)")
        print(f"| {kind} | " + " | ".join(cells) + " |")


def main() -> int:
    if args.each_entry_point:
        return each_entry_point()
    if args.after != "api":
        if not args.work_dir:
            sys.exit("--after needs --work-dir (a folder for the synthetic data and checkpoint)")
        run_entry_point(args.after, Path(args.work_dir))
    config = minivit.preset(args.preset)
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    results = [(batch_size, *measure(config, batch_size)) for batch_size in batch_sizes]
    print(describe(args.threads))
    print(f"config: {args.preset}, float32; {args.rounds} rounds, every side in turn, of {args.steps} timed "
          f"iterations after {args.warmup} warm-up (median); NumPy imported before minivit; no tuning call; "
          f"before measuring: {'nothing' if args.after == 'api' else 'minivit ' + args.after}; "
          f"transformers attention: {results[0][2]}")
    print(f"process settings the fast kernels applied on first use: {tuning._done or 'none'}")
    for batch_size, seconds, _ in results:
        print()
        print_table(seconds, batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
