"""Stage training: CIFAR-10 from the JPEG tarball with the GPU recipe (python -m minivit.train
--preset cifar-gpu --backend cupy --time-budget ...): test accuracy after every epoch, time to 80% and
to 90%, the final test accuracy, the curve against time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from gpu_session.common import ROOT, remaining


def _extract(tar_path: Path, target: Path) -> Path:
    """Unpack the JPEG tarball safely; returns the folder that holds train/ and test/."""
    with tarfile.open(tar_path) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(target, filter="data")
        else:
            archive.extractall(target)  # noqa: S202 (Python < 3.11.4; our own tarball)
    for candidate in [target, *sorted(p for p in target.rglob("*") if p.is_dir())]:
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    raise RuntimeError(f"{tar_path} holds no folder with train/ and test/")


def _rehearsal_images(root: Path) -> Path:
    """A tiny image folder (10 classes, coloured 32x32 images) for a rehearsal."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for label in range(10):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                colour = np.array([25 * label, 255 - 25 * label, (77 * label) % 255])
                pixels = np.clip(colour + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def stage_training(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="minivit-gpu-check-"))
    if args.data_dir:
        data_dir = Path(args.data_dir)
    elif args.rehearse:
        data_dir = _rehearsal_images(work / "images")
    else:
        if not args.data_tar or not Path(args.data_tar).is_file():
            raise RuntimeError(f"no CIFAR-10 tarball at {args.data_tar}: pass --data-tar or --data-dir")
        data_dir = _extract(Path(args.data_tar), work / "data")
    run_dir = args.out / "cifar-gpu-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    budget = args.train_budget
    spare = remaining(args) - 60  # decoding, evaluation and the summary after the run
    if budget > spare:
        print(f"  training: the deadline leaves {spare:.0f} s of the {budget:.0f} s asked for", flush=True)
        budget = max(10.0, spare)
    command = [sys.executable, "-m", "minivit.train", "--preset", "cifar-gpu", "--backend", args.device_backend,
               "--data-dir", str(data_dir), "--out", str(run_dir), "--time-budget", f"{budget:g}",
               "--test-every-epoch", "--no-progress"]
    if args.rehearse:
        command += ["--batch-size", "16", "--image-size", "32", "--hidden-size", "16", "--num-hidden-layers", "1",
                    "--num-attention-heads", "2", "--intermediate-size", "32"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=max(60, remaining(args) - 10))
    (args.out / "training-log.txt").write_text(" ".join(command) + "\n\n" + run.stdout + run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"training failed (exit {run.returncode}): {run.stderr.strip()[-800:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]

    def time_to(accuracy: float):
        return next((row["elapsed"] for row in rows if row.get("test_accuracy", 0) >= accuracy), None)

    evaluation = subprocess.run([sys.executable, "-m", "minivit.evaluate", "--checkpoint",
                                 str(run_dir / "checkpoint-last.npz"), "--data-dir", str(data_dir), "--backend",
                                 args.device_backend, "--json"], cwd=ROOT, capture_output=True, text=True, env=env)
    final = json.loads(evaluation.stdout.strip().splitlines()[-1]) if evaluation.returncode == 0 else {}
    result = {"command": " ".join(command), "time_budget": budget, "wall_seconds": time.perf_counter() - started,
              "epochs": rows[-1]["epoch"] if rows else 0, "images_per_second": rows[-1]["images_per_second"] if rows
              else None, "seconds_to_80": time_to(0.8), "seconds_to_90": time_to(0.9),
              "final_test_accuracy": final.get("accuracy"),
              "curve": [{"elapsed": row["elapsed"], "epoch": row["epoch"], "test_accuracy": row.get("test_accuracy"),
                         "val_accuracy": row["val_accuracy"], "train_loss": row["train_loss"]} for row in rows]}
    (args.out / "training.json").write_text(json.dumps(result, indent=2))
    _plot_curve(result["curve"], args.out / "training-curve.png")
    shutil.rmtree(work, ignore_errors=True)
    return result


def _plot_curve(curve: list, path: Path) -> None:
    from minivit.plots import _new_figure

    figure = _new_figure((6, 4))
    axis = figure.subplots()
    axis.plot([row["elapsed"] for row in curve], [100 * (row["test_accuracy"] or 0) for row in curve], marker=".",
              label="test")
    axis.plot([row["elapsed"] for row in curve], [100 * row["val_accuracy"] for row in curve], marker=".",
              label="validation")
    for target in (80, 90):
        axis.axhline(target, color="grey", linewidth=0.5)
    axis.set_xlabel("training seconds")
    axis.set_ylabel("accuracy (%)")
    axis.set_title("CIFAR-10, minivit on one GPU")
    axis.legend()
    figure.savefig(path, dpi=100)
