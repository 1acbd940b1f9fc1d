# %% [markdown]
# # Lesson 12 — Data parallelism: one model, several processes
#
# **Goals.**
# 1. Derive why ranks that each compute the gradient of their share of a batch, then average,
#    have the gradient of the whole batch, and check it on the engine's model.
# 2. Write an all-reduce from nothing but messages between ranks: first through one rank, then
#    the ring that NCCL and MPI use, and count what each sends.
# 3. Run the engine's `--distributed` training on two processes and compare it with one.
# 4. Model what an all-reduce costs (latency and bandwidth), and see when data parallelism pays:
#    on one machine, and across machines.
#
# ## The gradient of a batch is the mean of its shards' gradients
#
# The training loss is a mean over the batch of $B$ images, $L = \frac{1}{B}\sum_{i=1}^{B} \ell_i$.
# Cut the batch into shards, $n_r$ images for rank $r$, each rank with its own mean loss
# $L_r = \frac{1}{n_r}\sum_{i \in r} \ell_i$. Then
#
# $$L = \frac{1}{B}\sum_r \sum_{i \in r} \ell_i = \sum_r \frac{n_r}{B} L_r
# \quad\Longrightarrow\quad \nabla L = \sum_r \frac{n_r}{B} \nabla L_r ,$$
#
# and with equal shards ($n_r = B/N$) the gradient of the batch is the plain **mean** of the $N$
# shards' gradients. Every rank holds the whole model and the same weights; each computes
# $\nabla L_r$ on its shard, the ranks average, and each takes the same optimizer step: after the
# step the weights are still the same everywhere, and they are those one process would reach.
#
# Two conditions hide in the derivation: each image's loss $\ell_i$ depends only on that image
# (true for a ViT: LayerNorm normalises each token on its own; false for BatchNorm, whose
# statistics mix the images of a batch), and the loss is a mean over the batch.
#
# **Exercise 1.** Given the shards' gradients (each of its own mean loss, as flat arrays) and the
# shards' sizes, return the gradient of the whole batch. The check computes the shards' and the
# whole batch's gradients with the engine's model, in float64, with shards of unequal sizes.
#
# <details><summary>Hint</summary>
#
# The formula above: weight each shard's gradient by $n_r / B$, its share of the batch, and add.
# The plain mean is right only when the shards are equal.
# </details>

# %%
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit.distributed.simulated_ranks import run_ranks
from minivit.ops import cross_entropy_backward, cross_entropy_forward
from support import FAST, check, check_close, data_dir, exercise, load_images, show_answers
from support.lesson12 import (check_allreduce_through_rank_0, check_mean_of_shards, check_ring_allreduce,
                              check_ring_allreduce_seconds)


@exercise
def mean_of_shards(gradients, sizes):
    # gradients: a list of (P,) arrays, one per shard; sizes: the shards' numbers of images
    # TODO: one or two lines
    raise NotImplementedError("Exercise 1: the whole batch's gradient from the shards'")


# %%
check_mean_of_shards(mean_of_shards)

# %% [markdown]
# ## Ranks, and the messages between them
#
# `mpiexec -n 4 python train.py` starts four copies of one program; MPI numbers them, the
# **ranks** 0 to 3, and carries messages between them: `send(array, dest)` and
# `recv(source)`, over shared memory on one machine and over the network between machines.
# That is all an all-reduce needs.
#
# A notebook's kernel is one process, and `mpiexec` cannot start it four times. So the exercises
# below run on **simulated ranks**: `run_ranks(N, program)` runs `program(comm)` in N threads of
# this process, and `comm` has MPI's semantics where they matter: `comm.rank`, `comm.size`,
# `comm.send(array, dest)` sends a *copy* (the receiver never shares the sender's memory),
# messages between two ranks arrive in order, and `comm.recv(source)` waits until one comes.
# `comm.sendrecv(array, dest, source)` sends, then receives. A program in which every rank waits
# for a message nobody sends would hang forever under MPI; here it stops with an error that says
# which rank waited for what. The same function runs under real MPI with mpi4py's names
# (`MPI.COMM_WORLD.Send(array, dest)`, `Recv(buffer, source)`, `Sendrecv(...)`), and minivit's
# engine does run its ranks that way, later in this lesson.

