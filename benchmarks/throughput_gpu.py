"""GPU throughput on its own: minivit on CuPy against transformers' ViT on PyTorch (eager, torch.compile).

    python3 benchmarks/throughput_gpu.py --out RESULTS_DIR [--batch-sizes 128 512] [--rehearse]

The same rows as gpu_check.py's throughput stage (benchmarks/gpu_session/throughput.py: the training
run's TrainStep, float32, TF32 and float16, PyTorch in its own process, the cost model's prediction
beside each minivit row), without the other stages: for measuring one change on a GPU at hand.
Writes throughput.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_session import throughput  # noqa: E402
from gpu_session.summary import summary_markdown  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for throughput.json (made if missing)")
    parser.add_argument("--rehearse", action="store_true", help="at toy size on the simulated GPU, PyTorch on the CPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds (torch.compile's time comes from it)")
    args = parser.parse_args(argv)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    args.device_backend = "cupy-sim" if args.rehearse else "cupy"
    if args.rehearse:
        args.steps, args.warmup = 2, 1
    result = throughput.stage_throughput(args)
    results = {"throughput": {"status": "ok", "seconds": 0.0, "result": result}}
    print(summary_markdown(results, args))
    (args.out / "throughput-summary.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
