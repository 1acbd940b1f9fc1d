"""Stage throughput: minivit on CuPy beside PyTorch eager and torch.compile (transformers' ViT), the same
model: cifar-tiny at batch 128 and 512, float32, TF32 and float16, training and inference images/s, peak
memory (each library's pool at its largest), and beside each minivit row the cost model's prediction.

minivit's side times the training run's own step (``minivit.training.step.TrainStep``) with
``benchmarks/timing.py``'s median; PyTorch's runs in its own process (torch_side.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from timing import median_seconds

from gpu_session.common import ROOT, model_config, rehearsal_config, remaining, training_pieces
from gpu_session.predictions import predicted_ms
from minivit import backend

TORCH_SIDE = Path(__file__).resolve().parent / "torch_side.py"


def minivit_throughput(args, batch_size: int, tf32: bool = False, precision: str = "float32") -> dict:
    from minivit import no_grad

    backend.use(args.device_backend)
    backend.use_tf32(tf32)
    pool = backend.xp.get_default_memory_pool()
    pool.free_all_blocks()
    model, step, images, labels = training_pieces(model_config(args), batch_size, precision)

    def inference():
        model.eval()
        with no_grad():
            model.forward(images)

    train = median_seconds(lambda: step(images, labels, 1e-3), args.steps, args.warmup, backend.synchronize)
    infer = median_seconds(inference, args.steps, args.warmup, backend.synchronize)
    result = {"train_images_per_second": batch_size / train, "inference_images_per_second": batch_size / infer,
              "peak_memory_mib": pool.total_bytes() / 2**20}
    backend.use_tf32(False)
    backend.use("numpy")
    train_ms, infer_ms = (predicted_ms(args, batch_size, precision, tf32, training) for training in (True, False))
    result.update(predicted_train_ms=train_ms, predicted_inference_ms=infer_ms,
                  measured_train_ms=1000 * train, measured_inference_ms=1000 * infer)
    return result


def torch_throughput(args, batch_size: int, compiled: bool, timeout: float, tf32: bool = False,
                     amp: bool = False) -> dict:
    options = {"device": "cpu" if args.rehearse else "cuda", "preset": None if args.rehearse else "cifar-tiny",
               "config": rehearsal_config().to_dict() if args.rehearse else None, "batch_size": batch_size,
               "compiled": compiled, "steps": args.steps, "warmup": args.warmup + (3 if compiled else 0), "tf32": tf32,
               "amp": amp}
    run = subprocess.run([sys.executable, str(TORCH_SIDE), str(ROOT), json.dumps(options)], capture_output=True,
                         text=True, timeout=timeout)
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _sides(args, b: int) -> dict:
    """{side: a function that measures it} for batch size ``b``, in the order they run."""
    sides = {"minivit (CuPy)": lambda: minivit_throughput(args, b),
             "minivit (CuPy, TF32)": lambda: minivit_throughput(args, b, tf32=True),
             "PyTorch eager": lambda: torch_throughput(args, b, False, 120),
             "PyTorch eager (TF32)": lambda: torch_throughput(args, b, False, 120, tf32=True),
             "minivit (CuPy, float16)": lambda: minivit_throughput(args, b, precision="float16"),
             "PyTorch eager (AMP float16)": lambda: torch_throughput(args, b, False, 120, amp=True)}
    if not args.rehearse:  # compiling takes minutes on the CPU; on the GPU up to 150 s, within the deadline
        sides["torch.compile"] = lambda: torch_throughput(args, b, True, min(150, max(60, remaining(args) - 60)))
    return sides


def stage_throughput(args) -> dict:
    batch_sizes = [8] if args.rehearse else [128, 512]
    rows = []
    for batch_size in batch_sizes:
        sides = _sides(args, batch_size)
        for side, measure in sides.items():
            try:
                result = measure()
            except Exception as error:  # noqa: BLE001 (recorded beside the others)
                result = {"error": f"{type(error).__name__}: {error}"}
            rows.append({"preset": "cifar-tiny", "batch_size": batch_size, "side": side, **result})
            print(f"  throughput: batch {batch_size}, {side}: {result}", flush=True)
    for row in rows:
        eager = next((r for r in rows if r["batch_size"] == row["batch_size"] and r["side"] == "PyTorch eager"), {})
        if "train_images_per_second" in row and "train_images_per_second" in eager:
            row["train_vs_eager"] = row["train_images_per_second"] / eager["train_images_per_second"]
    (args.out / "throughput.json").write_text(json.dumps(rows, indent=2))
    return {"rows": rows}
