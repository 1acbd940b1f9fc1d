"""minivit against transformers' ViT on PyTorch CPU: the same model, recipe and time budget.

    python benchmarks/cpu_training_budget.py --data-dir data/cifar10-jpg [--budget 600] [--preset cifar-tiny] [--seed 0]

Runs, one after the other on this machine:
  1. the README's command, python -m minivit.train --preset P --time-budget B, then
     python -m minivit.evaluate on the test split;
  2. the same run with transformers' ViTForImageClassification and torch.optim.AdamW
     (benchmarks/torch_reference.py: minivit's Trainer with PyTorch's model and optimizer),
     evaluated on the same test split.
Both sides start from the same initial weights and see the same batches (--seed).
Prints both sides and writes them to benchmarks/results/cpu-training-<preset>-<budget>s[-seed<N>].json.
The run folders (runs/bench-*) and that file are replaced only with --overwrite, checked before any
training: the file is the repository's committed result.
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
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def seed_suffix(args) -> str:
    return f"-seed{args.seed}" if args.seed else ""


def run_folder(args, side: str) -> Path:
    return ROOT / "runs" / f"bench-{side}-{args.preset}-{int(args.budget)}s{seed_suffix(args)}"


def results_file(args) -> Path:
    return ROOT / "benchmarks" / "results" / f"cpu-training-{args.preset}-{int(args.budget)}s{seed_suffix(args)}.json"


def check_nothing_is_replaced(args) -> None:
    """The results file and the run folders this would replace: refused without --overwrite."""
    sides = [side for side in ("minivit", "torch") if args.only in (None, side)]
    folders = [run_folder(args, side) for side in sides]
    if args.resume:  # minivit's run continues; the torch side starts over
        folders = [folder for folder in folders if "bench-minivit" not in folder.name]
    existing = [path for path in [results_file(args), *folders] if path.exists()]
    if existing and not args.overwrite:
        raise SystemExit(f"error: {', '.join(str(path.relative_to(ROOT)) for path in existing)} already exist(s): "
                         "nothing was run. Pass --overwrite to replace them (the results file is the "
                         "repository's).")


def run_minivit(args) -> dict:
    out = run_folder(args, "minivit")
    command = [sys.executable, "-m", "minivit.train", "--preset", args.preset, "--time-budget", str(args.budget),
               "--data-dir", args.data_dir, "--out", str(out), "--no-progress", "--seed", str(args.seed)]
    if args.resume and (out / "checkpoint-last.npz").exists():
        command.append("--resume")
    elif out.exists():
        shutil.rmtree(out)
    print("$", " ".join(command), flush=True)
    train_summary = json.loads(subprocess.run(command, check=True, capture_output=True, text=True,
                                              cwd=ROOT).stdout.strip().splitlines()[-1])
    evaluate = [sys.executable, "-m", "minivit.evaluate", "--checkpoint", str(out / "checkpoint-last.npz"),
                "--data-dir", args.data_dir, "--split", "test", "--json"]
    print("$", " ".join(evaluate), flush=True)
    test = json.loads(subprocess.run(evaluate, check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"steps": train_summary["step"], "epochs": rows[-1]["epoch"], "train_seconds": train_summary["elapsed"],
            "images_per_second": rows[-1]["images_per_second"], "val_accuracy": rows[-1]["val_accuracy"],
            "test_accuracy": test["accuracy"], "run_dir": str(out.relative_to(ROOT))}


def run_torch(args) -> dict:
    from torch_reference import TorchTrainer

    from minivit.train import RECIPES, TrainConfig

    out = run_folder(args, "torch")
    if out.exists():
        shutil.rmtree(out)
    config = TrainConfig(preset=args.preset, out=str(out), data_dir=args.data_dir, time_budget=args.budget,
                         progress=False, seed=args.seed, **RECIPES[args.preset])
    trainer = TorchTrainer(config, threads=args.threads)
    summary = trainer.run()
    test_set = __import__("minivit.data", fromlist=["load_split"]).load_split(args.data_dir, "test")
    test = trainer.evaluate(test_set.images, test_set.labels)
    last = trainer.history[-1]
    return {"steps": summary["step"], "epochs": last["epoch"], "train_seconds": summary["elapsed"],
            "images_per_second": last["images_per_second"], "val_accuracy": last["val_accuracy"],
            "test_accuracy": test["accuracy"], "run_dir": str(out.relative_to(ROOT))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--budget", type=float, default=600.0)
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0, help="initial weights, data order, augmentation")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--only", choices=["minivit", "torch"])
    parser.add_argument("--overwrite", action="store_true", help="replace the run folders and the results file")
    args = parser.parse_args()
    check_nothing_is_replaced(args)

    from machine import describe

    from minivit.atomic import atomic_write_text

    started = time.strftime("%Y-%m-%d %H:%M")
    results = {}
    if args.only in (None, "minivit"):
        results["minivit (NumPy)"] = run_minivit(args)
        print(json.dumps(results["minivit (NumPy)"]), flush=True)
    if args.only in (None, "torch"):
        results["transformers (PyTorch CPU)"] = run_torch(args)
        print(json.dumps(results["transformers (PyTorch CPU)"]), flush=True)

    machine = describe(args.threads)
    print(machine)
    print(f"preset {args.preset}, seed {args.seed}, time budget {args.budget:.0f} s of training each, "
          f"started {started}")
    print()
    print("| side | steps | epochs | images/s | val accuracy | test accuracy |")
    print("|---|---|---|---|---|---|")
    for side, r in results.items():
        print(f"| {side} | {r['steps']} | {r['epochs']:.2f} | {r['images_per_second']:.0f} | "
              f"{100 * r['val_accuracy']:.2f}% | {100 * r['test_accuracy']:.2f}% |")
    out = results_file(args)
    atomic_write_text(out, json.dumps({"machine": machine, "preset": args.preset, "seed": args.seed,
                               "budget_seconds": args.budget, "started": started, "command": " ".join(sys.argv),
                               "results": results}, indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
