"""The stages in order, under a deadline: each writes its files under --out, results.json and summary.md
collect them; a stage that fails is recorded and the next one runs (``benchmarks/gpu_check.py``)."""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

from gpu_session.common import elapsed, remaining
from gpu_session.environment import stage_environment
from gpu_session.gpu_tests import stage_tests
from gpu_session.graphs import stage_graphs
from gpu_session.parity import stage_parity
from gpu_session.step_profile import stage_profile
from gpu_session.summary import summary_markdown
from gpu_session.suspects import stage_suspects
from gpu_session.throughput import stage_throughput
from gpu_session.training import stage_training
from minivit import backend

STAGES = {"environment": stage_environment, "tests": stage_tests, "parity": stage_parity, "graphs": stage_graphs,
          "suspects": stage_suspects, "profile": stage_profile, "throughput": stage_throughput,
          "training": stage_training}
MINIMUM_SECONDS = {"tests": 40, "parity": 15, "graphs": 10, "suspects": 30, "profile": 10, "throughput": 60,
                   "training": 60}


def main(argv=None, description: str | None = None) -> int:
    parser = argparse.ArgumentParser(description=(description or __doc__).split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for everything measured (made if missing)")
    parser.add_argument("--data-tar", help="the CIFAR-10 JPEG tarball (train/<class>/*.jpg, test/<class>/*.jpg)")
    parser.add_argument("--data-dir", help="or an unpacked copy")
    parser.add_argument("--rehearse", action="store_true", help="every stage at toy size on the simulated GPU")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    parser.add_argument("--deadline", type=float, default=470.0, help="seconds for the whole run")
    parser.add_argument("--train-budget", type=float, default=300.0, help="seconds of training (stage 8)")
    parser.add_argument("--tests-timeout", type=float, default=240.0)
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per throughput measurement")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    args.device_backend = "cupy-sim" if args.rehearse else "cupy"
    if args.rehearse:
        args.steps, args.warmup, args.train_budget = 2, 1, min(args.train_budget, 8.0)
    results = {}
    for name in args.stages:
        if remaining(args) < MINIMUM_SECONDS.get(name, 5):
            results[name] = {"status": f"skipped: {remaining(args):.0f} s left of the deadline", "seconds": 0.0}
            print(f"[{elapsed():5.0f} s] {name}: skipped (deadline)", flush=True)
            continue
        print(f"[{elapsed():5.0f} s] {name} ...", flush=True)
        started = time.perf_counter()
        try:
            result = STAGES[name](args)
            status = "ok"
            if isinstance(result, dict) and result.get("passed") is False:
                status = "failed"
            if name == "parity" and not all(row["passed"] for row in result.values()):
                status = "failed: over tolerance"
        except Exception as error:  # noqa: BLE001 (one stage's failure must not lose the others)
            result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
            status = f"failed: {type(error).__name__}: {str(error)[:200]}"
        finally:
            backend.use("numpy")
        results[name] = {"status": status, "seconds": time.perf_counter() - started, "result": result}
        print(f"[{elapsed():5.0f} s] {name}: {status}", flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        (args.out / "summary.md").write_text(summary_markdown(results, args))
    print((args.out / "summary.md").read_text())
    return 0 if all(stage["status"] in ("ok",) or stage["status"].startswith("skipped") for stage in results.values()) \
        else 1
