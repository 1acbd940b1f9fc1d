# %% [markdown]
# # Lesson 8 — The GPU
#
# **Goals.**
# 1. Switch minivit's backend between NumPy and CuPy, and know what moves where.
# 2. Understand what changes on a GPU: asynchronous execution, synchronisation, kernel launches,
#    memory.
# 3. Time the same model on CPU and GPU correctly, and read the result.
#
# ## One code path, two array libraries
#
# Every array operation in minivit's engine goes through `minivit.backend.xp`, which is `numpy`
# or `cupy`. CuPy implements NumPy's API on NVIDIA GPUs, so `xp.exp(x)` launches a GPU kernel when
# `x` is a `cupy.ndarray`. Switch before building a model (or set `MINIVIT_BACKEND=cupy`):
#
# ```python
# minivit.backend.use("cupy")
# model = minivit.ViTForImageClassification("cifar-tiny", seed=0)   # same initial weights as on NumPy
# logits = model.forward(minivit.backend.asarray(images))           # host -> device
# minivit.backend.to_numpy(logits)                                  # device -> host
# ```
#
# Initial weights are drawn on the host with NumPy's generator and then copied to the device, so
# one seed gives one model on both backends.

# %%
import time

import numpy as np

import minivit
from minivit import backend
from lesson_support import FAST, check, exercise

try:
    backend.use("cupy")
    HAS_GPU = True
    backend.use("numpy")
except RuntimeError as error:
    HAS_GPU = False
    print("No GPU here:", error)

# %% [markdown]
# ## Asynchronous execution
#
# A CuPy call *queues* a kernel and returns at once; the GPU runs it later. A timer around a GPU
# call measures the queueing, not the work, unless you wait for the queue to drain
# (`minivit.backend.synchronize()`, a no-op on NumPy). Reading a value on the host (`float(loss)`,
# `to_numpy`) also waits, which is why the training loop reads the loss only every `sync_every` steps
# on the GPU.
#
# **Exercise 1.** Write a timer that is correct on both backends: median seconds per call after a
# warm-up call (the first GPU call also compiles kernels).

# %%
@exercise
def seconds_per_call(function, repeats=5):
    # TODO: warm up once, then time `repeats` calls, synchronising before reading the clock
    raise NotImplementedError("Exercise 1: write seconds_per_call")


# %%
calls = []
def slow_function():
    calls.append(1)
    time.sleep(0.01)

seconds = seconds_per_call(slow_function, repeats=3)
check(len(calls) == 4, "one warm-up call and three timed ones", f"{len(calls)} calls")
check(0.009 < seconds < 0.05, f"about 0.01 s per call (got {seconds:.4f})")

# %% [markdown]
# ## CPU against GPU, on your machine
#
# Forward and training-step throughput of `cifar-tiny`, batch 128 (32 in fast mode), on every backend
# present. On a machine without a GPU only the CPU row appears.

# %%
from minivit import optim
from minivit.ops import cross_entropy_backward, cross_entropy_forward

batch_size = 32 if FAST else 128
config = minivit.preset("cifar-tiny", num_hidden_layers=2) if FAST else minivit.preset("cifar-tiny")
host_images = np.random.default_rng(0).standard_normal((batch_size, 3, 32, 32)).astype("float32")
host_labels = np.arange(batch_size) % 10

rows = []
for name in ["numpy"] + (["cupy"] if HAS_GPU else []):
    backend.use(name)
    model = minivit.ViTForImageClassification(config, seed=0)
    optimizer = optim.AdamW(model.named_parameters())
    images, labels = backend.asarray(host_images), backend.asarray(host_labels)

    def inference():
        model.eval().forward(images)
        model._cache = None

    def train_step():
        model.train()
        optimizer.zero_grad()
        loss, cache = cross_entropy_forward(model.forward(images), labels)
        model.backward(cross_entropy_backward(1.0, cache))
        optimizer.step()

    repeats = 2 if FAST else 5
    rows.append((name, batch_size / seconds_per_call(inference, repeats), batch_size / seconds_per_call(train_step, repeats)))
backend.use("numpy")

print("| backend | inference images/s | training images/s |")
print("|---|---|---|")
for name, inference_rate, train_rate in rows:
    print(f"| {name} | {inference_rate:.0f} | {train_rate:.0f} |")
if len(rows) == 2:
    print(f"GPU / CPU: {rows[1][1] / rows[0][1]:.1f}x inference, {rows[1][2] / rows[0][2]:.1f}x training")

# %% [markdown]
# ## What else changes on a GPU
#
# - **Kernel launches.** Each CuPy operation is at least one kernel launch (a few microseconds).
#   A chain like GELU's is ~10 launches and as many trips through GPU memory; fusing it into one
#   kernel (`cupy.ElementwiseKernel`) removes both. On small batches, launches, not arithmetic, set
#   the pace.
# - **Memory.** Activations saved for the backward live on the GPU. `cifar-tiny` at batch 128 keeps
#   roughly (layers × tokens × batch × a few × D) floats; CuPy's memory pool keeps freed blocks for
#   reuse, so `nvidia-smi` shows the pool, not what is in use.
# - **Random numbers.** Dropout masks and augmentation are drawn on the device; the generators
#   differ from NumPy's, so GPU runs are reproducible on the GPU but not bit-identical to CPU runs.
#
# ## Questions
#
# 1. Why can a GPU be *slower* than the CPU for batch size 1?
# 2. `float(loss)` every step costs a synchronisation. Estimate what it costs per step if a step
#    takes 20 ms and the GPU queue is always 3 steps deep.
# 3. Which of minivit's operations would you fuse first, and how would you test the fused kernel?
