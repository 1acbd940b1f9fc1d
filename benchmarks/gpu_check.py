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
                  bias-sum forms, LayerNorm's parameter gradients before and now, attention batched,
                  v1 and v2 for both presets' heads in float32, TF32 and float16, each part of
                  linear_backward), each beside its prediction; the cost model's constants refitted to
                  them (cost-model-fit.json, the error before and after); the attention table the
                  numbers justify (attention-choice.json)
  6. profile      where a batch-512 training step's time goes, phase by phase, then operation by
                  operation, each beside the cost model's prediction: cifar-tiny float32, cifar-tiny
                  float16, cifar-gpu TF32 (as its training run)
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

The plan for the next GPU session. 15 minutes of device time, the machine's start (minutes), every
idle wait and each call's transfers included; on the first H200 (2026-11-26) the tests took 134 s,
the throughput rows about 160 s plus torch.compile's compilation. Two calls, the second at once after
the first (no idle wait), each stage's files under $OUT:

  call 1, correct and where the time goes (run's timeout_s 420):
    PYTHONPATH=. python3 benchmarks/gpu_check.py --out $OUT/check \
        --stages environment tests parity graphs suspects profile throughput --deadline 400
  call 2, CIFAR-10 in five minutes (carry: [".carry/cifar10-jpg.tar.gz"]; run's timeout_s 390):
    PYTHONPATH=. python3 benchmarks/gpu_check.py --out $OUT/train --data-tar .carry/cifar10-jpg.tar.gz \
        --stages training --train-budget 300 --deadline 370

Within call 1 the stages run in the order of what steers the next work: the tests (every kernel on
real CuPy), the suspects and the profile (where the time goes, beside the cost model), then the
throughput rows, which take what the deadline leaves (torch.compile gets at most 150 s a batch size,
and a stage with less than a minute left is skipped and says so). Then, on the CPU (no device time):
commit both folders under benchmarks/results/gpu-<device>-<date>/ with the commands, and refit the
cost model to everything measured:
    PYTHONPATH=. python3 benchmarks/gpu_cost_model.py --fit --measured <that folder>/check/results.json \
        <that folder>/speed/results.json    (--attention: what the measured code's attention was)
(put the fitted constants into minivit/sim/cost.py's CONSTANTS; cost-model-fit.json holds the fit
to the suspects' rows, and each row says which operation the model gets wrong). A session with time
left after both calls spends it on the largest gap the tables show, measured before and after.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_session.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
