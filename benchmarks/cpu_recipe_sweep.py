"""Sweep recipes on the CPU: short runs of candidate models and recipes, judged on the validation split.

    python benchmarks/cpu_recipe_sweep.py --data-dir data/cifar10-jpg --budget 600 [--seeds 0 1]
        [--base "--patch-size 4"] [--only NAME ...] [--extra "NAME=OPTIONS" ...] [--test]

Each candidate is ``python -m minivit.train --preset cifar-cpu --time-budget B [base options]
[the candidate's options]`` (a candidate's flags come last, so they win over --base; with the
cifar-cpu recipe the budget recipe chooses the regularisation for the epochs the budget allows,
and any flag given overrides its choice). One run at a time, so that each has the machine to itself.

Every run is judged on its validation split (the test split is not used to choose), four ways from
one run: its last weights, the same with flip test-time augmentation, and, when the run kept a
moving average of its weights (``--ema``; every candidate does unless --no-ema), the average with
and without flips. So the EMA and TTA columns cost no runs of their own. The EMA's validation
inside the run takes a little of the budget (one more pass over the validation images per epoch).
``--test`` adds the last weights' test accuracy, with and without flips, after each run (outside its
clock): what the README's results report, shown beside the validation that chooses, never used to choose.

Prints a table (and appends it to --table) with what each candidate changed, the row of the budget
recipe it got, its steps, epochs, images/s and the four accuracies, the machine, and the 1-minute
load average at the end of each run (above about 2 on 2 cores, something else was running: that
row is suspect) and the share of the run's CPU time the hypervisor gave to other virtual machines
(steal: a run that lost much of it fitted fewer epochs than the machine's own pace allows).
Differences under about a point are noise (two runs of the same candidate differed by 0.6 points in
benchmarks/results/cpu-recipe-sweep.md): run two seeds before believing one.
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

EMA_DECAY = "0.999"  # about the last thousand steps: a sixth of ten CPU minutes, a thirtieth of an hour


def shape(hidden: int, layers: int, heads: int, mlp: int) -> list[str]:
    return ["--hidden-size", str(hidden), "--num-hidden-layers", str(layers), "--num-attention-heads", str(heads),
            "--intermediate-size", str(mlp)]


# name -> the options it changes from the cifar-cpu preset and recipe (flags of python -m minivit.train).
# The rows in benchmarks/results/cpu-recipe-sweep.md changed the preset as it stood then (patch 4, crops;
# 4 layers with an MLP of 512 before 2026-12-07, 3 layers with an MLP of 256 since).
CANDIDATES = {
    "cifar-cpu": [],
    # the learning rate (at 8-px patches in round 7; for the hour in rounds 4 and 5)
    "lr 1e-3": ["--lr", "1e-3"],
    "lr 2e-3": ["--lr", "2e-3"],  # the preset's own rate, which the budget recipe halves under 25 epochs
    "lr 7e-4": ["--lr", "7e-4"],
    "lr 1.4e-3": ["--lr", "1.4e-3"],
    "lr 3e-3": ["--lr", "3e-3"],
    "lr 4e-3": ["--lr", "4e-3"],
    # warmup: the share of the budget (--warmup-epochs of the recipe's 100 nominal epochs)
    "warmup 2%": ["--warmup-epochs", "2"],
    "warmup 10%": ["--warmup-epochs", "10"],
    "warmup 20%": ["--warmup-epochs", "20"],
    # width, depth and patches
    "D96 L4 MLP384": shape(96, 4, 4, 384),
    "D192 L4 MLP768": shape(192, 4, 4, 768),
    "D128 L4 MLP512": shape(128, 4, 4, 512),  # the preset before 2026-12-07
    "D128 L4 MLP256": shape(128, 4, 4, 256),
    "D128 L3 MLP512": shape(128, 3, 4, 512),
    "D128 L6 MLP512": shape(128, 6, 4, 512),
    "patch 4 (64 tokens)": ["--patch-size", "4"],
    "patch 8": ["--patch-size", "8"],
    # pooling, and the regularisation the budget recipe would choose
    "mean pooling": ["--pooling", "mean"],
    "random crops": ["--crop-padding", "4"],
    "no crops": ["--crop-padding", "0"],
    "RandAugment 2/5": ["--randaugment-ops", "2", "--randaugment-magnitude", "5"],
    "label smoothing 0": ["--label-smoothing", "0"],
    "weight decay 0.1": ["--weight-decay", "0.1"],
    "batch 256": ["--batch-size", "256"],
    "recipe as written (no budget recipe)": ["--no-budget-recipe"],
}


def out_dir(name: str, args, seed: int) -> Path:
    folder = name.replace(" ", "_").replace("(", "").replace(")", "").replace("/", "-")
    return Path(args.runs) / f"{args.budget:g}s" / f"{folder}-seed{seed}"


def train_command(options: list, args, seed: int, out: Path) -> list[str]:
    ema = [] if args.no_ema else ["--ema", EMA_DECAY]
    data_dir = str(Path(args.data_dir).resolve())  # the run's own record of it, read back by validation_accuracies
    return [sys.executable, "-m", "minivit.train", "--preset", "cifar-cpu", "--data-dir", data_dir,
            "--out", str(out), "--time-budget", str(args.budget), "--no-progress", "--seed", str(seed),
            *ema, *shlex.split(args.base), *options]


def validation_accuracies(run_dir: Path) -> dict:
    """Accuracy on the run's own validation split, of its last checkpoint: raw and EMA weights, with and
    without flip test-time augmentation (the split rebuilt as the Trainer built it: same data, seed, share)."""
    import numpy as np

    from minivit.checkpoint import load_checkpoint, read_ema_weights
    from minivit.evaluate import evaluate_model
    from minivit.training.data import load_training_images, split_for_validation

    path = run_dir / "checkpoint-last.npz"
    model = load_checkpoint(path)
    meta = model.checkpoint_meta
    options = meta["train_config"]
    full = load_training_images(options["data_dir"], model.config.image_size, options["classes"])
    _, val = split_for_validation(full, options["val_fraction"], options["seed"])
    mean, std = np.array(meta["mean"], np.float32), np.array(meta["std"], np.float32)
    result = {}
    for weights in ("raw", "ema"):
        if weights == "ema":
            ema = read_ema_weights(path)
            if not ema:
                break
            model.load_state_dict(ema)
        for tta in (False, True):
            result[weights + (" tta" if tta else "")] = evaluate_model(model, val.images, val.labels, mean, std,
                                                                       tta=tta)["accuracy"]
    return result


def test_accuracies(run_dir: Path, data_dir: str) -> dict:
    """The test accuracy of a run's last checkpoint (its raw weights), without and with flips."""
    from minivit.evaluate import evaluate_checkpoint

    path = run_dir / "checkpoint-last.npz"
    return {"test" + (" tta" if tta else ""): evaluate_checkpoint(path, data_dir, "test", progress=False,
                                                                  tta=tta)["accuracy"] for tta in (False, True)}