# %%
def show_what_each_rank_holds(comm):
    return f"rank {comm.rank} of {comm.size}: received {comm.sendrecv(np.array([comm.rank]), (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size)}"


for line in run_ranks(4, show_what_each_rank_holds):
    print(line)

# %% [markdown]
# **Exercise 2.** The simplest all-reduce: every rank sends its array to rank 0, rank 0 adds
# them up and sends the sum back to every rank, and every rank returns the sum.
#
# <details><summary>Hint</summary>
#
# Rank 0: start from a copy of its own array, add `comm.recv(source)` for every other rank, then
# `comm.send(total, dest)` to each of them. The others: `comm.send(array, 0)`, then return
# `comm.recv(0)`.
# </details>

# %%
@exercise
def allreduce_through_rank_0(comm, array):
    # TODO: about eight lines
    raise NotImplementedError("Exercise 2: an all-reduce through rank 0")


# %%
check_allreduce_through_rank_0(allreduce_through_rank_0)

# %% [markdown]
# It is right, and it does not scale: rank 0 receives $N-1$ arrays and sends $N-1$, so its link
# carries $2(N-1)$ times the array while the others' carry two. For the 10.8 MB gradient of
# `cifar-tiny` on 64 ranks, that is 1.4 GB through one link every step.
#
# ## The ring all-reduce
#
# Put the ranks on a ring (rank $r$ sends to $r+1$ and receives from $r-1$, modulo $N$) and cut
# each array into $N$ chunks.
#
# 1. **Reduce-scatter**, $N-1$ steps: at step $s$, rank $r$ sends its chunk $(r - s) \bmod N$ to the
#    right and adds the chunk $(r - s - 1) \bmod N$ it receives from the left to its own. A chunk
#    travels around the ring collecting one more rank's part at every hop; after $N-1$ hops rank $r$
#    holds the complete sum of chunk $(r + 1) \bmod N$.
# 2. **All-gather**, $N-1$ steps: at step $s$, rank $r$ sends chunk $(r + 1 - s) \bmod N$ (complete)
#    to the right and stores the chunk $(r - s) \bmod N$ it receives. After $N-1$ steps every rank
#    holds every complete chunk.
#
# Each rank sends $2(N-1)$ chunks of $S/N$ bytes: $2\frac{N-1}{N} S$, less than $2S$ however many
# ranks there are, and every link works at once. No all-reduce can do with less: each rank's
# $S$ bytes must reach the others, and each rank must receive the other ranks' contributions.
#
# **Exercise 3.** Write the ring all-reduce. Every rank returns the elementwise sum of all ranks'
# arrays. The check runs it on 1 to 5 ranks, with arrays whose length does not divide by $N$,
# and counts the bytes each rank sent.
#
# <details><summary>Hint 1: the chunks</summary>
#
# `chunks = [chunk.copy() for chunk in np.array_split(array, N)]` gives $N$ chunks (of sizes that
# differ by at most one); `np.concatenate(chunks)` puts them back. With
# `right, left = (r + 1) % N, (r - 1) % N`, each step is one
# `incoming = comm.sendrecv(chunks[send_index], right, left)`.
# </details>
#
# <details><summary>Hint 2: the indices</summary>
#
# Reduce-scatter step $s$: send `(r - s) % N`, add `incoming` into `chunks[(r - s - 1) % N]`.
# All-gather step $s$: send `(r + 1 - s) % N`, store `incoming` as `chunks[(r - s) % N]`.
# </details>

# %%
@exercise
def ring_allreduce(comm, array):
    # TODO: about ten lines: chunks, N - 1 reduce-scatter steps, N - 1 all-gather steps
    raise NotImplementedError("Exercise 3: the ring all-reduce")


# %%
check_ring_allreduce(ring_allreduce)

# %% [markdown]
# ## Your all-reduce, on the engine's gradients
#
# Four ranks, a batch of real images cut into four shards: each rank's gradient comes from the
# engine's model (the same weights on every rank, float64), your ring sums them, and each rank
# divides by $N$. The result must be the gradient of the whole batch. (Here the ranks compute
# their gradients one after another; under `mpiexec` they compute them at the same time, which
# is the point.)

