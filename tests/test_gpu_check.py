"""The one command for the GPU machine (benchmarks/gpu_check.py), rehearsed end to end on the CPU.

Every stage runs at toy size on the simulated GPU, PyTorch on the CPU: a GPU session then only
has to run it. The rehearsal must finish with every stage ok (the CUDA-graph stage says it needs a GPU).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_rehearses_every_stage(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--rehearse", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["environment", "tests", "parity", "graphs", "suspects", "profile", "throughput",
                             "training"]
    assert all(stage["status"] == "ok" for stage in results.values()), {k: v["status"] for k, v in results.items()}
    assert results["parity"]["result"]["float64"]["max_error"] < 1e-10
    suspects = results["suspects"]["result"]["rows"]
    assert {row["group"] for row in suspects} >= {"bias sum", "LayerNorm backward",
                                                 "attention cifar-tiny (3 heads of 64) forward",
                                                 "attention cifar-gpu (12 heads of 16) backward"}
    assert {row["case"] for row in suspects if row["group"].startswith("attention")} == \
        {"batched cuBLAS products + softmax kernels", "fused attention.cu v1", "fused attention.cu v2 (register tiles)"}
    assert all("error" not in row and row["predicted_ms"] > 0 for row in suspects), suspects
    choice = results["suspects"]["result"]["attention_choice"]["ATTENTION_KERNELS"]
    assert set(choice) == {"float32 forward", "float32 backward", "float16 forward", "float16 backward"}
    profiled = results["profile"]["result"]["configurations"]
    assert [(c["preset"], c["precision"], c["tf32"]) for c in profiled] == \
        [("cifar-tiny", "float32", False), ("cifar-tiny", "float16", False), ("cifar-gpu", "float32", True)]
    assert all(c["predicted_ms"]["backward"] > 0 and c["predicted_operations_ms"] for c in profiled)
    rows = results["throughput"]["result"]["rows"]
    assert {"minivit (CuPy)", "PyTorch eager"} <= {row["side"] for row in rows}
    assert all(row["predicted_train_ms"] > 0 for row in rows if row["side"].startswith("minivit"))
    training = results["training"]["result"]
    assert training["epochs"] > 0 and training["final_test_accuracy"] is not None
    assert all("test_accuracy" in row for row in training["curve"])
    for name in ("summary.md", "environment.txt", "parity.json", "suspects.md", "cost-model-fit.json",
                 "attention-choice.json",
                 "throughput.json", "profile.md", "training.json", "training-curve.png", "gpu-tests.txt"):
        assert (tmp_path / name).is_file(), name
