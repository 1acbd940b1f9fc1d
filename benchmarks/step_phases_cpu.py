"""Is the data the bottleneck? The share of a CPU training step spent outside the model.

    python benchmarks/step_phases_cpu.py [--preset cifar-cpu] [--data-dir DIR] [--steps 20]

Runs the Trainer's own step (minivit.training.Trainer.train_step: drawing the batch, crop + flip
+ normalise, then the run's TrainStep from minivit.training.step: forward, loss, backward,
clipping, AdamW, the step's metrics) with the preset's
recipe and batch size, times each named phase with the CPU's clock (minivit.profile), and prints
milliseconds per step by phase and the share outside the model: drawing and augmenting the
batch, the metrics, and whatever the step's wall time holds beyond its phases. With --data-dir
the batches come from that data set (decoded once, as training does); without it, from a small
generated image folder (the batch's cost does not depend on the images).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_launches import small_image_folder  # noqa: E402
from machine import describe  # noqa: E402

from minivit import profile  # noqa: E402
from minivit.kernels import tune_process  # noqa: E402
from minivit.training.options import RECIPES, TrainConfig  # noqa: E402
from minivit.training.trainer import Trainer  # noqa: E402

MODEL_PHASES = ("zero_grad", "forward", "loss", "backward", "allreduce", "clip", "optimizer")  # TrainStep's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cifar-cpu")
    parser.add_argument("--data-dir", help="a data set to draw from (default: a generated image folder)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    tune_process()
    with tempfile.TemporaryDirectory() as work:
        data_dir = args.data_dir or str(small_image_folder(Path(work) / "images", per_class=40))
        recipe = RECIPES[args.preset]
        config = TrainConfig(**{**recipe, "preset": args.preset, "data_dir": data_dir, "out": str(Path(work) / "run"),
                                "progress": False})
        trainer = Trainer(config)
        for _ in range(3):  # warm-up: compiled loops, allocations
            trainer.train_step()
        with profile.Profiler() as profiler:
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            wall = time.perf_counter() - start
        trainer.run_folder.release()

    per_step = {name: 1000 * seconds / args.steps for name, seconds in profiler.seconds.items()}
    step_ms = 1000 * wall / args.steps
    in_model = sum(per_step.get(name, 0.0) for name in MODEL_PHASES)
    print(describe())
    print(f"{args.preset}, batch {config.batch_size}, augmentation {recipe['augment']}; "
          f"mean of {args.steps} steps after 3 warm-up steps\n")
    print("| phase | ms per step | share of the step |")
    print("|---|---|---|")
    for name, ms in sorted(per_step.items(), key=lambda item: -item[1]):
        print(f"| {name} | {ms:.1f} | {100 * ms / step_ms:.1f}% |")
    outside = step_ms - in_model
    print(f"| (between the phases) | {step_ms - sum(per_step.values()):.1f} | "
          f"{100 * (step_ms - sum(per_step.values())) / step_ms:.1f}% |")
    print(f"| **the step** | **{step_ms:.1f}** | 100% |")
    print(f"\noutside the model (data, augmentation, metrics, between the phases): {outside:.1f} ms per step, "
          f"{100 * outside / step_ms:.1f}% of the step")


if __name__ == "__main__":
    main()
