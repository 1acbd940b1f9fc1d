"""GPUs that talk through NCCL: device arrays, with MPI only for the rendezvous.

NCCL (NVIDIA's collective communications library, through CuPy's ``cupy.cuda.nccl``)
moves device memory between GPUs directly (NVLink, PCIe, InfiniBand), as kernels queued
on the GPU's stream: an all-reduce costs the host one launch and no synchronisation.
Its ranks meet through a unique id that rank 0 draws and every rank must receive before
any of them can start: MPI carries that id (the rendezvous), and afterwards only the
small control messages of ``Communicator``; every array goes through NCCL.

On the simulated GPU (backend "cupy-sim") the same code runs against
``minivit.distributed.simulated_nccl``, which has CuPy's NCCL interface, counts each call
as the one launch it is on a GPU, and moves the bytes through MPI (the simulated device
memory is host memory).
"""

from __future__ import annotations

from minivit import backend
from minivit.distributed.communicator import Communicator

GPU_INSTALL_ADVICE = ("NCCL comes with the package nvidia-nccl-cu13 (for CUDA 12: nvidia-nccl-cu12): "
                      "`pip install -r requirements-gpu.txt`, or `pip install 'nvidia-nccl-cu13>=2.27.7,<3'`")


def nccl_module(backend_name: str):
    """CuPy's NCCL bindings (backend "cupy") or their simulation (backend "cupy-sim")."""
    if backend_name == "cupy-sim":
        from minivit.distributed import simulated_nccl

        return simulated_nccl
    from cupy.cuda import nccl

    if not nccl.available:
        raise RuntimeError(f"--distributed on GPUs needs NCCL, which CuPy could not load. {GPU_INSTALL_ADVICE}.")
    return nccl


class NCCLCommunicator(Communicator):
    """One GPU per rank; arrays through NCCL; control messages (and the rendezvous) through ``control``.

    control: the MPI ranks (``MPICommunicator``), or ``SingleProcess()`` for one rank without MPI.
    nccl: ``nccl_module(backend_name)``.
    """

    def __init__(self, control: Communicator, nccl):
        self.control = control
        self.rank, self.size = control.rank, control.size
        self.local_rank, self.local_size = control.local_rank, control.local_size
        self.threads = control.threads
        self._nccl = nccl
        # the rendezvous: rank 0 draws the id, MPI hands it to every rank, NCCL connects them
        unique_id = control.broadcast_object(nccl.get_unique_id() if control.is_root else None)
        self._comm = nccl.NcclCommunicator(self.size, unique_id, self.rank)
        # NCCL computes the mean itself since 2.10 (ncclAvg): one launch instead of a sum and a division
        self._has_average = hasattr(nccl, "NCCL_AVG") and nccl.get_version() >= 21000
        self._types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64,
                       "int32": nccl.NCCL_INT32, "int64": nccl.NCCL_INT64, "uint8": nccl.NCCL_UINT8}
        self.description = f"{self.size} GPU rank{'s' if self.size > 1 else ''} through NCCL"

    def _buffer(self, array) -> tuple[int, int, int, int]:
        """(device pointer, element count, NCCL data type, stream) for a contiguous device array."""
        if not backend.is_array(array) or not array.flags.c_contiguous:
            raise TypeError(f"NCCL messages are contiguous arrays on the device ({backend.name}); got "
                            f"{type(array).__module__}.{type(array).__name__}.")
        if array.dtype.name not in self._types:
            raise TypeError(f"NCCL carries {', '.join(self._types)} here; got {array.dtype}.")
        stream = backend.xp.cuda.get_current_stream().ptr
        return array.data.ptr, array.size, self._types[array.dtype.name], stream

    def allreduce_sum(self, array) -> None:
        pointer, count, data_type, stream = self._buffer(array)
        self._comm.allReduce(pointer, pointer, count, data_type, self._nccl.NCCL_SUM, stream)

    def allreduce_mean(self, array) -> None:
        if not self._has_average:
            return super().allreduce_mean(array)
        pointer, count, data_type, stream = self._buffer(array)
        self._comm.allReduce(pointer, pointer, count, data_type, self._nccl.NCCL_AVG, stream)

    def broadcast(self, array, root: int = 0) -> None:
        pointer, count, data_type, stream = self._buffer(array)
        self._comm.bcast(pointer, count, data_type, root, stream)

    # control messages: MPI's
    def broadcast_object(self, value, root: int = 0):
        return self.control.broadcast_object(value, root)

    def allgather_object(self, value) -> list:
        return self.control.allgather_object(value)

    def gather_object(self, value, root: int = 0) -> list | None:
        return self.control.gather_object(value, root)

    def local_allgather_object(self, value) -> list:
        return self.control.local_allgather_object(value)

    def abort(self, exit_code: int = 1) -> None:
        self.control.abort(exit_code)
