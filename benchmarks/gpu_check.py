"""One command for a GPU machine: is minivit right there, where does a step's time go, how fast is it,
and how fast does it learn CIFAR-10.

    python3 benchmarks/gpu_check.py --out RESULTS_DIR --data-tar .carry/cifar10-jpg.tar.gz
    python3 benchmarks/gpu_check.py --rehearse --out /tmp/rehearsal     # every stage at toy size, on the CPU

Stages, in order (each writes its own file under --out; summary.md collects the tables; the code is
in benchmarks/gpu_session/, one module per stage):

  1. environment  nvidia-smi, driver, CUDA runtime, CuPy, PyTorch and numba versions
  2. tests        the GPU half of the test suite on real CuPy (pytest -m gpu): every CUDA kernel
                  against its reference (the fused attention, the column sums, the fused LayerNorm
                  backward, float16 among them), the model against the CPU
  3. parity       CPU against GPU: every gradient of the model by name, and AdamW steps; float64
                  tight, float32 within stated tolerances
  4. graphs       can a forward+backward be captured as a CUDA graph (CuPy's stream capture)
  5. suspects     microbenchmarks of the operations the simulator's cost model suspects (the two
                  bias-sum forms, LayerNorm's parameter gradients before and now, attention batched and
                  fused, each part of linear_backward), each beside its prediction; the cost model's
                  constants refitted to them (cost-model-fit.json, the error before and after)
  6. profile      where a cifar-tiny batch-512 training step's time goes, phase by phase (beside the
                  cost model's prediction), then operation by operation
  7. throughput   minivit on CuPy beside PyTorch eager and torch.compile (transformers' ViT), the
                  same model: cifar-tiny at batch 128 and 512, float32, TF32 and float16, training and
                  inference images/s, peak memory, and the cost model's images/s beside each minivit row
  8. training     CIFAR-10 from the JPEG tarball with the GPU recipe (python -m minivit.train
                  --preset cifar-gpu --backend cupy --time-budget ...): test accuracy after every
                  epoch, time to 80% and to 90%, the final test accuracy

A deadline (--deadline, default 470 s) shortens the training budget or skips a stage rather than
run over, and says so. A stage that fails is recorded and the next one runs. With --rehearse the
same code runs every stage at toy size on the simulated GPU ("cupy-sim") and PyTorch on the CPU:
the test suite runs it (tests/test_gpu_check.py), so that on the GPU the only job is to run it.

The plan for the next GPU session (15 minutes of device time, every start and idle wait counted;
on the first H200, 2026-11-26: the tests 134 s, the throughput rows about 160 s plus torch.compile's
compilation, the machine's start a few minutes). Two calls, the first as soon as the machine is up,
the second at once after it (no idle wait), each with the CIFAR-10 tarball carried
(carry: [".carry/cifar10-jpg.tar.gz"]):

  call 1, correct and where the time goes (about 9 minutes; --deadline 540 leaves 60 s of the
  10-minute command limit for the summary):
    PYTHONPATH=. python3 benchmarks/gpu_check.py --out $OUT/check \\
        --stages environment tests parity graphs suspects profile throughput --deadline 540
  call 2, CIFAR-10 in five minutes (--train-budget 300 plus decoding, evaluation and the summary):
    PYTHONPATH=. python3 benchmarks/gpu_check.py --out $OUT/train --data-tar .carry/cifar10-jpg.tar.gz \\
        --stages training --train-budget 300 --deadline 420

Then, on the CPU (no device time): commit both folders under benchmarks/results/gpu-<device>-<date>/,
and refit the cost model to everything measured:
    PYTHONPATH=. python3 benchmarks/gpu_cost_model.py --fit --measured <that folder>/check/results.json
(copy the fitted constants into minivit/sim/cost.py's CONSTANTS, and cost-model-fit.json's rows say
which suspects the model gets wrong). If the first call runs short of its deadline, throughput is the
stage that gives way (the deadline skips it): suspects and profile steer the next fixes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_session.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
