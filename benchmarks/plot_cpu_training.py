"""Draw figures/cpu-training-<preset>.png (-<budget>s.png for another budget than 600 s) from the two
run folders of cpu_training_budget.py.

    python benchmarks/plot_cpu_training.py [--preset cifar-cpu] [--budget 600] [--tag openblas-avx512] [--seed 0]
                                           [--long runs/hour-seed0 runs/hour-seed1]

Training loss per step (mean of 20 steps) for minivit and for the PyTorch reference, each up to
the step where its time budget ran out, and the validation accuracy at the end of each epoch.
--tag and --seed pick the folders that cpu_training_budget.py --tag T --seed S wrote. With --long, a third panel:
validation accuracy against minutes of training for those two runs and longer runs of minivit (for
example the hour-long ones, each labelled with its seed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from cpu_training_budget import run_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-cpu")
    parser.add_argument("--budget", type=int, default=600)
    parser.add_argument("--tag", default="", help="the --tag the runs of cpu_training_budget.py were given")
    parser.add_argument("--seed", type=int, default=0, help="the --seed they were given")
    parser.add_argument("--long", nargs="+", default=[],
                        help="longer run folders of the same preset, drawn against time")
    parser.add_argument("--overwrite", action="store_true", help="replace the committed figure")
    args = parser.parse_args()
    budget_in_name = "" if args.budget == 600 else f"-{args.budget}s"  # the ten-minute figure keeps its name
    out = ROOT / "figures" / f"cpu-training-{args.preset}{budget_in_name}.png"
    if out.exists() and not args.overwrite:
        raise SystemExit(f"error: {out.relative_to(ROOT)} already exists (a committed figure): nothing was drawn. "
                         "Pass --overwrite to replace it.")
    if len(args.long) > 4:
        raise SystemExit(f"error: --long: {len(args.long)} folders; the figure draws at most 4.")
    named = SimpleNamespace(preset=args.preset, budget=args.budget, tag=args.tag, seed=args.seed)
    sides = {f"minivit (NumPy), seed {args.seed}": run_folder(named, "minivit"),
             f"transformers (PyTorch CPU), seed {args.seed}": run_folder(named, "torch")}
    for folder in sides.values():
        if not (folder / "metrics.jsonl").exists():
            tag = f" --tag {args.tag}" if args.tag else ""
            raise SystemExit(f"error: {folder.relative_to(ROOT)}/metrics.jsonl not found: run "
                             f"benchmarks/cpu_training_budget.py --preset {args.preset} --budget {args.budget}{tag} "
                             f"--seed {args.seed} first, or pass the --tag and --seed it was given.")
    for folder in map(Path, args.long):
        if not (folder / "metrics.jsonl").exists() or not (folder / "train_config.json").exists():
            raise SystemExit(f"error: --long {folder}: not a run folder (no metrics.jsonl or train_config.json).")
    fig, axes = plt.subplots(1, 3 if args.long else 2, figsize=(15 if args.long else 10, 3.6))
    loss_axis, accuracy_axis = axes[:2]
    for color, (label, folder) in zip(["C0", "C1"], sides.items()):
        steps = read_jsonl(folder / "steps.jsonl")
        epochs = read_jsonl(folder / "metrics.jsonl")
        if args.long:
            axes[2].plot([row["elapsed"] / 60 for row in epochs], [100 * row["val_accuracy"] for row in epochs],
                         "o-", color=color, label=f"{label}, {args.budget / 60:g} min")
        step = np.array([row["step"] for row in steps])
        loss = np.array([row["loss"] for row in steps])
        window = 20
        loss_axis.plot(step[window - 1:], np.convolve(loss, np.ones(window) / window, mode="valid"),
                       color=color, label=label)
        loss_axis.axvline(step[-1], color=color, linestyle=":", linewidth=1)
        accuracy_axis.plot([row["step"] for row in epochs], [100 * row["val_accuracy"] for row in epochs],
                           "o-", color=color, label=label)
    loss_axis.set_xlabel(f"step (dotted: where the {args.budget / 60:g}-minute budget ran out)")
    loss_axis.set_ylabel("training loss, mean of 20 steps")
    loss_axis.legend()
    accuracy_axis.set_xlabel("step")
    accuracy_axis.set_ylabel("validation accuracy (%)")
    accuracy_axis.legend()
    for color, folder in zip(["C2", "C3", "C4", "C5"], args.long):
        epochs = read_jsonl(Path(folder) / "metrics.jsonl")
        seed = json.loads((Path(folder) / "train_config.json").read_text()).get("seed", "?")
        axes[2].plot([row["elapsed"] / 60 for row in epochs], [100 * row["val_accuracy"] for row in epochs],
                     ".-", color=color, label=f"minivit (NumPy), {epochs[-1]['elapsed'] / 60:.0f} min, seed {seed}")
    if args.long:
        axes[2].set_xlabel("minutes of training")
        axes[2].set_ylabel("validation accuracy (%)")
        axes[2].legend()
    fig.suptitle(f"{args.preset}, {args.budget} s of training on the same 2-core CPU"
                 + (" (right: and longer runs)" if args.long else ""))
    fig.tight_layout()
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
