"""The ablation lab: short training runs that change one part of the ViT, a few seeds each, and the
check of a learner's conclusions against the measured table.

    run_lab(runs_dir, data_dir, seeds, time_budget)   train the baseline and each variant, every seed;
                                                      a run already finished in runs_dir is read, not redone
    summarise(results)                                the table: per ablation, each setting's accuracies,
                                                      their means, the difference, the seed spread, the verdict
    format_table(table)                               the table as Markdown
    check_conclusions(conclusions, table)             the learner's {ablation: (better, by)} against the table

The baseline is the ``cifar-cpu`` preset and recipe (the recipe as written, not fitted to the budget,
so that only the ablated field differs); each variant changes one ViTConfig field. Every run trains
for the same wall-clock budget (``--time-budget``): a variant that costs more per step (4-pixel
patches: four times the tokens) takes fewer steps, as it would in any fixed-time comparison.

The seed spread: across the seeds of one setting, the largest minus the smallest validation accuracy;
the lab's spread is the largest over all its settings. A difference between two settings' means
counts when it is larger than that spread; otherwise the verdict is "neither".

From a shell (a quiet machine; about (1 + len(ABLATIONS)) * seeds * (budget + 20 s)):

    python -m support.ablations --data-dir DIR --seeds 0 1 2 --time-budget 120    (run from lessons/)
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minivit.config import PRESETS

from .diagnosis import NotYet


@dataclass(frozen=True)
class Ablation:
    """One change of the baseline: ViTConfig ``field`` from ``baseline`` to ``variant``."""

    name: str
    field: str
    baseline: object
    variant: object


PRESET = "cifar-cpu"
_BASELINE = PRESETS[PRESET]  # each ablation's baseline value is the preset's own
ABLATIONS = (
    Ablation("position embeddings", "position_embedding_type", "learned", "none"),
    Ablation("pooling", "pooling", "cls", "mean"),
    Ablation("patch size", "patch_size", _BASELINE["patch_size"], 4),
    Ablation("depth", "num_hidden_layers", _BASELINE["num_hidden_layers"], 2),
)
RESULT_FILE = "lab_result.json"  # what a finished run of the lab leaves in its folder


def settings(ablations=ABLATIONS) -> dict[str, dict]:
    """{run label: ViTConfig overrides}: "baseline" and one label per variant ("pooling=mean")."""
    labels = {"baseline": {}}
    for ablation in ablations:
        labels[f"{ablation.field}={ablation.variant}"] = {ablation.field: ablation.variant}
    return labels


def run_lab(runs_dir, data_dir, seeds=(0, 1, 2), time_budget: float = 120.0, ablations=ABLATIONS,
            model: dict | None = None, recipe: dict | None = None, log=print) -> list[dict]:
    """Train every setting (``settings``) with every seed for ``time_budget`` seconds; returns one row per
    run: {"label", "overrides", "seed", "val_accuracy", "steps", "elapsed"}. ``model``: overrides for every
    run (a smaller model in fast mode); ``recipe``: TrainConfig changes for every run (fast mode: max_steps).
    A run whose folder already holds its result with the same configuration is read back, not retrained;
    a result of another configuration there is an error (the lab never overwrites a run). Ctrl-C (or a
    notebook's interrupt) stops the lab after saving the run in progress, which the next call continues."""
    from minivit.atomic import atomic_write_text
    from minivit.train import RECIPES, TrainConfig, train

    if len(seeds) < 2:
        raise ValueError(f"seeds={list(seeds)}: the lab needs at least two seeds to measure their spread.")
    rows = []
    for label, overrides in settings(ablations).items():
        for seed in seeds:
            out = Path(runs_dir) / f"{label}-seed{seed}"
            values = {**RECIPES[PRESET], "budget_recipe": False, "progress": False, **(recipe or {})}
            config = TrainConfig(preset=PRESET, model={**(model or {}), **overrides}, data_dir=str(data_dir),
                                 out=str(out), seed=seed, time_budget=time_budget, **values)
            # the whole model, not only the overrides: a run of the preset at another size is another run
            described = {"model": config.model_config().to_dict(), "seed": seed,
                         "time_budget": time_budget, "recipe": recipe or {}}
            done = out / RESULT_FILE
            if done.is_file():
                if json.loads(done.read_text()).get("config") != json.loads(json.dumps(described)):
                    raise ValueError(
                        f"{out} holds a lab run of another configuration (another model, seed, budget or recipe; "
                        f"the cifar-cpu preset changed size on 2026-12-07): move or delete that folder, or give "
                        f"the lab another runs folder, to train this one.")
                row = json.loads(done.read_text())["result"]
                log(f"{label:32s} seed {seed}: {row['val_accuracy']:.1%} after {row['steps']} steps (read back)")
            else:
                resume = (out / "checkpoint-last.npz").is_file()  # a run the lab was interrupted in
                if resume:
                    log(f"{label:32s} seed {seed}: continuing the interrupted run in {out}")
                summary = train(config, resume=resume)
                # (a Ctrl-C on the run's last step leaves nothing to continue: that run is done)
                spent = summary["elapsed"] >= time_budget or summary["step"] >= (config.max_steps or float("inf"))
                if summary["stop_reason"] == "interrupted" and not spent:  # Ctrl-C: stop the lab too
                    raise KeyboardInterrupt(f"The lab stopped in {label} seed {seed}, whose run is saved in {out}; "
                                            f"run the lab again to continue it there.")
                row = {"label": label, "overrides": overrides, "seed": seed,
                       "val_accuracy": float(summary["val_accuracy"]), "steps": int(summary["step"]),
                       "elapsed": float(summary["elapsed"])}
                atomic_write_text(done, json.dumps({"config": described, "result": row}, indent=1))
                log(f"{label:32s} seed {seed}: {row['val_accuracy']:.1%} after {row['steps']} steps")
                if summary["stop_reason"] == "interrupted":
                    raise KeyboardInterrupt("The lab stopped after that run; run it again to go on with the next.")
            rows.append(row)
    return rows


def summarise(rows: list[dict], ablations=ABLATIONS) -> dict:
    """{"spread": the lab's seed spread, "ablations": {name: {"baseline": (value, [accuracies]),
    "variant": (value, [accuracies]), "difference": variant mean - baseline mean, "better": the better
    setting's value, or "neither" when the difference is within the spread}}}. Accuracies in points (%)."""
    by_label: dict[str, list[float]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(100 * row["val_accuracy"])
    spread = max(max(values) - min(values) for values in by_label.values())
    table = {"spread": spread, "ablations": {}}
    for ablation in ablations:
        baseline = by_label["baseline"]
        variant = by_label[f"{ablation.field}={ablation.variant}"]
        difference = float(np.mean(variant) - np.mean(baseline))
        better = "neither" if abs(difference) <= spread else \
            str(ablation.variant if difference > 0 else ablation.baseline)
        table["ablations"][ablation.name] = {"baseline": (str(ablation.baseline), baseline),
                                             "variant": (str(ablation.variant), variant),
                                             "difference": difference, "better": better}
    return table


def format_table(table: dict, verdicts: bool = False) -> str:
    """Markdown: one row per ablation. ``verdicts``: add the "better" column (the answer to the exercise)."""
    lines = ["| ablation | baseline: accuracy per seed (mean) | variant: accuracy per seed (mean) | "
             "variant - baseline |" + (" better |" if verdicts else ""),
             "|---|---|---|---|" + ("---|" if verdicts else "")]
    for name, row in table["ablations"].items():
        cells = []
        for value, accuracies in (row["baseline"], row["variant"]):
            cells.append(f"{value}: {', '.join(f'{a:.1f}' for a in accuracies)} ({np.mean(accuracies):.1f})")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {row['difference']:+.1f} points |"
                     + (f" {row['better']} |" if verdicts else ""))
    lines.append(f"\nSeed spread (largest minus smallest accuracy across the seeds of one setting, the largest "
                 f"over the settings): {table['spread']:.1f} points.")
    return "\n".join(lines)


def check_conclusions(conclusions, table: dict) -> None:
    """``conclusions``: {ablation name: (better, by)}, better a setting's value ("learned", "8", ...) or
    "neither", by the difference of the means in accuracy points. Compared with ``table`` (``summarise``):
    the verdict first (a difference counts when larger than the seed spread), then the size."""
    what = "your conclusions agree with the measured table"
    spread = table["spread"]
    if not isinstance(conclusions, dict) or set(conclusions) != set(table["ablations"]):
        raise NotYet(what, [f"return a dict with one entry per ablation: {', '.join(table['ablations'])}"])
    lines = []
    for name, row in table["ablations"].items():
        answer = conclusions[name]
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            lines.append(f"{name}: give (better, by), e.g. ('{row['baseline'][0]}', 2.5) or ('neither', 0)")
            continue
        better, by = str(answer[0]), answer[1]
        (base_value, base), (variant_value, variant) = row["baseline"], row["variant"]
        choices = (base_value, variant_value, "neither")
        difference, expected = row["difference"], row["better"]
        means = f"{base_value} {np.mean(base):.1f}%, {variant_value} {np.mean(variant):.1f}%"
        if better not in choices:
            lines.append(f"{name}: {better!r} is not one of {', '.join(map(repr, choices))}")
        elif better != expected and expected == "neither":
            lines.append(f"{name}: you say {better} is better, but the means ({means}) differ by "
                         f"{abs(difference):.1f} points, within the seed spread ({spread:.1f}): another seed moves "
                         "the accuracy that much, so these runs cannot tell them apart: neither")
        elif better != expected and better == "neither":
            lines.append(f"{name}: you say neither, but {expected} leads by {abs(difference):.1f} points ({means}), "
                         f"more than the seed spread ({spread:.1f}): that is beyond the seeds' noise")
        elif better != expected:
            lines.append(f"{name}: you name {better}, but it is the worse of the two ({means})")
        elif expected != "neither":
            try:
                by = float(by)
            except (TypeError, ValueError):
                lines.append(f"{name}: 'by' should be a number of accuracy points; yours is {by!r}")
                continue
            if abs(by - abs(difference)) <= 0.1:  # the table shows one decimal
                continue
            if abs(100 * by - abs(difference)) <= 0.1:
                lines.append(f"{name}: {by} is a fraction; the table is in accuracy points (%): "
                             f"{abs(difference):.1f}")
            else:
                best_gap = abs(max(variant) - max(base))
                hint = (" (that is the gap between the best seeds; compare the means over the seeds)"
                        if abs(by - best_gap) <= 0.1 else "")
                lines.append(f"{name}: by {by} points, but the means differ by {abs(difference):.1f}{hint}")
    if lines:
        raise NotYet(what, lines)
    print(f"PASS: {what} ({len(table['ablations'])} ablations, seed spread {spread:.1f} points)")


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run the ablation lab and print its table.")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--runs-dir", default=str(Path(__file__).resolve().parents[2] / "runs" / "ablation-lab"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--time-budget", type=float, default=120.0)
    args = parser.parse_args(argv)
    os.makedirs(args.runs_dir, exist_ok=True)
    try:
        rows = run_lab(args.runs_dir, args.data_dir, tuple(args.seeds), args.time_budget)
    except KeyboardInterrupt as stopped:  # the run in progress is saved; the message says how to go on
        print(stopped or "Stopped.", file=sys.stderr)
        return 130
    print(format_table(summarise(rows), verdicts=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
