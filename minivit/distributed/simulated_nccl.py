"""A stand-in for CuPy's NCCL bindings (``cupy.cuda.nccl``) on the simulated GPU.

The same interface as CuPy's (``get_unique_id``, ``NcclCommunicator(ndev, commId, rank)``
with ``allReduce``, ``bcast``, ``broadcast``, taking device pointers, element counts, NCCL
data types and a stream), so that ``minivit.distributed.nccl`` runs one code path on a
GPU and on its simulation. Each collective counts as the one kernel launch it is on a GPU
(``sim.counters()["by_kind"]["kernel:nccl_<name>"]``) and makes no host synchronisation.

The simulated device memory is host memory, so the bytes travel between the ranks'
processes through MPI; with one rank nothing travels at all. The data types and
operations carry NCCL's own numbers (nccl.h).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np  # host side: the simulated device memory is host memory

from minivit import sim

# ncclDataType_t
NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_UINT32, NCCL_INT64, NCCL_UINT64 = 0, 1, 2, 3, 4, 5
NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 6, 7, 8
# ncclRedOp_t
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = 0, 1, 2, 3, 4

available = True
_DTYPES = {NCCL_INT8: np.int8, NCCL_UINT8: np.uint8, NCCL_INT32: np.int32, NCCL_UINT32: np.uint32,
           NCCL_INT64: np.int64, NCCL_UINT64: np.uint64, NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32,
           NCCL_FLOAT64: np.float64}
_UNIQUE_ID_BYTES = 128


def get_version() -> int:
    return 22707  # the NCCL this stands in for: 2.27.7


def get_unique_id() -> tuple:
    """128 random bytes as signed chars, as CuPy returns NCCL's id."""
    return tuple(int(value) for value in np.frombuffer(os.urandom(_UNIQUE_ID_BYTES), dtype=np.int8))


def _host_view(pointer: int, count: int, data_type: int) -> np.ndarray:
    """The ``count`` elements at ``pointer`` (simulated device memory: host memory) as a NumPy array."""
    dtype = np.dtype(_DTYPES[data_type])
    buffer = (ctypes.c_char * (count * dtype.itemsize)).from_address(pointer)
    return np.frombuffer(buffer, dtype=dtype, count=count)


class NcclCommunicator:
    """One rank of an NCCL communicator of ``ndev`` ranks (``cupy.cuda.nccl.NcclCommunicator``)."""

    def __init__(self, ndev: int, commId: tuple, rank: int):  # noqa: N803 (CuPy's names)
        if len(commId) != _UNIQUE_ID_BYTES:
            raise ValueError(f"an NCCL unique id has {_UNIQUE_ID_BYTES} bytes; got {len(commId)}")
        if not 0 <= rank < ndev:
            raise ValueError(f"NCCL_ERROR_INVALID_RANK: rank {rank} of {ndev}")
        self._ndev, self._rank = ndev, rank
        self._mpi = None
        if ndev > 1:  # the bytes travel through MPI between the ranks' processes
            from minivit.distributed.mpi import import_mpi

            MPI = import_mpi()
            if MPI.COMM_WORLD.Get_size() != ndev or MPI.COMM_WORLD.Get_rank() != rank:
                raise ValueError(f"the simulated NCCL runs one rank per MPI process: rank {rank} of {ndev} in MPI "
                                 f"rank {MPI.COMM_WORLD.Get_rank()} of {MPI.COMM_WORLD.Get_size()}")
            self._MPI, self._mpi = MPI, MPI.COMM_WORLD

    def rank_id(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._ndev

    def device_id(self) -> int:
        return 0

    def destroy(self) -> None:
        self._mpi = None

    abort = destroy

    def allReduce(self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int, stream: int) -> None:  # noqa: N802
        with sim.kernel_launch("nccl_all_reduce"):
            send, receive = _host_view(sendbuf, count, datatype), _host_view(recvbuf, count, datatype)
            if self._mpi is None:
                if sendbuf != recvbuf:
                    receive[...] = send
                return
            operations = {NCCL_SUM: self._MPI.SUM, NCCL_AVG: self._MPI.SUM, NCCL_PROD: self._MPI.PROD,
                          NCCL_MAX: self._MPI.MAX, NCCL_MIN: self._MPI.MIN}
            if op == NCCL_AVG:  # NCCL's average of floats multiplies by 1/N before it sums (no float16 overflow)
                send = (send / self._ndev).astype(send.dtype)
            elif sendbuf == recvbuf:
                send = self._MPI.IN_PLACE
            self._mpi.Allreduce(send, receive, op=operations[op])

    def bcast(self, buff: int, count: int, datatype: int, root: int, stream: int) -> None:
        with sim.kernel_launch("nccl_broadcast"):
            if self._mpi is not None:
                self._mpi.Bcast(_host_view(buff, count, datatype), root=root)

    def broadcast(self, sendbuff: int, recvbuff: int, count: int, datatype: int, root: int, stream: int) -> None:
        with sim.kernel_launch("nccl_broadcast"):
            receive = _host_view(recvbuff, count, datatype)
            if self._rank == root and sendbuff != recvbuff:
                receive[...] = _host_view(sendbuff, count, datatype)
            if self._mpi is not None:
                self._mpi.Bcast(receive, root=root)
