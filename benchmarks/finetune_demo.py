"""Pretrain on five CIFAR-10 classes, finetune on the other five from 100 images per class.

    python benchmarks/finetune_demo.py --data-dir data/cifar10-jpg [--pretrain-budget 900]

1. pretrain   cifar-tiny at 32 px on airplane, automobile, bird, cat, deer (all their
              training images), for --pretrain-budget seconds of training
2. finetune   from that checkpoint, on dog, frog, horse, ship, truck with 100 labelled
              training images per class, at 48 px: a new head, the position embeddings
              resized from the 8x8 to the 12x12 patch grid (bicubic)
3. scratch    the same model, images, recipe and epochs, from random weights

Both 2 and 3 are then evaluated on the 5,000 test images of their five classes, from
their last checkpoint (the validation images, 2% of the training split, only draw the
curves). Writes benchmarks/results/finetune-demo.{json,md} and figures/finetune-demo.png: the
repository's committed results, so replacing them needs --overwrite (checked before any training).
Every step is the command line a user would type; the commands are in the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import describe

from minivit.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
PRETRAIN_CLASSES = "airplane,automobile,bird,cat,deer"
FINETUNE_CLASSES = "dog,frog,horse,ship,truck"


def run(command: list[str]) -> float:
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - start


def evaluate(checkpoint: Path, data_dir: str) -> dict:
    output = subprocess.run([sys.executable, "-m", "minivit.evaluate", "--checkpoint", str(checkpoint),
                             "--data-dir", data_dir, "--json"], check=True, cwd=ROOT, capture_output=True,
                            text=True).stdout
    return json.loads(output)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--pretrain-budget", type=float, default=900.0, help="seconds of pretraining")
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--runs", default="runs/finetune-demo")
    parser.add_argument("--skip-pretrain", action="store_true", help="reuse the pretraining run in --runs")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace benchmarks/results/finetune-demo.{json,md} and figures/finetune-demo.png")
    args = parser.parse_args()
    data_dir = os.path.relpath(Path(args.data_dir).resolve(), ROOT)
    os.chdir(ROOT)  # every path below, and in the recorded commands, is relative to the repository
    runs = Path(args.runs)
    python = sys.executable
    pretrain_dir, finetune_dir, scratch_dir = runs / "pretrain", runs / "finetune", runs / "scratch"
    out = Path("benchmarks") / "results"
    outputs = [out / "finetune-demo.json", out / "finetune-demo.md", Path("figures") / "finetune-demo.png"]
    existing = [str(path) for path in outputs if path.exists()]
    if existing and not args.overwrite:
        raise SystemExit(f"error: the demonstration writes the repository's results, and {', '.join(existing)} "
                         "already exist: nothing was run. Pass --overwrite to replace them with this machine's "
                         "measurement.")
    for folder in (finetune_dir, scratch_dir) + (() if args.skip_pretrain else (pretrain_dir,)):
        if folder.exists():
            raise SystemExit(f"{folder} exists: remove it (or pass --runs) to run the demonstration afresh.")

    small_data = ["--data-dir", data_dir, "--classes", FINETUNE_CLASSES, "--train-per-class", "100",
                  "--image-size", str(args.image_size), "--epochs", str(args.finetune_epochs), "--val-fraction",
                  "0.02", "--no-progress"]
    # from scratch: the finetuning recipe (minivit.finetune.FINETUNE_RECIPE) spelled out, without --init-from
    recipe = ["--batch-size", "64", "--lr", "5e-4", "--min-lr", "1e-6", "--warmup-epochs", "3"]
    commands = {
        "pretrain": [python, "-m", "minivit.train", "--data-dir", data_dir, "--classes", PRETRAIN_CLASSES,
                     "--time-budget", str(args.pretrain_budget), "--out", str(pretrain_dir), "--no-progress"],
        "finetune": [python, "-m", "minivit.finetune", "--init-from", str(pretrain_dir / "checkpoint-last.npz"),
                     *small_data, "--out", str(finetune_dir)],
        "scratch": [python, "-m", "minivit.train", *small_data, *recipe, "--out", str(scratch_dir)],
    }

    seconds = {}
    for name in ("pretrain", "finetune", "scratch"):
        if name == "pretrain" and args.skip_pretrain:
            continue
        seconds[name] = round(run(commands[name]), 1)

    recorded = {name: " ".join(str(part) for part in command[1:]) for name, command in commands.items()}
    results = {"machine": describe(), "commands": recorded, "wall_seconds": seconds}
    pretrain_rows = metrics(pretrain_dir)
    results["pretrain"] = {"epochs": pretrain_rows[-1]["epoch"], "val_accuracy": pretrain_rows[-1]["val_accuracy"]}
    for name, folder in (("finetune", finetune_dir), ("scratch", scratch_dir)):
        test = evaluate(folder / "checkpoint-last.npz", data_dir)
        rows = metrics(folder)
        results[name] = {"test_accuracy": test["accuracy"], "per_class": test["per_class"],
                         "epochs": rows[-1]["epoch"], "final_train_loss": rows[-1]["train_loss"],
                         "val_accuracy_curve": [row["val_accuracy"] for row in rows]}

    atomic_write_text(outputs[0], json.dumps(results, indent=2) + "\n")
    table = [
        "| | test accuracy (5 new classes, 5,000 images) |",
        "|---|---|",
        f"| finetuned from the 5-class pretraining | {100 * results['finetune']['test_accuracy']:.2f}% |",
        f"| from scratch, same images and recipe | {100 * results['scratch']['test_accuracy']:.2f}% |",
    ]
    atomic_write_text(outputs[1],
        "# Pretrain on five CIFAR-10 classes, finetune on the other five (100 images per class, 48 px)\n\n"
        f"{results['machine']}\n\n"
        f"Pretraining: {results['pretrain']['epochs']:.1f} epochs, validation accuracy "
        f"{100 * results['pretrain']['val_accuracy']:.2f}% on its five classes.\n\n"
        + "\n".join(table) + "\n\nCommands:\n\n"
        + "\n".join(f"    python {command}" for command in results["commands"].values()) + "\n")
    figure(results, outputs[2])
    print("\n".join(table))
    return 0


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, bars) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    for name, label, color in (("finetune", "finetuned", "tab:blue"), ("scratch", "from scratch", "tab:gray")):
        curve = results[name]["val_accuracy_curve"]
        curves.plot(range(1, len(curve) + 1), [100 * v for v in curve], label=label, color=color)
    curves.set_xlabel("epoch (500 training images)")
    curves.set_ylabel("validation accuracy (%)")
    curves.set_title("dog, frog, horse, ship, truck at 48 px")
    curves.legend()
    curves.grid(alpha=0.3)
    values = [100 * results["finetune"]["test_accuracy"], 100 * results["scratch"]["test_accuracy"]]
    bars.bar(["finetuned", "from scratch"], values, color=["tab:blue", "tab:gray"])
    for x, value in enumerate(values):
        bars.text(x, value + 1, f"{value:.1f}%", ha="center")
    bars.set_ylim(0, 100)
    bars.set_ylabel("test accuracy (%)")
    bars.set_title("5,000 test images")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
