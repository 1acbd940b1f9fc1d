"""Lesson 12, data parallelism: one model, several processes: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import numpy as np

from .diagnosis import NotYet, check_array, check_value, diagnose, distinct
from .exercises import solution

# --- checks ---------------------------------------------------------------------------------------

def _shard_gradients(sizes, seed=0):
    """The engine's model in float64: each shard's gradient (of its own mean loss) and the whole batch's."""
    import minivit
    from minivit.ops import cross_entropy_backward, cross_entropy_forward

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=12, num_labels=3)
    model = minivit.ViTForImageClassification(config, seed=seed, dtype="float64").train()
    rng = np.random.default_rng(seed)
    images, labels = rng.standard_normal((sum(sizes), 3, 8, 8)), rng.integers(0, 3, sum(sizes))

    def gradient(part):
        model.zero_grad()
        loss, cache = cross_entropy_forward(model.forward(images[part]), labels[part])
        model.backward(cross_entropy_backward(1.0, cache))
        return model.flat.grad.copy()

    bounds = np.cumsum([0, *sizes])
    return [gradient(slice(start, stop)) for start, stop in zip(bounds[:-1], bounds[1:])], gradient(slice(None))


def check_mean_of_shards(mean_of_shards) -> None:
    for sizes in ((4, 4, 4), (5, 3, 4)):
        gradients, whole = _shard_gradients(sizes)
        B, N = sum(sizes), len(sizes)
        yours = mean_of_shards([gradient.copy() for gradient in gradients], list(sizes))
        mistakes = {"the sum of the shards' gradients (each is already a mean: divide by the number of shards, "
                    "or weight by the shares)": sum(gradients),
                    "the shards' gradients weighted by their sizes, but not divided by the batch size B":
                        sum(size * gradient for size, gradient in zip(sizes, gradients))}
        if len(set(sizes)) > 1:
            mistakes["the plain mean of the shards' gradients, right only for equal shards: weight each by its "
                     "share of the batch, n_r / B"] = sum(gradients) / N
        check_array(yours, whole, f"shards of {', '.join(map(str, sizes))} images: the gradient of the whole "
                    f"batch of {B}", "the batch's gradient", rtol=0.0, atol=1e-12, mistakes=mistakes,
                    sizes={"the number of shards N": N, "the batch size B": B})


RANK_TIMEOUT = 5.0  # seconds a simulated rank waits for a message before the check calls it a deadlock


def _run_on_ranks(program, size: int, what: str):
    """``run_ranks(size, program)``, with a deadlock turned into a hint."""
    from minivit.distributed.simulated_ranks import Deadlock, run_ranks

    try:
        return run_ranks(size, program, timeout=RANK_TIMEOUT)
    except Deadlock as error:
        raise NotYet(what, [str(error), "every recv must be matched by a send that another rank makes first: "
                            "send, then receive (comm.sendrecv does both in that order)"]) from None


def check_allreduce_through_rank_0(allreduce_through_rank_0) -> None:
    for N in (1, 2, 4):
        arrays = [distinct((6,), seed=rank) + rank for rank in range(N)]
        what = f"allreduce_through_rank_0 on {N} rank{'s' if N > 1 else ''}: every rank returns the sum"
        results = _run_on_ranks(lambda comm, arrays=arrays: allreduce_through_rank_0(comm, arrays[comm.rank].copy()),
                                N, what)
        expected = sum(arrays)
        for rank, result in enumerate(results):
            if result is None:
                raise NotYet(what, [f"rank {rank} returned None: every rank returns the sum (rank 0 sends it back)"])
            mistakes = {}
            if rank:  # first: with two ranks, rank 1's own array is also the sum without rank 0's
                mistakes["this rank's own array, unchanged: rank 0 must send the sum back to every rank"] = \
                    arrays[rank]
            mistakes["the mean, not the sum"] = expected / N
            if N > 1:
                mistakes["the sum without rank 0's own array: start rank 0's total from its own array"] = \
                    expected - arrays[0]
            lines = diagnose(np.asarray(result), expected, f"rank {rank}'s result", rtol=0.0, atol=1e-12,
                             mistakes=mistakes, sizes={"the number of ranks N": N})
            if lines:
                raise NotYet(what, lines)
        print(f"PASS: {what}")


