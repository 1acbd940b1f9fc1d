"""What every GPU kernel module shares: launching a CUDA kernel, sizing its grid, choosing its build.

    CudaKernel(file, name, stand_in)   one ``extern "C"`` kernel of a .cu file in this folder;
                                       ``kernel(grid, args)`` launches it (NVRTC compiles the file,
                                       with common.cuh in front, on first use)
    typed(file, name, stand_in)        {dtype: CudaKernel} for the builds ``name_f16/_f32/_f64``
    grid(n), row_grid(rows)            blocks for a grid-stride loop, for a warp per row
    Replay(...)                        a generator that hands back draws already made (for stand-ins)

On the simulated GPU (backend "cupy-sim") a launch runs the kernel's *stand-in* instead: a
function of the kernel's own arguments that computes its outputs by calling the reference,
counted as the one launch the kernel makes.
"""

from __future__ import annotations

import numpy as np  # host-side scalar types for kernel arguments (CUDA takes them by value)

from minivit import backend
from minivit.kernels import nvrtc

BLOCK = 256  # threads per block
ROWS_PER_BLOCK = BLOCK // 32  # row kernels: one warp (32 threads) per row
SUFFIX = {np.dtype(np.float16): "f16", np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
WITH_HALF = (np.dtype(np.float16), *FLOATS)  # kernels that store float16 and compute in float32
HALF_AND_FLOAT = (np.dtype(np.float16), np.dtype(np.float32))  # kernels that compute in float32 only
TARGET_BLOCKS = 132  # about the SMs of an H100 or H200: a launch that moves megabytes should fill them
_modules: dict = {}  # (file, device) -> cupy.RawModule


def grid(n: int) -> int:
    """Blocks for a grid-stride loop over n elements: enough to fill the GPU, no more."""
    return max(1, min((n + BLOCK - 1) // BLOCK, 8192))


def row_grid(rows: int) -> int:
    """Blocks for a kernel that gives each row one warp."""
    return max(1, (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK)


class CudaKernel:
    """One ``extern "C"`` kernel of a .cu file in this folder, launched as ``kernel(grid, args, ...)``.

    ``stand_in(*args)`` computes the kernel's outputs with the reference; the simulated GPU
    runs it in the kernel's place, counted as one launch and recorded with its grid, block,
    shared memory and the bytes of its array arguments (``minivit.sim.launches.kernel``) for the
    cost model. ``work(grid, block, args)``, where given, says what the generic record cannot
    see inside a kernel: {"flops", "serial", "shared_loads"} (``minivit.sim.launches.Launch``).
    """

    def __init__(self, file_name: str, name: str, stand_in, work=None):
        self.file_name, self.name, self.stand_in, self.work = file_name, name, stand_in, work

    def __call__(self, grid: int, args: tuple, block: int | tuple = BLOCK, shared_mem: int = 0) -> None:
        if backend.name == "cupy-sim":
            from minivit import sim
            from minivit.sim import launches

            record = launches.kernel(self.name, grid, block, args, shared_mem, self.work)
            with sim.kernel_launch(self.name, record=record):
                if sim.counting.arithmetic():  # (recording costs only: the outputs stay as allocated)
                    self.stand_in(*args)
            return
        self._function()((grid,), block if isinstance(block, tuple) else (block,), args, shared_mem=shared_mem)

    def _function(self):
        import cupy

        key = (self.file_name, cupy.cuda.runtime.getDevice())
        if key not in _modules:
            _modules[key] = cupy.RawModule(code=nvrtc.source(self.file_name), options=nvrtc.OPTIONS)
        return _modules[key].get_function(self.name)


def typed(file_name: str, name: str, stand_in, dtypes=FLOATS, work=None) -> dict:
    """The builds of a kernel for each storage dtype: {dtype: CudaKernel} (``name_f32`` and so on)."""
    return {dtype: CudaKernel(file_name, f"{name}_{SUFFIX[dtype]}", stand_in, work) for dtype in dtypes}


def supported(*arrays, dtypes=FLOATS) -> bool:
    """All of one dtype, which the kernel has a build for."""
    return all(a.dtype in dtypes for a in arrays) and len({a.dtype for a in arrays}) == 1


def compute(array):
    """What a kernel computes in: float32 for float16 storage (the stand-ins do the same)."""
    return array.astype(np.float32) if array.dtype == np.float16 else array


def contiguous(array):
    return backend.xp.ascontiguousarray(array)  # no copy (no launch) when it already is


class Replay:
    """A random generator that hands back draws already made: ``Replay(random=u).random(shape)`` is ``u``.

    A kernel receives its random draws as arguments, where the reference makes them with its
    generator; given a Replay of those draws, the reference computes what the kernel computes."""

    def __init__(self, random=None, integers=None):
        self._random, self._integers = random, integers

    def random(self, *args, **kwargs):
        return self._random

    def integers(self, *args, **kwargs):
        return self._integers