def run(name: str, options: list, args, seed: int) -> dict:
    from machine import cpu_times, stolen_share

    out = out_dir(name, args, seed)
    if out.exists():
        shutil.rmtree(out)
    started, cpu_before = time.perf_counter(), cpu_times()
    result = subprocess.run(train_command(options, args, seed, out), capture_output=True, text=True, cwd=ROOT)
    stolen = stolen_share(cpu_before, cpu_times())  # the hypervisor's share of the cores' time (machine.py)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no message)"]
        return {"name": name, "options": " ".join(options), "seed": seed, "error": lines[-1]}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    config = json.loads((out / "train_config.json").read_text())
    choice = config.get("budget_choice") or {}
    return {"name": name, "options": " ".join(options), "seed": seed, "steps": last["step"], "epochs": last["epoch"],
            "load": os.getloadavg()[0], "stolen": stolen, "images_per_second": last["images_per_second"],
            "row": choice.get("row", "(none)"), "accuracies": validation_accuracies(out),
            "tests": test_accuracies(out, args.data_dir) if args.test else {},
            "wall_seconds": time.perf_counter() - started}


def table_line(result: dict, base: str = "") -> str:
    """One row of the table; a candidate that changes nothing runs the preset, or the --base options."""
    options = f"`{result['options']}`" if result["options"] else (f"(the base: `{base}`)" if base else "(the preset)")
    if "error" in result:
        return f"| {result['name']} | {options} | {result['seed']} | failed: {result['error']} | | | | | | | | | | | |"
    measured = {**result["accuracies"], **result.get("tests", {})}
    cells = [f"{100 * measured[key]:.2f}%" if key in measured else ""
             for key in ("raw", "raw tta", "ema", "ema tta", "test", "test tta")]
    stolen = "" if result.get("stolen") is None else f"{100 * result['stolen']:.1f}%"
    return (f"| {result['name']} | {options} | {result['seed']} | {result['row']} | {result['steps']} | "
            f"{result['epochs']:.2f} | {result['images_per_second']:.0f} | " + " | ".join(cells)
            + f" | {result['load']:.1f} | {stolen} |")


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


def chosen_candidates(only: list | None, extras: list) -> dict:
    """name -> options: the candidates --only names, then the --extra ones ("NAME=OPTIONS"); with neither
    flag, every candidate, and with --extra alone, only the extras."""
    names = only if only is not None else ([] if extras else CANDIDATES)
    candidates = {name: CANDIDATES[name] for name in names}
    for extra in extras:
        name, _, options = extra.partition("=")
        candidates[name] = shlex.split(options)
    return candidates


def main() -> None:
    from machine import describe

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of training per candidate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="each candidate once per seed")
    parser.add_argument("--base", default="", help="options for every candidate, e.g. '--patch-size 4' for the hour")
    parser.add_argument("--no-ema", action="store_true", help="no --ema runs (no EMA columns)")
    parser.add_argument("--only", nargs="+", help="candidate names (default: all, or none but the --extra ones)")
    parser.add_argument("--extra", action="append", default=[],
                        help="another candidate: NAME=OPTIONS, e.g. 'lr 3e-3 batch 64=--lr 3e-3 --batch-size 64'")
    parser.add_argument("--test", action="store_true",
                        help="also the test accuracy of each run's last weights (reported, not used to choose)")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "sweep"), help="where the run folders go")
    parser.add_argument("--table", default=str(ROOT / "benchmarks" / "results" / "cpu-recipe-sweep.md"))
    args = parser.parse_args()
    unknown = sorted(set(args.only or ()) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; choose from: {', '.join(CANDIDATES)}")
    candidates = chosen_candidates(args.only, args.extra)
    command = " ".join(shlex.quote(part) for part in ["python", "benchmarks/cpu_recipe_sweep.py", *sys.argv[1:]])
    header = (f"\n### {args.budget:g} s of training per candidate, seeds {' '.join(map(str, args.seeds))}, "
              f"base `{args.base or '(none)'}`\n\n`{command}`\n\n" + describe() + "\n\n"
              "| candidate | options changed | seed | budget recipe row | steps | epochs | images/s | validation "
              "| + flip TTA | EMA | EMA + flip TTA | test | test + flip TTA | load | CPU time stolen |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(header, flush=True)
    warm_up()
    lines = [header]
    for name, options in candidates.items():
        for seed in args.seeds:
            line = table_line(run(name, options, args, seed), args.base)
            print(line, flush=True)
            lines.append(line)
    with open(args.table, "a") as table:
        table.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
