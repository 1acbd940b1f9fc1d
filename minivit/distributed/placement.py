"""Where a rank runs: its share of the machine's cores, or its GPU.

On the CPU, N ranks on one machine split its cores: each runs its BLAS, numba loops and
minivit's own thread pool on cores / N threads. Which cores count: all those that any
rank on the machine may run on (the union of their affinities), because ``mpiexec`` may
bind each rank to its own cores (Open MPI binds to cores when there are enough of them)
or to none (MPICH, or Open MPI with --oversubscribe).

On GPUs, each rank takes one device: the i-th rank on a machine takes GPU i. NCCL cannot
put two ranks of one communicator on one GPU, so a machine needs a GPU per rank.
"""

from __future__ import annotations

import os

from minivit.distributed.communicator import Communicator


def cpu_share(affinities: list[list[int]]) -> int:
    """Threads per rank: the cores any rank on this machine may use, split evenly (at least one).

    affinities: each local rank's usable cores (``os.sched_getaffinity``), one list per rank.
    """
    cores = set().union(*map(set, affinities))
    return max(1, len(cores) // max(1, len(affinities)))


def usable_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def share_the_cores(communicator: Communicator) -> int:
    """Give this rank its share of the machine's cores (``cpu_share``); returns the thread count.

    An explicit ``MINIVIT_NUM_THREADS`` (set before the run) is kept instead.
    """
    from minivit.kernels import limit_threads

    affinities = communicator.local_allgather_object(usable_cores())
    explicit = os.environ.get("MINIVIT_NUM_THREADS", "").strip()
    threads = int(explicit) if explicit.isdigit() and int(explicit) > 0 else cpu_share(affinities)
    limit_threads(threads)
    communicator.threads = threads
    return threads


def choose_gpu(communicator: Communicator) -> int:
    """Make the local rank's GPU the current device (CuPy); refuse more ranks than GPUs on a machine."""
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()
    if communicator.local_size > count:
        raise RuntimeError(
            f"{communicator.local_size} ranks run on this machine but it has {count} GPU(s): each rank needs a GPU "
            f"of its own (NCCL cannot hold two ranks of one run on one GPU). Start at most {count} rank(s) per "
            f"machine, e.g. mpiexec -n {count} python -m minivit.train ... --distributed.")
    cupy.cuda.Device(communicator.local_rank).use()
    return communicator.local_rank