# %%
num_ranks, per_rank = 4, (4 if FAST else 16)
config = minivit.preset("cifar-tiny", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64) if FAST else minivit.preset("cifar-tiny")
model = minivit.ViTForImageClassification(config, seed=0, dtype="float64")
batch = load_images("train", count=num_ranks * per_rank, seed=1)
mean, std = batch.images.mean(axis=(0, 2, 3)) / 255, batch.images.std(axis=(0, 2, 3)) / 255
pixel_values = (batch.images / 255 - mean[:, None, None]) / std[:, None, None]


def gradient_of(images, labels):
    """The gradient of the mean loss over these images, as one flat array (the model's flat buffer)."""
    model.train()
    model.zero_grad()
    loss, cache = cross_entropy_forward(model.forward(images), labels)
    model.backward(cross_entropy_backward(1.0, cache))
    return model.flat.grad.copy()


whole_batch = gradient_of(pixel_values, batch.labels)
shard_gradients = [gradient_of(pixel_values[r * per_rank:(r + 1) * per_rank], batch.labels[r * per_rank:(r + 1) * per_rank])
                   for r in range(num_ranks)]
averaged = run_ranks(num_ranks, lambda comm: ring_allreduce(comm, shard_gradients[comm.rank]) / comm.size)
for rank, gradient in enumerate(averaged):
    check_close(gradient, whole_batch, f"rank {rank}: your ring's mean of the {num_ranks} shards' gradients is "
                f"the gradient of the whole batch of {num_ranks * per_rank}", atol=1e-12)
print(f"{model.flat.size:,d} parameters; largest gradient entry {np.abs(whole_batch).max():.3g}")

# %% [markdown]
# ## The engine's data parallelism
#
# `minivit.train --distributed` does exactly this on real ranks. Under `mpiexec -n N`, each rank
# builds the model; rank 0's weights are broadcast to all; every step each rank draws its $B/N$
# images of the global batch of $B$ (`--batch-size` is the global batch), computes its gradient,
# and **one all-reduce over the flat gradient buffer** (`model.flat.grad`, every gradient in one
# array: one message instead of one per parameter) averages them, before clipping and AdamW. Rank 0
# alone writes the logs and checkpoints. On the CPU each rank runs on its share of the cores; on
# GPUs each rank takes a GPU and NCCL carries the all-reduce (`minivit/distributed/`).
#
# **Why a rank's random numbers must not depend on the rank.** Data parallelism promises the model
# that one process trains, only faster. That promise breaks quietly if each rank draws its own
# random numbers: each rank would crop, flip and drop other pixels than one process would, and the
# same recipe on 2 and on 4 ranks would train different models. Neither is wrong, but the difference
# cannot be told apart from a bug, and a result cannot be reproduced on another machine. minivit
# therefore draws each image's augmentation and dropout masks from (seed, epoch, image) and each
# batch's mixing from (seed, step) (`minivit/training/randomness.py`): what an image gets does not
# depend on which rank holds it, so 1, 2 or 4 ranks reach the same weights (a few 1e-15 apart in
# float64; `tests/test_distributed.py`), and a run stopped on 4 ranks continues on 1.
#
# Below, two ranks against one process, the same global batch (augmentation and dropout are off here
# only to keep the cell short). This needs MPI (`pip install -r requirements-distributed.txt`):
# without it, the cell says so and moves on.

# %%
from minivit.checkpoint import read_checkpoint
from minivit.distributed.launch import mpiexec_command

steps = 4 if FAST else 20
options = ["--data-dir", data_dir(), "--max-steps", str(steps), "--no-progress", "--crop-padding", "0",
           "--no-horizontal-flip", "--hidden-dropout-prob", "0", "--attention-probs-dropout-prob", "0"]
options += (["--preset", "cifar-tiny", "--hidden-size", "32", "--num-hidden-layers", "1", "--num-attention-heads", "2",
             "--intermediate-size", "64", "--patch-size", "8", "--batch-size", "16", "--val-fraction", "0.1"]
            if FAST else ["--preset", "cifar-tiny", "--batch-size", "128", "--val-fraction", "0.02"])
runs = Path(tempfile.mkdtemp(prefix="lesson12-"))
try:
    launcher = mpiexec_command(2)
except RuntimeError as error:
    launcher = None
    print(f"No MPI here, so no ranks to start: {str(error).split('. ')[-1]}")