def check_ring_allreduce(ring_allreduce) -> None:
    for N in (1, 2, 3, 5):
        for length in (60, 7):
            arrays = [distinct((length,), seed=rank) + rank for rank in range(N)]
            what = f"ring_allreduce on {N} rank{'s' if N > 1 else ''}, arrays of {length}: every rank returns the sum"
            results = _run_on_ranks(lambda comm, arrays=arrays: (ring_allreduce(comm, arrays[comm.rank].copy()),
                                                                 comm.bytes_sent), N, what)
            expected = sum(arrays)
            for rank, (result, _) in enumerate(results):
                if result is None:
                    raise NotYet(what, [f"rank {rank} returned None: return the summed array"])
                result = np.asarray(result)
                lines = diagnose(result, expected, f"rank {rank}'s result", rtol=0.0, atol=1e-12,
                                 mistakes={"the mean, not the sum": expected / N},
                                 sizes={"the number of ranks N": N})
                if lines and result.shape == expected.shape and N > 1:
                    right = np.isclose(result, expected, rtol=0, atol=1e-12)
                    if 0 < right.sum() <= -(-length // N) + 1:
                        lines.append(f"only {right.sum()} of {length} elements (one chunk) hold the sum: the "
                                     "reduce-scatter ran, but the all-gather that passes the finished chunks "
                                     "around did not")
                if lines:
                    raise NotYet(what, lines)
            if length == 60:  # chunks of equal size: each rank sends exactly 2(N-1)/N of the array
                size, expected_bytes = arrays[0].nbytes, 2 * (N - 1) * arrays[0].nbytes // N
                wrong = [(rank, sent) for rank, (_, sent) in enumerate(results) if sent != expected_bytes]
                if wrong:
                    rank, sent = wrong[0]
                    check_value(sent, expected_bytes, f"{N} ranks: rank {rank} sends 2(N-1)/N of its "
                                f"{size}-byte array", unit=" bytes",
                                mistakes={"sending the whole array at every step of both halves (send one chunk: "
                                          "np.array_split into N)": 2 * (N - 1) * size,
                                          "passing the whole array around the ring, N - 1 times: the sum is right, "
                                          "but a ring of N chunks sends N/2 times less": (N - 1) * size,
                                          "sending the reduce-scatter's chunks only (the all-gather half is "
                                          "missing)": (N - 1) * size // N})
        print(f"PASS: ring_allreduce on {N} rank{'s' if N > 1 else ''}: every rank returns the sum, and sends "
              f"{2 * (N - 1) * 480 // N} bytes = 2(N-1)/N of its 480-byte array")


def check_ring_allreduce_seconds(ring_allreduce_seconds) -> None:
    for S, N, alpha, beta in ((1e7, 4, 1e-5, 1e9), (10.8e6, 8, 20e-6, 1.25e9), (1e3, 64, 5e-6, 300e9)):
        expected = 2 * (N - 1) * (alpha + S / N / beta)
        check_value(ring_allreduce_seconds(S, N, alpha, beta), expected,
                    f"{S:g} bytes on {N} ranks, latency {alpha:g} s, bandwidth {beta:g} bytes/s", rtol=1e-9,
                    unit=" s", mistakes={
                        "one half only (the reduce-scatter or the all-gather: there are two)": expected / 2,
                        "the whole array in every message: each message carries S/N bytes":
                            2 * (N - 1) * (alpha + S / beta),
                        "no latency term": 2 * (N - 1) * S / N / beta,
                        "no bandwidth term": 2 * (N - 1) * alpha})
    check_value(ring_allreduce_seconds(1e7, 1, 1e-5, 1e9), 0.0, "one rank: nothing to send", atol=1e-15, unit=" s")


# --- solutions ------------------------------------------------------------------------------------

@solution
def mean_of_shards(gradients, sizes):
    total = sum(sizes)
    return sum(size / total * gradient for gradient, size in zip(gradients, sizes))


@solution
def allreduce_through_rank_0(comm, array):
    if comm.rank == 0:
        total = np.array(array, copy=True)
        for source in range(1, comm.size):
            total = total + comm.recv(source)
        for dest in range(1, comm.size):
            comm.send(total, dest)
        return total
    comm.send(array, 0)
    return comm.recv(0)


@solution
def ring_allreduce(comm, array):
    N, r = comm.size, comm.rank
    chunks = [chunk.copy() for chunk in np.array_split(np.asarray(array), N)]
    right, left = (r + 1) % N, (r - 1) % N
    for s in range(N - 1):  # reduce-scatter: rank r ends with the whole sum of chunk (r + 1) % N
        chunks[(r - s - 1) % N] = chunks[(r - s - 1) % N] + comm.sendrecv(chunks[(r - s) % N], right, left)
    for s in range(N - 1):  # all-gather: the finished chunks go around the ring
        chunks[(r - s) % N] = comm.sendrecv(chunks[(r + 1 - s) % N], right, left)
    return np.concatenate(chunks)


@solution
def ring_allreduce_seconds(num_bytes, ranks, latency, bandwidth):
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) * (latency + num_bytes / ranks / bandwidth)


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""BatchNorm normalises with the mean and variance of the batch it sees: each rank's 32 images
    give other statistics than the 128 together, so each image's output, and its loss, depends on
    which shard it is in, and the mean of the shards' gradients is not the big batch's. The
    statistics must be all-reduced too (PyTorch's SyncBatchNorm: one more, small, all-reduce
    per BatchNorm layer in the forward pass). LayerNorm, the ViT's, normalises each token alone.""",
    r"""Yes, in minivit: the same training, only faster. Image i of the global batch mixes with
    image B-1-i whatever rank holds it (a rank whose partners sit on another rank augments them
    itself, as their own rank does: the same pixels, no communication), and whether and how a
    batch mixes is drawn from (seed, step), not from the rank. So 1, 2 and 4 ranks build the same
    mixed images and reach the same weights (tests/test_distributed.py). An engine that lets each
    rank pair images within its shard with its own random weights trains on other mixed images:
    equivalent only in distribution (each image still mixed with a random partner by a
    Beta-distributed weight), not step for step, so its results cannot be reproduced on another
    number of ranks.""",
    r"""Each rank's share shrinks to 2 images (130 tokens): its matrix products are too small to run
    near the cores' peak, while the all-reduce stays 2(N-1)/N S per rank, so its share of the
    step grows until it dominates. Practitioners grow the global batch with the ranks (the
    per-rank batch stays efficient), with the learning rate scaled up and a warmup (linear or
    square-root scaling; LARS/LAMB for very large batches), or accumulate gradients over several
    micro-batches before each all-reduce.""",
    r"""Every rank must receive the other ranks' contributions to every element: in total at least
    $(N-1)/N \cdot S$ bytes must arrive at each rank to reduce its part, and its reduced part
    must then reach the others, another $(N-1)/N \cdot S$; the ring meets this bound. It is the
    wrong choice for small messages, where its $2(N-1)$ latencies dominate: a tree or recursive
    doubling takes $\log_2 N$ steps, which is why MPI and NCCL pick the algorithm by size (and
    NCCL builds trees and rings across servers).""",
]
