"""The simulated GPU's cost model beside the last GPU measurements (no GPU needed).

    python benchmarks/gpu_cost_model.py                 # predicted vs measured, per-operation table
    python benchmarks/gpu_cost_model.py --fit           # also refit the constants to the measurements
    python benchmarks/gpu_cost_model.py --measured benchmarks/results/gpu-h200-2026-11-26/results.json
    python benchmarks/gpu_cost_model.py --fit --attention v1 --measured \
        benchmarks/results/gpu-h200-2026-12-04/check/results.json \
        benchmarks/results/gpu-h200-2026-12-04/speed/results.json

Records one cifar-tiny step (training: forward, loss, backward, clipping, AdamW; inference: a
forward) launch by launch on backend "cupy-sim" (``minivit.sim.workload``), costs it with
``minivit.sim.cost`` for the GPU that measured (an H200), and prints each prediction beside the
measured number: step times from gpu_check's throughput rows, phase and per-operation times from its
profile, and each microbenchmark of its suspects stage (recorded again, case by case). Then the
operations that cost most, with their grids, and the targets of issue 22. ``--fit`` fits the
constants to all of these rows (each row one term of the squared log error).

The measurements came from the code of their day (see the results' README); the records are
today's code: a fix shows as a prediction below its old measurement. ``--attention`` records the
steps with the attention the measured code ran (2026-12-04: v1, fused both ways).
"""

from __future__ import annotations

import argparse
import contextlib
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


# the suspects' rows of 2026-12-04 under today's names (gpu_session/suspects.py)
OLD_SUSPECT_NAMES = {"attention forward": "attention cifar-tiny (3 heads of 64) forward",
                     "attention backward": "attention cifar-tiny (3 heads of 64) backward",
                     "fused attention.cu": "fused attention.cu v1"}


def measured_cases(path: Path, preset: str = "cifar-tiny") -> list[dict]:
    """[{batch, precision, tf32, what, ms}] from a gpu_check results.json: what is "train" or "inference"
    (throughput), a phase ("forward", ...; profile), "op:<operation>" (profile's operations) or
    "suspect" (with its ``case``: group, name, precision)."""
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
    profile = profile if isinstance(profile, dict) else {}
    configurations = profile.get("configurations") or [dict(preset="cifar-tiny", precision="float32", tf32=False,
                                                            table=profile.get("table", ""),
                                                            operations=profile.get("operations", ""))]
    for configuration in configurations:
        if configuration.get("preset") != preset or "table" not in configuration:
            continue
        table = configuration["table"]
        batch = re.search(r"batch (\d+)", table)
        common = dict(batch=int(batch.group(1)) if batch else 512, precision=configuration["precision"],
                      tf32=configuration["tf32"])
        for name, ms in re.findall(r"^\| (forward|backward) \| ([\d.]+) \|", table, flags=re.M):
            cases.append(dict(common, what=name, ms=float(ms)))
        for name, ms in re.findall(r"^\| (\w+) \| \d+ \| ([\d.]+) \|", configuration.get("operations", ""),
                                   flags=re.M):
            if float(ms) >= 0.05:  # (smaller ones are mostly the CUDA events' own time)
                cases.append(dict(common, what=f"op:{name}", ms=float(ms)))
    suspects = results.get("suspects", {}).get("result", {})
    for row in suspects.get("rows", []) if isinstance(suspects, dict) else []:
        if "measured_ms" not in row:
            continue
        group, name = OLD_SUSPECT_NAMES.get(row["group"], row["group"]), OLD_SUSPECT_NAMES.get(row["case"], row["case"])
        cases.append(dict(batch=suspects["batch_size"], precision="float16" if row["precision"] == "float16"
                          else "float32", tf32=row["precision"] == "TF32", what="suspect",
                          case=(group, name, row["precision"]), ms=row["measured_ms"]))
    return cases


def _key(case: dict) -> tuple:
    """Which recording a measured case is predicted from."""
    if case["what"] == "suspect":
        return ("suspect", case["batch"], *case["case"])
    return (case["batch"], case["precision"], case["what"] != "inference", case["what"].startswith("op:"))


