"""Data-parallel training: N processes train one model, each on 1/N of every batch.

    mpiexec -n 2 python -m minivit.train --preset cifar-tiny --data-dir DIR --distributed

Every rank holds the whole model and computes the gradient of its share of the global
batch (``--batch-size`` stays the global batch); one all-reduce over the model's flat
gradient buffer (``model.flat.grad``) replaces each rank's gradient with the mean of all
of them, which is the gradient of the whole batch, and every rank takes the same
optimizer step. The parameters start identical (broadcast from rank 0); rank 0 alone
writes the logs, figures and checkpoints.

    communicator.py    Communicator (rank, size, allreduce_mean, broadcast, ...) and SingleProcess
    mpi.py             MPICommunicator: processes through MPI (mpi4py), host arrays
    nccl.py            NCCLCommunicator: GPUs through NCCL (CuPy), MPI for the rendezvous only
    simulated_nccl.py  NCCL's interface on the simulated GPU ("cupy-sim")
    placement.py       a rank's share of the cores, or its GPU
    sharding.py        a rank's share of a data set; evaluation over the shares
    launch.py          the mpiexec command line that this machine's MPI needs
    simulated_ranks.py ranks as threads of one process, with MPI's send/receive (for the lesson)

``connect(backend_name)`` makes this process's communicator (once): MPI between the
ranks; on the CPU each rank gets its share of the cores; on "cupy" each rank takes its
GPU and NCCL carries the arrays; on "cupy-sim" the simulated NCCL does.
"""

from __future__ import annotations

from minivit.distributed.communicator import Communicator, PeerFailed, SingleProcess, mark_raised_together

__all__ = ["Communicator", "PeerFailed", "SingleProcess", "connect", "connected", "mark_raised_together",
           "settle_failure"]

_connected: dict[str, Communicator] = {}  # backend name -> this process's communicator


def connect(backend_name: str = "numpy") -> Communicator:
    """This process's communicator for a data-parallel run on ``backend_name`` (made on the first call).

    Needs mpi4py (a RuntimeError says what to install); run under ``mpiexec -n N``, or as a
    plain process for a single rank.
    """
    if backend_name in _connected:
        return _connected[backend_name]
    from minivit.distributed.mpi import MPICommunicator
    from minivit.distributed.placement import choose_gpu, share_the_cores

    control = MPICommunicator()
    if control.size > 1:
        _end_every_rank_on_an_uncaught_error(control)
    if backend_name == "numpy":
        share_the_cores(control)
        communicator = control
    else:
        from minivit.distributed.nccl import NCCLCommunicator, nccl_module

        if backend_name == "cupy":
            choose_gpu(control)
        else:  # the simulated GPU computes on the CPU
            share_the_cores(control)
        communicator = NCCLCommunicator(control, nccl_module(backend_name))
    _connected[backend_name] = communicator
    return communicator


def _end_every_rank_on_an_uncaught_error(communicator: Communicator) -> None:
    """An error that escapes one rank's program would leave the others waiting in their next
    collective forever (and the failed rank in MPI's finalisation): print it, then end every rank
    (MPI_Abort), as ``python -m mpi4py`` does. An error raised on every rank together just ends
    the program, reported by rank 0."""
    import sys

    previous_hook = sys.excepthook

    def hook(kind, error, traceback):
        if not getattr(error, "printed_elsewhere", False):
            previous_hook(kind, error, traceback)
        if not getattr(error, "on_every_rank", False):
            sys.stderr.flush()
            communicator.abort(1)

    sys.excepthook = hook


def connected() -> Communicator | None:
    """The communicator ``connect`` made in this process, if any."""
    return next(iter(_connected.values()), None)


def settle_failure(error: BaseException) -> None:
    """What a command line does with an error of a distributed run before it reports it.

    An error that every rank raised together (``mark_raised_together``) is reported by rank
    0 alone. An error before the ranks connected (a bad option, a missing mpi4py) is the
    same on every rank: ranks other than 0 stay quiet. An error that this rank met alone
    leaves the others waiting for it in their next collective: it is printed here and
    every rank is ended (MPI_Abort).
    """
    from minivit.cli import describe
    from minivit.distributed.launch import launched_rank

    if getattr(error, "on_every_rank", False):
        return
    communicator = connected()
    if communicator is None or communicator.size == 1:
        if (launched_rank() or 0) > 0 and communicator is None:
            error.printed_elsewhere = True
        return
    import sys

    print(f"error: rank {communicator.rank} of {communicator.size}: {describe(error)} (ending every rank)",
          file=sys.stderr, flush=True)
    communicator.abort(1)
