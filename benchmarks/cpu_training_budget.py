"""minivit against transformers' ViT on PyTorch CPU: the same model, recipe and time budget.

    python benchmarks/cpu_training_budget.py --data-dir data/cifar10-jpg [--budget 600] [--preset cifar-tiny]
        [--seed 0] [--train-args "--patch-size 4 --ema 0.999"] [--tag patch4-ema]

Runs, one after the other on this machine:
  1. the README's command, python -m minivit.train --preset P --time-budget B [train args], then
     python -m minivit.evaluate on the test split: the last weights, with --tta, and (a run with
     --ema) the moving average of the weights, with and without --tta;
  2. the same run with transformers' ViTForImageClassification and torch.optim.AdamW
     (benchmarks/torch_reference.py: minivit's Trainer with PyTorch's model and optimizer), from
     the same options, with the recipe minivit's run chose under the budget (its budget_choice:
     the same recipe, even if PyTorch's pace would have chosen another row), evaluated the same ways.
Both sides start from the same initial weights and see the same batches (--seed). On a virtual machine the
hypervisor may give a share of the cores' time to other machines ("steal"); each side's share over its
training is printed and kept (stolen_share): a side that lost much of it fitted fewer epochs for no fault
of its own.
Prints both sides and writes them to benchmarks/results/cpu-training-<preset>-<budget>s[-<tag>][-seed<N>].json
(or --results-dir; with --only torch the name ends in -torch.json). --choice-from names another minivit run
folder whose recipe the torch side runs (say a run of benchmarks/cpu_recipe_sweep.py). The run folders
(runs/bench-*) and that file are replaced only with --overwrite, checked before any training: the file is
the repository's committed result.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import cpu_times, describe, describe_steal, stolen_share  # noqa: E402


def seed_suffix(args) -> str:
    return (f"-{args.tag}" if args.tag else "") + (f"-seed{args.seed}" if args.seed else "")


def train_options(args, out: Path) -> list[str]:
    """The options of python -m minivit.train that both sides run with."""
    return ["--preset", args.preset, "--time-budget", str(args.budget), "--data-dir", args.data_dir,
            "--out", str(out), "--no-progress", "--seed", str(args.seed), *shlex.split(args.train_args)]


def minivit_run_dir(args) -> Path:
    return run_folder(args, "minivit")


def run_folder(args, side: str) -> Path:
    return ROOT / "runs" / f"bench-{side}-{args.preset}-{int(args.budget)}s{seed_suffix(args)}"


def results_file(args) -> Path:
    """PyTorch's side alone (--only torch) writes its own file, so minivit's file of the same seed stays."""
    side = f"-{args.only}" if args.only == "torch" else ""
    return Path(args.results_dir) / f"cpu-training-{args.preset}-{int(args.budget)}s{seed_suffix(args)}{side}.json"


def check_choice_from(args) -> None:
    """--choice-from must name a minivit run folder: refused before any training, not after minivit's side."""
    if args.choice_from and not (Path(args.choice_from) / "train_config.json").exists():
        raise SystemExit(f"error: --choice-from {args.choice_from}: no train_config.json there; name the folder "
                         "of a minivit run (its --out). Nothing was run.")


def check_nothing_is_replaced(args) -> None:
    """The results file and the run folders this would replace: refused without --overwrite."""
    sides = [side for side in ("minivit", "torch") if args.only in (None, side)]
    folders = [run_folder(args, side) for side in sides]
    if args.resume:  # minivit's run continues; the torch side starts over
        folders = [folder for folder in folders if "bench-minivit" not in folder.name]
    existing = [path for path in [results_file(args), *folders] if path.exists()]
    if existing and not args.overwrite:
        raise SystemExit(f"error: {', '.join(str(path) for path in existing)} already exist(s): "
                         "nothing was run. Pass --overwrite to replace them (the results file is the "
                         "repository's).")