def record_all(cases: list[dict], preset: str) -> dict:
    """{_key(case): records}, each configuration recorded once; a suspect case by the suspects stage's own
    setup and run, the others as a whole step (per-operation rows with each operation a phase)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_session import suspects
    from gpu_session.predictions import each_operation_a_phase

    suspect_cases = {(case.group, case.name, case.precision): case for case in suspects.all_cases()}
    recorded = {}
    for case in cases:
        key = _key(case)
        if key in recorded:
            continue
        if case["what"] == "suspect":
            if case["case"] in suspect_cases:
                recorded[key] = suspects._records(suspect_cases[case["case"]], case["batch"])
            continue
        print(f"recording {preset} batch {key[0]} {key[1]} {'training' if key[2] else 'inference'}"
              f"{' by operation' if key[3] else ''} ...", file=sys.stderr, flush=True)
        with each_operation_a_phase() if key[3] else contextlib.nullcontext():
            recorded[key] = record_step(preset, key[0], key[1], training=key[2])
    return recorded


def predicted_ms(prediction: cost.Prediction, what: str) -> float:
    if what in ("train", "inference", "suspect"):  # (a microbenchmark's calls run back to back, as a step's)
        return prediction.step_ms
    return prediction.by_phase.get(what, 0.0)


def _label(case: dict) -> str:
    if case["what"] == "suspect":
        group, name, precision = case["case"]
        return f"{group}: {name}", precision
    return case["what"], case["precision"] + (" TF32" if case["tf32"] else "")


def comparison(cases, recorded, gpu, constants, after=None) -> tuple[str, float, float | None]:
    """A Markdown table of predicted vs measured (and, given ``after``, with those constants too), and the
    root-mean-square log errors."""
    header = "| batch | what | precision | measured ms | predicted ms | predicted / measured |"
    lines = [header + (" after the fit | after / measured |" if after else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if after else "")]
    squares, squares_after = [], []
    for case in cases:
        records = recorded[_key(case)]
        what, precision = _label(case)
        predicted = predicted_ms(cost.predict(records, gpu, constants, case["tf32"]), case["what"])
        ratio = max(predicted, 1e-6) / case["ms"]
        squares.append(math.log(ratio) ** 2)
        line = f"| {case['batch']} | {what} | {precision} | {case['ms']:.3f} | {predicted:.3f} | {ratio:.2f} |"
        if after:
            fitted = predicted_ms(cost.predict(records, gpu, after, case["tf32"]), case["what"])
            squares_after.append(math.log(max(fitted, 1e-6) / case["ms"]) ** 2)
            line += f" {fitted:.3f} | {fitted / case['ms']:.2f} |"
        lines.append(line)

    def rms(values):
        return math.exp(math.sqrt(sum(values) / max(1, len(values)))) - 1

    return "\n".join(lines), rms(squares), (rms(squares_after) if after else None)


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
    parser.add_argument("--measured", type=Path, nargs="+", default=[MEASURED], help="gpu_check results.json files")
    parser.add_argument("--gpu", default="H200", choices=sorted(cost.GPUS))
    parser.add_argument("--preset", default="cifar-tiny")
    parser.add_argument("--fit", action="store_true", help="refit the constants to the measurements")
    parser.add_argument("--batches", type=int, nargs="*", help="only these batch sizes (default: all measured)")
    parser.add_argument("--attention", choices=("table", "v2", "v1", "batched"), default="table",
                        help="the attention the steps are recorded with: the dispatcher's table (today's), or "
                             "what the measured code ran (2026-12-04: v1)")
    args = parser.parse_args()
    from minivit.kernels.gpu import attention

    cases = [case for path in args.measured for case in measured_cases(path, args.preset)]
    if args.batches:
        cases = [case for case in cases if case["batch"] in args.batches]
    if not cases:
        raise SystemExit(f"{args.measured} hold no cifar-tiny throughput rows, profile or suspects to compare with.")
    with attention.implementation(args.attention) if args.attention != "table" else contextlib.nullcontext():
        recorded = record_all(cases, args.preset)
    unmatched = [case for case in cases if _key(case) not in recorded]
    for case in unmatched:
        print(f"no case of today's suspects stage is {case['case']}: left out", file=sys.stderr)
    cases = [case for case in cases if _key(case) in recorded]
    gpu = cost.GPUS[args.gpu]
    sources = ", ".join(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path) for path in args.measured)
    print(f"# The cost model beside {sources} ({gpu.name})\n")
    print(f"constants now (minivit/sim/cost.py CONSTANTS): {asdict(cost.CONSTANTS)}\n")
    fitted = None
    if args.fit:
        fitted = cost.fit([(recorded[_key(c)], c["tf32"], c["ms"],
                            "step" if c["what"] in ("train", "inference", "suspect") else c["what"]) for c in cases],
                          gpu, start=cost.CONSTANTS)
        print(f"fitted constants: {_rounded(asdict(fitted))}\n")
    table, error, fitted_error = comparison(cases, recorded, gpu, cost.CONSTANTS, fitted)
    print(table)
    print(f"\nroot-mean-square error (geometric) over {len(cases)} rows: {100 * error:.0f}% with the constants now"
          + (f", {100 * fitted_error:.0f}% with the fitted ones" if fitted else "") + "\n")
    largest = max(key[0] for key in recorded if key[0] != "suspect")
    training = recorded.get((largest, "float32", True, False))
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
            records = recorded.get((largest, precision, True, False))
            if records is None:
                continue
            ms = cost.predict(records, gpu, cost.CONSTANTS, tf32).step_ms
            print(f"| {precision}{' TF32' if tf32 else ''} | {ms:.2f} | {1000 * largest / ms:,.0f} | {target:,} |")


def _rounded(values: dict) -> dict:
    return {name: float(f"{value:.3g}") for name, value in values.items()}


if __name__ == "__main__":
    main()