results = {}
if launcher is not None:
    for name, prefix, extra in (("one process", [], []), ("2 ranks", launcher, ["--distributed"])):
        finished = subprocess.run([*prefix, sys.executable, "-m", "minivit.train", *options, *extra,
                                   "--out", str(runs / name.replace(" ", "-"))], capture_output=True, text=True)
        if finished.returncode != 0:
            print(f"{name} failed:", finished.stderr.strip().splitlines()[-1])
            break
        run = runs / name.replace(" ", "-")
        results[name] = {"weights": read_checkpoint(run / "checkpoint-last.npz")[1],
                         "steps": [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]}
shutil.rmtree(runs, ignore_errors=True)
if len(results) == 2:
    one, two = results["one process"], results["2 ranks"]
    print("step | loss, one process | loss, 2 ranks")
    for a, b in zip(one["steps"], two["steps"]):
        print(f"{a['step']:4d} | {a['loss']:.5f} | {b['loss']:.5f}")
    largest = max(float(np.abs(one["weights"][name] - two["weights"][name]).max()) for name in one["weights"])
    check(largest < 1e-4, f"after {steps} AdamW steps, 2 ranks hold the weights of one process (float32)",
          yours=f"{largest:.1e}", expected="< 1e-4",
          hint="the engine's own test asserts 1e-5 on a tiny model; here the model and the steps are larger")

# %% [markdown]
# The weights agree to float32's rounding: the two sides add the same numbers in another order (each
# rank sums over its half of the batch, then the two average; one process sums over all of it). In float64
# (`--precision float64`) they agree to about $10^{-14}$: minivit's test of the engine asserts
# $10^{-12}$.
#
# ## What an all-reduce costs
#
# Sending a message of $S$ bytes costs a **latency** $\alpha$ (seconds before the first byte
# arrives: software, the network's hops) plus $S / \beta$ at a **bandwidth** of $\beta$ bytes per
# second. The ring sends $2(N-1)$ messages of $S/N$ bytes one after another, every link busy at
# once:
#
# $$T_{\text{ring}}(S, N) = 2(N-1)\left(\alpha + \frac{S}{N\beta}\right).$$
#
# For large arrays the bandwidth term wins and approaches $2S/\beta$, whatever $N$; for small
# ones the $2(N-1)\alpha$ latencies do (then a tree that takes $\log_2 N$ steps is better, and MPI
# libraries and NCCL switch algorithms by size).
#
# **Exercise 4.** Return $T_{\text{ring}}$ in seconds (0 for one rank: nothing to send).
#
# <details><summary>Hint</summary>
#
# `2 * (ranks - 1) * (latency + num_bytes / ranks / bandwidth)`. Both halves, reduce-scatter and
# all-gather, take $N-1$ steps.
# </details>

# %%
@exercise
def ring_allreduce_seconds(num_bytes, ranks, latency, bandwidth):
    # TODO: one line (and one for ranks == 1)
    raise NotImplementedError("Exercise 4: the ring all-reduce's time")


# %%
check_ring_allreduce_seconds(ring_allreduce_seconds)

# %% [markdown]
# ## When it pays
#
# A training step with a fixed global batch: each of $N$ ranks computes $1/N$ of the work,
# $t_c / N$, then all-reduces the $S$ bytes of the gradient. One step takes
# $t_c / N + T_{\text{ring}}(S, N)$, so the speedup over one rank is
#
# $$\text{speedup}(N) = \frac{t_c}{t_c / N + T_{\text{ring}}(S, N)} .$$
#
# For `cifar-tiny`: $S$ = 2.69 M parameters x 4 bytes = 10.8 MB; a step of batch 128 is about
# 140 GFLOP (1.1 GFLOP per image, forward and backward), about 0.95 s on two CPU cores. Three
# links: 10 Gb/s Ethernet, 100 Gb/s InfiniBand, and NVLink between the GPUs of one server; and two
# kinds of machine: CPU nodes of two cores, and GPUs a hundred times faster (0.01 s for the same
# step: an assumption for the picture, not a measurement).

# %%
gradient_bytes = 4 * minivit.ViTForImageClassification("cifar-tiny").flat.size
# (latency in seconds, bandwidth in bytes/s, the most ranks it joins): NVLink joins the GPUs of one server
links = {"10 Gb/s Ethernet": (20e-6, 1.25e9, 64), "100 Gb/s InfiniBand": (3e-6, 12.5e9, 64),
         "NVLink (one server)": (5e-6, 300e9, 8)}
