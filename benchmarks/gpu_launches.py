"""Kernel launches per training step, phase by phase, counted on the simulated GPU (no GPU needed).

    python benchmarks/gpu_launches.py [--presets cifar-tiny cifar-gpu]

At small batch sizes a GPU step's time is set by the CPU launching kernels (about 5-10
microseconds each), so the count bounds the step time whatever the GPU. This runs the
Trainer's own step (minivit.training.Trainer.train_step) on backend "cupy-sim" with the fast
kernels (the default) and with the pure reference (MINIVIT_KERNELS=reference), and prints
launches and host synchronisations per phase, then (a second step, every dispatched operation
in a phase of its own through ``dispatch.wrap``) launches per operation. The count does not
depend on the batch size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minivit import backend, dispatch, profile  # noqa: E402
from minivit.training.options import RECIPES, TrainConfig  # noqa: E402
from minivit.training.trainer import Trainer  # noqa: E402

PHASES = ("data", "augment", "zero_grad", "forward", "loss", "backward", "clip", "optimizer", "metrics")


def small_image_folder(root: Path, per_class: int = 8) -> Path:
    """A generated image folder, 10 classes of ``per_class`` random 32x32 images in train/ and test/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in range(10):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return root


def in_its_own_phase(name: str, function):
    """A dispatch.wrap wrapper: the operation's launches counted under the phase "op:<name>"."""
    def run(*arguments, **keywords):
        with profile.phase(f"op:{name}"):
            return function(*arguments, **keywords)
    return run


def count(preset: str, mode: str, data_dir: Path, out: Path) -> tuple[dict, dict]:
    """The simulated GPU's counters for one training step, and {operation: launches} for another."""
    config = TrainConfig(**{**RECIPES[preset], "preset": preset, "data_dir": str(data_dir), "out": str(out),
                            "backend": "cupy-sim", "batch_size": 8, "val_fraction": 0.25, "progress": False})
    previous = dispatch.use(mode)
    try:
        trainer = Trainer(config)
        trainer.train_step()  # the first step copies the normalisation to the device
        backend.reset_sim_counters()
        trainer.train_step()
        counts = backend.sim_counters()
        backend.reset_sim_counters()
        with dispatch.wrap(in_its_own_phase):
            trainer.train_step()
        by_operation = {name.removeprefix("op:"): launches
                        for name, launches in backend.sim_counters()["by_phase"].items() if name.startswith("op:")}
        trainer.run_folder.release()
    finally:
        dispatch.use(previous)
    return counts, by_operation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["cifar-tiny", "cifar-gpu"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        data_dir = small_image_folder(Path(work) / "images")
        for preset in args.presets:
            results, by_operation = {}, {}
            for mode in ("fast", "reference"):
                results[mode], by_operation[mode] = count(preset, mode, data_dir, Path(work) / f"{preset}-{mode}")
            print(f"\n{preset} ({RECIPES[preset]['augment']}), one training step on the simulated GPU:\n")
            print("| phase | launches (fast kernels) | launches (reference) |")
            print("|---|---|---|")
            for phase in PHASES:
                print(f"| {phase} | {results['fast']['by_phase'].get(phase, 0)} | "
                      f"{results['reference']['by_phase'].get(phase, 0)} |")
            print(f"| **step** | **{results['fast']['launches']}** | **{results['reference']['launches']}** |")
            print(f"| host synchronisations | {results['fast']['syncs']} | {results['reference']['syncs']} |")
            print(f"\n{preset}, launches per dispatched operation in one step (its calls together):\n")
            print("| operation | launches (fast kernels) | launches (reference) |")
            print("|---|---|---|")
            names = sorted(set(by_operation["fast"]) | set(by_operation["reference"]),
                           key=lambda name: -by_operation["reference"].get(name, 0))
            for name in names:
                print(f"| {name} | {by_operation['fast'].get(name, 0)} | {by_operation['reference'].get(name, 0)} |")
            outside = {mode: results[mode]["launches"] - sum(by_operation[mode].values()) for mode in results}
            print(f"| outside any operation | {outside['fast']} | {outside['reference']} |")


if __name__ == "__main__":
    main()
