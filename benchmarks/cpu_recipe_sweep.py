"""The sweep that chose the cifar-cpu preset: short runs of candidate models and recipes on the CPU.

    python benchmarks/cpu_recipe_sweep.py --data-dir data/cifar10-jpg --budget 120 [--only NAME ...]

Each candidate is ``python -m minivit.train --preset cifar-cpu`` with some options changed, run for
--budget seconds of training (the clock-driven schedule fits warmup and cosine into it), then judged
by its validation accuracy (the test split is not used to choose). One run at a time, so that each
has the machine to itself. Prints a table (and appends it to --table) with what each candidate
changed, its steps, epochs, images/s and accuracy, the machine, and the 1-minute load average at
the end of each run (above about 2 on 2 cores, something else was running: that row is suspect).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# name -> the options it changes from the cifar-cpu preset and recipe (flags of python -m minivit.train).
# The rows in benchmarks/results/cpu-recipe-sweep.md changed the preset as it stood then (patch 4, crops).
CANDIDATES = {
    "cifar-cpu": [],
    "cifar-tiny model (D192 L6 MLP768)": ["--hidden-size", "192", "--num-hidden-layers", "6",
                                         "--num-attention-heads", "3", "--intermediate-size", "768"],
    "D128 L4 MLP256": ["--hidden-size", "128", "--num-hidden-layers", "4", "--num-attention-heads", "4",
                       "--intermediate-size", "256"],
    "D128 L6 MLP512": ["--hidden-size", "128", "--num-hidden-layers", "6", "--num-attention-heads", "4",
                       "--intermediate-size", "512"],
    "D96 L6 MLP384": ["--hidden-size", "96", "--num-hidden-layers", "6", "--num-attention-heads", "3",
                      "--intermediate-size", "384"],
    "D192 L4 MLP384": ["--hidden-size", "192", "--num-hidden-layers", "4", "--num-attention-heads", "3",
                       "--intermediate-size", "384"],
    "mean pooling": ["--pooling", "mean"],
    "CLS pooling": ["--pooling", "cls"],
    "batch 64": ["--batch-size", "64"],
    "batch 256": ["--batch-size", "256"],
    "lr 1e-3": ["--lr", "1e-3"],
    "lr 4e-3": ["--lr", "4e-3"],
    "no augmentation": ["--no-horizontal-flip"],
    "random crops and flips": ["--crop-padding", "4"],
    "label smoothing 0": ["--label-smoothing", "0"],
    "weight decay 0.1": ["--weight-decay", "0.1"],
    "warmup 2%": ["--warmup-epochs", "0.2"],
    "warmup 10%": ["--warmup-epochs", "1"],
    "patch 4 (64 tokens)": ["--patch-size", "4"],
}


def run(name: str, options: list, args) -> dict:
    out = ROOT / "runs" / "sweep" / f"{args.budget:g}s" / name.replace(" ", "_").replace("(", "").replace(")", "")
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "minivit.train", "--preset", "cifar-cpu", "--data-dir", args.data_dir,
               "--out", str(out), "--time-budget", str(args.budget), "--no-progress", "--seed", str(args.seed),
               *options]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        return {"name": name, "options": " ".join(options), "error": result.stderr.strip().splitlines()[-1]}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    return {"name": name, "options": " ".join(options), "steps": last["step"], "epochs": last["epoch"],
            "load": os.getloadavg()[0],
            "images_per_second": last["images_per_second"], "val_accuracy": last["val_accuracy"],
            "best_val_accuracy": max(row["val_accuracy"] for row in rows),
            "wall_seconds": time.perf_counter() - started}


WARM_UP = """
import numpy as np, minivit
from minivit import dispatch, optim
model = minivit.ViTForImageClassification("cifar-cpu")
optimizer = optim.AdamW(model.named_parameters())
x = np.zeros((8, 3, 32, 32), "float32")
loss, cache = dispatch.cross_entropy_forward(model.forward(x), np.arange(8))
model.backward(dispatch.cross_entropy_backward(1.0, cache))
optim.clip_grad_norm(model.parameters(), 1.0)
optimizer.step()
"""


def warm_up() -> None:
    """Compile the numba loops once (they are cached on disk), so that no run's clock pays for it."""
    subprocess.run([sys.executable, "-c", WARM_UP], cwd=ROOT, check=True)


def main() -> None:
    from machine import describe

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of training per candidate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", help="candidate names (default: all)")
    parser.add_argument("--extra", action="append", default=[],
                        help="another candidate: NAME=OPTIONS, e.g. 'lr 3e-3 batch 64=--lr 3e-3 --batch-size 64'")
    parser.add_argument("--table", default=str(ROOT / "benchmarks" / "results" / "cpu-recipe-sweep.md"))
    args = parser.parse_args()
    candidates = {name: CANDIDATES[name] for name in (args.only or CANDIDATES)}
    for extra in args.extra:
        name, _, options = extra.partition("=")
        candidates[name] = options.split()
    header = (f"\n### {args.budget:g} s of training per candidate, seed {args.seed} "
              f"(`python benchmarks/cpu_recipe_sweep.py --data-dir {args.data_dir} --budget {args.budget:g}`)\n\n"
              + describe() + "\n\n| candidate | options changed | steps | epochs | images/s | validation accuracy "
              "| load |\n|---|---|---|---|---|---|---|")
    print(header, flush=True)
    warm_up()
    lines = [header]
    for name, options in candidates.items():
        result = run(name, options, args)
        if "error" in result:
            line = f"| {name} | `{result['options']}` | failed: {result['error']} | | | | |"
        else:
            accuracy = 100 * result["val_accuracy"]
            line = (f"| {name} | `{result['options'] or '(the preset)'}` | {result['steps']} | "
                    f"{result['epochs']:.2f} | {result['images_per_second']:.0f} | {accuracy:.2f}% | "
                    f"{result['load']:.1f} |")
        print(line, flush=True)
        lines.append(line)
    with open(args.table, "a") as table:
        table.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
