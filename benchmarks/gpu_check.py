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

The plan for the next GPU session (as run on 2026-12-04, benchmarks/results/gpu-h200-2026-12-04/:
the machine started in about 30 s; the tests took 112 s with eight xdist workers, the five-minute
run 330 s with its unpacking and evaluation, the throughput rows 229 s with torch.compile). 15
minutes of device time, every idle wait and each call's transfers included. Two calls, the second
at once after the first (a machine idle for 30 s goes back). $OUT brings back at most 8 files, two
folders down: work in /tmp and pack the folder into one tarball.

  call 1, correct, CIFAR-10 in five minutes, where the time goes
  (carry: [".carry/cifar10-jpg.tar.gz"], made by tar -czf of the JPEG folder; run's timeout_s 590):
    export PYTHONPATH=. PYTHONUNBUFFERED=1; python3 benchmarks/gpu_check.py --out /tmp/check \
        --data-tar .carry/cifar10-jpg.tar.gz --stages environment tests training suspects profile \
        --deadline 555 2>&1 | tee /tmp/check-log.txt | grep -v '^|'; cp /tmp/check-log.txt $OUT/; \
        tar -czf $OUT/check.tgz --exclude='*.npz' -C /tmp check
  call 2, how fast against PyTorch (run's timeout_s: what the lease has left less 30 s, about 295; the
  environment stage again, a second, so that its summary names the device and versions it measured):
    export PYTHONPATH=. PYTHONUNBUFFERED=1; python3 benchmarks/gpu_check.py --out /tmp/speed \
        --stages environment throughput parity graphs --deadline 265 2>&1 | tee /tmp/speed-log.txt | grep -v '^|'; \
        cp /tmp/speed-log.txt $OUT/; tar -czf $OUT/speed.tgz -C /tmp speed

The training runs second in call 1, before the microbenchmarks, so that a short lease cannot cost
the five-minute run. What the next session should learn, in this order: (1) the five-minute run
with the clock that starts after the first step and the lighter row for 60 to 200 epochs
(RandAugment 2/5, no dropout), against 71.9% on 2026-12-04; (2) the fused attention against the
batched products, both directions and precisions (suspects); (3) where the float16 step and the
cifar-gpu step spend their time (profile), since float16 trails PyTorch's AMP (0.91x) and cifar-gpu
trains at 16,479 images/s with its data against the 25,000 that 150 epochs in five minutes need.
Then, on the CPU (no device time): commit both folders under benchmarks/results/gpu-<device>-<date>/
with the commands, and refit the cost model to everything measured:
    PYTHONPATH=. python3 benchmarks/gpu_cost_model.py --fit --measured <that folder>/check/results.json \
        <that folder>/speed/results.json    (--attention: what the measured code's attention was)
and, if the attention v2 tests passed, put attention-choice.json's table into
minivit/kernels/gpu/attention.py's ATTENTION_KERNELS.
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