all_ranks = np.array([1, 2, 4, 8, 16, 32, 64])
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for (label, (latency, bandwidth, most)), style in zip(links.items(), ("-o", "-s", "-^")):
    ranks = all_ranks[all_ranks <= most]
    seconds = np.array([ring_allreduce_seconds(gradient_bytes, int(n), latency, bandwidth) for n in ranks])
    axes[0].plot(ranks[1:], 1000 * seconds[1:], style, label=label)  # (one rank sends nothing)
    for step, colour in ((0.95, "tab:blue"), (0.01, "tab:red")):
        if step > 0.1 and "NVLink" in label:
            continue  # NVLink joins GPUs
        speedup = step / (step / ranks + seconds)
        axes[1].plot(ranks, speedup, style, color=colour, alpha=0.8,
                     label=f"{'2-core CPU' if step > 0.1 else 'GPU'} nodes, {label}")
axes[0].set(xscale="log", yscale="log", xlabel="ranks N", ylabel="ms per all-reduce",
            title=f"ring all-reduce of {gradient_bytes / 1e6:.1f} MB")
axes[0].legend()
ranks = all_ranks
axes[1].plot(ranks, ranks, "k:", label="ideal")
axes[1].set(xscale="log", yscale="log", xlabel="ranks N", ylabel="speedup over one rank",
            title="a step of cifar-tiny, global batch 128")
axes[1].legend(fontsize=7)
for axis in axes:
    axis.set_xticks(all_ranks, [str(n) for n in all_ranks])
plt.tight_layout()
plt.show()
for n in (8, 32):
    seconds = ring_allreduce_seconds(gradient_bytes, n, *links["10 Gb/s Ethernet"][:2])
    print(f"{n} CPU nodes on Ethernet: {0.95 / n * 1000:.0f} ms of compute + {seconds * 1000:.0f} ms of "
          f"all-reduce per step: {0.95 / (0.95 / n + seconds):.1f}x one node")

# %% [markdown]
# Reading the plots: on the left, the all-reduce's time hardly grows with $N$ (the bandwidth term
# tends to $2S/\beta$) until the latencies add up; on the right, slow CPU nodes gain nearly in
# proportion even over Ethernet while their share of the 0.95 s of compute stays well above the
# all-reduce's 17 ms (up to about 16 nodes here), while fast GPUs on Ethernet lose: their 10 ms
# step is shorter than the all-reduce. They need NVLink or InfiniBand,
# and tricks this engine leaves out: overlapping the all-reduce with the backward pass (start
# sending the last layers' gradients while the first layers' are computed), and float16 gradients
# (half the bytes; `--precision float16` all-reduces the float16 buffer).
#
# On one machine the cores are shared: two ranks of one thread do the same arithmetic as one
# process of two threads, and gain only where one process leaves a core idle, while paying for
# the all-reduce and a second copy of everything. `benchmarks/distributed_cpu.py` measures it.
#
# ## Questions
#
# 1. A CNN with BatchNorm is trained on 4 ranks of 32 images against 1 process of 128. Why do the
#    two differ even with augmentation off, and what would make them agree?
# 2. With mixup on, an image may mix with a partner held by another rank. Is a 2-rank run then the
#    same training as a 1-process run, only faster? What would it be if each rank mixed within its shard?
# 3. Keep the global batch at 128 and go from 2 to 64 ranks. What happens to each rank's matrix
#    products, and to the all-reduce's share of the step? What do practitioners change instead?
# 4. The ring sends $2\frac{N-1}{N}S$ bytes per rank. Why can no all-reduce send much less, and when
#    is the ring still the wrong choice?

# %%
show_answers(12)

# %% [markdown]
# ## What you built
#
# - The derivation, checked on the engine's model: the gradient of a batch is its shards'
#   gradients weighted by their shares (the mean, for equal shards).
# - Two all-reduces from messages alone, on simulated ranks with MPI's semantics: through rank 0
#   ($2(N-1)S$ through one link) and the ring ($2\frac{N-1}{N}S$ per rank, every link busy), and the
#   ring's mean of four ranks' gradients equal to the whole batch's.
# - The engine's `--distributed` run on two processes, against one.
# - The latency-bandwidth model of the ring, and when data parallelism pays: slow nodes on a slow
#   network yes, fast GPUs only on a fast one.
