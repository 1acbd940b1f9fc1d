"""Draw figures/cpu-training-10min.png from the two run folders of cpu_training_budget.py.

    python benchmarks/plot_cpu_training.py [--preset cifar-tiny] [--budget 600]

Training loss per step (mean of 20 steps) for minivit and for the PyTorch reference, each up to
the step where its time budget ran out, and the validation accuracy at the end of each epoch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--budget", type=int, default=600)
    args = parser.parse_args()
    sides = {"minivit (NumPy)": f"bench-minivit-{args.preset}-{args.budget}s",
             "transformers (PyTorch CPU)": f"bench-torch-{args.preset}-{args.budget}s"}
    fig, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    for color, (label, folder) in zip(["C0", "C1"], sides.items()):
        steps = read_jsonl(ROOT / "runs" / folder / "steps.jsonl")
        epochs = read_jsonl(ROOT / "runs" / folder / "metrics.jsonl")
        step = np.array([row["step"] for row in steps])
        loss = np.array([row["loss"] for row in steps])
        window = 20
        loss_axis.plot(step[window - 1:], np.convolve(loss, np.ones(window) / window, mode="valid"),
                       color=color, label=label)
        loss_axis.axvline(step[-1], color=color, linestyle=":", linewidth=1)
        accuracy_axis.plot([row["step"] for row in epochs], [100 * row["val_accuracy"] for row in epochs],
                           "o-", color=color, label=label)
    loss_axis.set_xlabel("step (dotted: where the 10-minute budget ran out)")
    loss_axis.set_ylabel("training loss, mean of 20 steps")
    loss_axis.legend()
    accuracy_axis.set_xlabel("step")
    accuracy_axis.set_ylabel("validation accuracy (%)")
    accuracy_axis.legend()
    fig.suptitle(f"{args.preset}, {args.budget} s of training on the same 2-core CPU")
    fig.tight_layout()
    out = ROOT / "figures" / f"cpu-training-{args.budget // 60}min.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
