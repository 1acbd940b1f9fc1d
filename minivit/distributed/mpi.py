"""Processes that talk through MPI (mpi4py): host (NumPy) arrays and control messages.

``mpiexec -n N python ...`` starts N copies of the program; MPI numbers them (ranks) and
carries messages between them, over shared memory on one machine and over the network
between machines. The arrays go through MPI's own all-reduce and broadcast, which pick
their algorithm by size (for large buffers, a ring or reduce-scatter + all-gather: each
rank sends and receives about 2 (N-1)/N times the buffer).

mpi4py is optional: minivit imports it only for a ``--distributed`` run.
"""

from __future__ import annotations

import numpy as np  # host side: MPI moves host buffers

from minivit.distributed.communicator import Communicator

INSTALL_ADVICE = ("Install MPI for Python and an MPI library from PyPI with `pip install -r "
                  "requirements-distributed.txt` (or `pip install -e '.[distributed]'`: mpi4py and Open MPI), "
                  "then start one process per rank with `mpiexec -n 2 python -m minivit.train ... --distributed`")


def import_mpi():
    """``mpi4py.MPI``, initialised; or a RuntimeError that says what to install."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(f"--distributed needs mpi4py, which is not installed. {INSTALL_ADVICE}.") from error
    except RuntimeError as error:  # mpi4py without an MPI library it can load
        raise RuntimeError(f"--distributed: mpi4py is installed but cannot load an MPI library ({error}). "
                           f"{INSTALL_ADVICE}.") from error
    return MPI


class MPICommunicator(Communicator):
    """The ranks of ``mpiexec -n N``: host arrays and control messages over MPI."""

    def __init__(self, comm=None):
        MPI = import_mpi()
        self._MPI = MPI
        self._comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        # the ranks that share this machine's memory (and its cores and GPUs)
        self._local = self._comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = self._local.Get_rank(), self._local.Get_size()
        library = MPI.Get_library_version().split(",")[0].strip()  # e.g. "Open MPI v5.0.11"
        self.description = f"{self.size} MPI rank{'s' if self.size > 1 else ''} ({library})"

    def allreduce_sum(self, array) -> None:
        _check_host_buffer(array)
        if self.size > 1:
            self._comm.Allreduce(self._MPI.IN_PLACE, array, op=self._MPI.SUM)

    def broadcast(self, array, root: int = 0) -> None:
        _check_host_buffer(array)
        if self.size > 1:
            self._comm.Bcast(array, root=root)

    def broadcast_object(self, value, root: int = 0):
        return self._comm.bcast(value, root=root)

    def allgather_object(self, value) -> list:
        return self._comm.allgather(value)

    def gather_object(self, value, root: int = 0) -> list | None:
        return self._comm.gather(value, root=root)

    def local_allgather_object(self, value) -> list:
        return self._local.allgather(value)

    def abort(self, exit_code: int = 1) -> None:
        self._comm.Abort(exit_code)


def _check_host_buffer(array) -> None:
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        raise TypeError(f"MPI messages here are contiguous NumPy arrays; got {type(array).__name__}"
                        f"{'' if not isinstance(array, np.ndarray) else ' (not contiguous)'}. Device arrays travel "
                        "through NCCL (minivit.distributed.nccl).")