def run_minivit(args) -> dict:
    out = minivit_run_dir(args)
    command = [sys.executable, "-m", "minivit.train", *train_options(args, out)]
    if args.resume and (out / "checkpoint-last.npz").exists():
        command.append("--resume")
    elif out.exists():
        shutil.rmtree(out)
    print("$", " ".join(command), flush=True)
    before = cpu_times()
    train_summary = json.loads(subprocess.run(command, check=True, capture_output=True, text=True,
                                              cwd=ROOT).stdout.strip().splitlines()[-1])
    stolen = stolen_share(before, cpu_times())
    config = json.loads((out / "train_config.json").read_text())
    tests = {}
    for weights in ("raw", "ema") if config["ema"] else ("raw",):
        for tta in (False, True):
            evaluate = [sys.executable, "-m", "minivit.evaluate", "--checkpoint", str(out / "checkpoint-last.npz"),
                        "--data-dir", args.data_dir, "--split", "test", "--json", "--weights", weights,
                        *(["--tta"] if tta else [])]
            print("$", " ".join(evaluate), flush=True)
            result = subprocess.run(evaluate, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            tests[test_key(weights, tta)] = json.loads(result)["accuracy"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"steps": train_summary["step"], "epochs": rows[-1]["epoch"], "train_seconds": train_summary["elapsed"],
            "images_per_second": rows[-1]["images_per_second"], "val_accuracy": rows[-1]["val_accuracy"],
            **tests, "budget_choice": config.get("budget_choice"), "run_dir": str(out.relative_to(ROOT)),
            "stolen_share": stolen}


def test_key(weights: str, tta: bool) -> str:
    return ("ema_" if weights == "ema" else "") + "test_accuracy" + ("_tta" if tta else "")


def run_torch(args) -> dict:
    from torch_reference import TorchTrainer

    from minivit.data import load_split
    from minivit.train import config_from_args
    from minivit.training import budget_recipe

    out = run_folder(args, "torch")
    if out.exists():
        shutil.rmtree(out)
    config, _ = config_from_args(train_options(args, out))
    minivit_config = Path(args.choice_from or minivit_run_dir(args)) / "train_config.json"
    choice = json.loads(minivit_config.read_text()).get("budget_choice") if minivit_config.exists() else None
    if choice and config.budget_recipe:  # the recipe minivit's run chose: the same recipe on both sides
        config = budget_recipe.apply(config, choice)
    trainer = TorchTrainer(config, threads=args.threads)
    before = cpu_times()
    summary = trainer.run()
    stolen = stolen_share(before, cpu_times())
    test_set = load_split(args.data_dir, "test")
    tests = {}
    for weights in ("raw", "ema") if trainer.ema is not None else ("raw",):
        for tta in (False, True):
            if weights == "ema":
                with trainer.ema.in_model(trainer.model):
                    tests[test_key(weights, tta)] = trainer.evaluate(test_set.images, test_set.labels, tta)["accuracy"]
            else:
                tests[test_key(weights, tta)] = trainer.evaluate(test_set.images, test_set.labels, tta)["accuracy"]
    last = trainer.history[-1]
    return {"steps": summary["step"], "epochs": last["epoch"], "train_seconds": summary["elapsed"],
            "images_per_second": last["images_per_second"], "val_accuracy": last["val_accuracy"],
            **tests, "budget_choice": trainer.config.budget_choice, "run_dir": str(out.relative_to(ROOT)),
            "stolen_share": stolen}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--budget", type=float, default=600.0)
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0, help="initial weights, data order, augmentation")
    parser.add_argument("--train-args", default="", help="more options of python -m minivit.train, for both sides")
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--tag", default="", help="a name for the options, in the results file's name")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--only", choices=["minivit", "torch"])
    parser.add_argument("--choice-from", help="the torch side runs the budget recipe that this minivit run folder "
                        "chose (default: this command's own minivit run folder), say one of cpu_recipe_sweep.py's")
    parser.add_argument("--overwrite", action="store_true", help="replace the run folders and the results file")
    args = parser.parse_args()
    check_choice_from(args)
    check_nothing_is_replaced(args)

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
          f"options {args.train_args or '(the recipe)'}, started {started}")
    for side, r in results.items():
        print(f"{side}: {describe_steal(r['stolen_share'])}")
        if r.get("budget_choice"):
            print(f"{side}: budget recipe row '{r['budget_choice']['row']}' ({r['budget_choice']['epochs']} epochs "
                  "estimated)")
    print()
    print("| side | steps | epochs | images/s | val accuracy | test accuracy | + flip TTA | EMA | EMA + flip TTA |")
    print("|---|---|---|---|---|---|---|---|---|")
    for side, r in results.items():
        cells = [f"{100 * r[key]:.2f}%" if key in r else "" for key in
                 ("test_accuracy", "test_accuracy_tta", "ema_test_accuracy", "ema_test_accuracy_tta")]
        print(f"| {side} | {r['steps']} | {r['epochs']:.2f} | {r['images_per_second']:.0f} | "
              f"{100 * r['val_accuracy']:.2f}% | " + " | ".join(cells) + " |")
    out = results_file(args)
    atomic_write_text(out, json.dumps({"machine": machine, "preset": args.preset, "seed": args.seed,
                                       "budget_seconds": args.budget, "train_args": args.train_args,
                                       "started": started, "command": " ".join(sys.argv), "results": results},
                                      indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
