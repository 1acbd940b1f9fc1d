"""The simulated GPU's cost model beside the last GPU measurements (no GPU needed).

    python benchmarks/gpu_cost_model.py                 # predicted vs measured, per-operation table
    python benchmarks/gpu_cost_model.py --fit           # also refit the constants to the measurements
    python benchmarks/gpu_cost_model.py --measured benchmarks/results/gpu-h200-2026-11-26/results.json

Records one cifar-tiny step (training: forward, loss, backward, clipping, AdamW; inference: a
forward) launch by launch on backend "cupy-sim" (``minivit.sim.workload``), costs it with
``minivit.sim.cost`` for the GPU that measured (an H200), and prints each prediction beside the
measured number: step times from gpu_check's throughput rows, phase times from its profile.
Then the operations that cost most, with their grids, and the targets of issue 22.

The measurements came from the code of their day (see the results' README); the records are
today's code: a fix shows as a prediction below its old measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minivit.sim import cost  # noqa: E402
from minivit.sim.workload import record_step  # noqa: E402

MEASURED = ROOT / "benchmarks" / "results" / "gpu-h200-2026-11-26" / "results.json"
SIDES = {"minivit (CuPy)": ("float32", False), "minivit (CuPy, TF32)": ("float32", True),
         "minivit (CuPy, float16)": ("float16", False)}
TARGETS = {("float32", False): 19035, ("float32", True): 31125, ("float16", False): 40000}  # img/s, issue 22.6


def measured_cases(path: Path, preset: str = "cifar-tiny") -> list[dict]:
    """[{batch, precision, tf32, what ("train", "inference" or a phase), ms}] from a gpu_check results.json."""
    results = json.loads(path.read_text())
    cases = []
    for row in results.get("throughput", {}).get("result", {}).get("rows", []):
        if row.get("preset") != preset or row.get("side") not in SIDES or "train_images_per_second" not in row:
            continue
        precision, tf32 = SIDES[row["side"]]
        batch = row["batch_size"]
        cases.append(dict(batch=batch, precision=precision, tf32=tf32, what="train",
                          ms=1000 * batch / row["train_images_per_second"]))
        cases.append(dict(batch=batch, precision=precision, tf32=tf32, what="inference",
                          ms=1000 * batch / row["inference_images_per_second"]))
    profile = results.get("profile", {}).get("result", {})
    table = profile.get("table", "") if isinstance(profile, dict) else ""
    batch = re.search(r"batch (\d+)", table)
    for name, ms in re.findall(r"^\| (forward|backward) \| ([\d.]+) \|", table, flags=re.M):
        cases.append(dict(batch=int(batch.group(1)) if batch else 512, precision="float32", tf32=False,
                          what=name, ms=float(ms)))
    return cases


def record_all(cases: list[dict], preset: str) -> dict:
    """{(batch, precision, training): records}, each configuration recorded once."""
    recorded = {}
    for case in cases:
        key = (case["batch"], case["precision"], case["what"] != "inference")
        if key not in recorded:
            print(f"recording {preset} batch {key[0]} {key[1]} {'training' if key[2] else 'inference'} ...",
                  file=sys.stderr, flush=True)
            recorded[key] = record_step(preset, key[0], key[1], training=key[2])
    return recorded


def predicted_ms(prediction: cost.Prediction, what: str) -> float:
    return prediction.step_ms if what in ("train", "inference") else prediction.by_phase.get(what, 0.0)


def comparison(cases, recorded, gpu, constants) -> tuple[str, float]:
    """A Markdown table of predicted vs measured, and the root-mean-square log error."""
    lines = ["| batch | precision | what | measured ms | predicted ms | predicted / measured |",
             "|---|---|---|---|---|---|"]
    squares = []
    for case in cases:
        records = recorded[(case["batch"], case["precision"], case["what"] != "inference")]
        predicted = predicted_ms(cost.predict(records, gpu, constants, case["tf32"]), case["what"])
        ratio = predicted / case["ms"]
        squares.append(math.log(ratio) ** 2)
        label = case["precision"] + (" TF32" if case["tf32"] else "")
        lines.append(f"| {case['batch']} | {label} | {case['what']} | {case['ms']:.2f} | {predicted:.2f} | "
                     f"{ratio:.2f} |")
    rms = math.exp(math.sqrt(sum(squares) / max(1, len(squares)))) - 1
    return "\n".join(lines), rms


def operations_table(records, gpu, constants, tf32: bool, top: int = 15) -> str:
    """The costliest operations (by call site) of one recording."""
    prediction = cost.predict(records, gpu, constants, tf32)
    worst = {}
    for record in records:
        key = (record.phase, record.site, record.kind)
        if key not in worst or record.serial > worst[key].serial or record.grid < worst[key].grid:
            worst[key] = record
    rows = sorted(prediction.by_site.items(), key=lambda item: -item[1][1])[:top]
    lines = ["| phase | operation (call site) | kind | launches | ms | fewest blocks | most serial |",
             "|---|---|---|---|---|---|---|"]
    for (phase, site, kind), (launches, ms) in rows:
        record = worst[(phase, site, kind)]
        lines.append(f"| {phase} | {site} | {kind} | {launches} | {ms:.2f} | {record.grid} | {record.serial} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measured", type=Path, default=MEASURED, help="a gpu_check results.json")
    parser.add_argument("--gpu", default="H200", choices=sorted(cost.GPUS))
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--fit", action="store_true", help="refit the constants to the measurements")
    parser.add_argument("--batches", type=int, nargs="*", help="only these batch sizes (default: all measured)")
    args = parser.parse_args()

    cases = measured_cases(args.measured, args.preset)
    if args.batches:
        cases = [case for case in cases if case["batch"] in args.batches]
    if not cases:
        raise SystemExit(f"{args.measured} holds no cifar-tiny throughput rows or profile to compare with.")
    recorded = record_all(cases, args.preset)
    gpu = cost.GPUS[args.gpu]
    source = args.measured.relative_to(ROOT) if args.measured.is_relative_to(ROOT) else args.measured
    print(f"# The cost model beside {source} ({gpu.name})\n")
    print(f"constants now (minivit/sim/cost.py CONSTANTS): {asdict(cost.CONSTANTS)}\n")
    table, error = comparison(cases, recorded, gpu, cost.CONSTANTS)
    print(table)
    print(f"\nroot-mean-square error (geometric): {100 * error:.0f}%\n")
    if args.fit:
        fitted = cost.fit([(recorded[(c["batch"], c["precision"], c["what"] != "inference")], c["tf32"], c["ms"],
                            "step" if c["what"] in ("train", "inference") else c["what"]) for c in cases], gpu)
        print(f"fitted constants: {asdict(fitted)}\n")
        table, fitted_error = comparison(cases, recorded, gpu, fitted)
        print(table)
        print(f"\nroot-mean-square error after the fit: {100 * fitted_error:.0f}% (before: {100 * error:.0f}%)\n")
    largest = max(key[0] for key in recorded)
    training = recorded.get((largest, "float32", True))
    if training is not None:
        print(f"## Where a batch-{largest} float32 training step goes (predicted, {gpu.name})\n")
        print(operations_table(training, gpu, cost.CONSTANTS, tf32=False))
        bad = cost.offenders(training, gpu.sms)
        print(f"\nlaunches moving > 1 MB with fewer blocks than SMs ({gpu.sms}) or > 256 serial iterations: "
              f"{len(bad)} of {len(training)}\n")
        print("## Predicted training throughput against issue 22's targets\n")
        print("| precision | predicted ms per step | predicted img/s | target img/s |")
        print("|---|---|---|---|")
        for (precision, tf32), target in TARGETS.items():
            records = recorded.get((largest, precision, True))
            if records is None:
                continue
            ms = cost.predict(records, gpu, cost.CONSTANTS, tf32).step_ms
            print(f"| {precision}{' TF32' if tf32 else ''} | {ms:.2f} | {1000 * largest / ms:,.0f} | {target:,} |")


if __name__ == "__main__":
    main()
