"""What one kernel launch is: a ``Launch`` record, and the launch configurations a GPU would use.

The simulated GPU makes one record per launch: the kind, the shapes it reads and writes, the
grid and block, the bytes it moves, the floating-point operations, and the *serial
iterations*: how many times the busiest thread goes round its loop, one dependent memory
access after another. ``minivit.sim.cost`` turns records into milliseconds for a named GPU.

The configurations are the ones the real launch would get:

    elementwise, copies, fills   CuPy: 128 threads a block, one thread per element
                                 (``cupy/cuda/function.pyx``, ``linear_launch``)
    reductions                   CuPy's generic reduction kernel (``cupy/_core/_reduction.pyx``,
                                 ``_get_block_specs``, reproduced in ``reduction_specs``); the ones
                                 over whole arrays or the trailing (contiguous) axes go to CUB
                                 (CuPy's default accelerator), one block per output
    matrix products              cuBLAS: an estimate (128 x 128 output tiles, split along K
                                 until the tiles fill the GPU); cuBLAS picks from measured heuristics
    minivit's CUDA kernels       their own grid and block (``minivit/kernels/gpu/``)

A reduction over the rows of a (rows, D) array, ``dout.sum(axis=0)``, gets ``D / 32`` blocks
from CuPy's rule (6 for D = 192), each thread walking ``rows / 16`` rows in sequence: on a GPU
with 132 SMs that is a handful of busy SMs and a long chain of memory latencies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ELEMENTWISE_BLOCK = 128  # CuPy's linear_launch: block_max_size
REDUCTION_BLOCK = 512  # CuPy's _default_block_size (CUDA)
CUBLAS_TILE = 128  # rows and columns of C per thread block (an estimate)
CUBLAS_K_TILE = 32  # K advanced per main-loop iteration (an estimate)
CUBLAS_TARGET_BLOCKS = 132  # split-K until the tiles reach about one per SM of an H100/H200


@dataclass(eq=False)
class Launch:
    """One kernel launch, as the simulated GPU saw it."""

    kind: str  # "elementwise", "reduction", "copy", "matmul", "kernel:<name>", ...
    shapes: tuple = ()  # the shapes read, then the shape written
    dtype: str = ""
    grid: int = 1  # blocks
    block: int = 1  # threads per block
    bytes: int = 0  # read from and written to device memory
    flops: int = 0
    serial: int = 1  # loop iterations of the busiest thread, one after another
    shared_loads: int = 0  # shared-memory load instructions of whole warps, all blocks together
    shared_bytes: int = 0  # shared memory per block (how many blocks fit on an SM at once)
    registers: int = 0  # per thread, where known (ptxas -v): also limits the blocks an SM holds
    matmul: bool = False  # a cuBLAS product (tensor cores with TF32 or half)
    phase: str = "other"
    site: str = "?"  # file:line in function, of the code that launched it

    @property
    def threads(self) -> int:
        return self.grid * self.block


def _arrays(values) -> list:
    return [v for v in values if hasattr(v, "nbytes") and hasattr(v, "shape")]


def elementwise(kind: str, inputs, output) -> Launch:
    """An elementwise kernel (or copy, fill, gather): one thread per output element."""
    inputs = _arrays(inputs)
    n = int(output.size) if output is not None else max([int(a.size) for a in inputs] or [1])
    moved = sum(int(a.nbytes) for a in inputs) + (int(output.nbytes) if output is not None else 0)
    shapes = tuple(tuple(a.shape) for a in inputs) + ((tuple(output.shape),) if output is not None else ())
    dtype = str(output.dtype) if output is not None else (str(inputs[0].dtype) if inputs else "")
    return Launch(kind, shapes, dtype, grid=max(1, -(-n // ELEMENTWISE_BLOCK)), block=ELEMENTWISE_BLOCK,
                  bytes=moved, flops=n)


def _clp2(x: int) -> int:
    """The smallest power of two >= x (CuPy's internal.clp2)."""
    return 1 if x <= 1 else 1 << (int(x) - 1).bit_length()


def reduction_specs(in_size: int, out_size: int, contiguous_size: int,
                    block_size: int = REDUCTION_BLOCK) -> tuple[int, int, int]:
    """(block_size, block_stride, out_block_num): CuPy's ``_get_block_specs``, line for line.

    Each block computes ``block_stride`` outputs with ``block_size / block_stride`` threads each;
    the grid is ``out_block_num`` blocks.
    """
    reduce_block_size = max(1, in_size // out_size)
    contiguous_size = min(contiguous_size, 32)
    block_stride = max(contiguous_size, block_size // reduce_block_size)
    block_stride = _clp2(block_stride // 2 + 1)
    out_block_num = (out_size + block_stride - 1) // block_stride
    return block_size, block_stride, out_block_num


def _axes(axis, ndim: int) -> tuple[tuple, tuple]:
    if axis is None:
        return tuple(range(ndim)), ()
    axis = axis if isinstance(axis, (tuple, list)) else (axis,)
    reduce_axis = tuple(sorted(a % ndim for a in axis))
    return reduce_axis, tuple(a for a in range(ndim) if a not in reduce_axis)


def reduction(kind: str, array, axis, output) -> Launch:
    """A reduction as CuPy launches it: CUB for whole arrays and trailing axes, else its generic kernel."""
    ndim = array.ndim
    reduce_axis, out_axis = _axes(axis, ndim)
    in_size, out_size = int(array.size), max(1, int(math.prod(array.shape[a] for a in out_axis)))
    reduce_size = max(1, in_size // out_size)
    moved = int(array.nbytes) + (int(output.nbytes) if output is not None else 0)
    shapes = (tuple(array.shape), tuple(output.shape) if output is not None else ())
    trailing = reduce_axis == tuple(range(ndim - len(reduce_axis), ndim))
    if ndim == 0 or (trailing and array.flags.c_contiguous):
        # CUB: a device-wide reduction, or one block per output over a contiguous segment
        blocks = out_size if out_axis else max(1, min(-(-in_size // (REDUCTION_BLOCK * 4)), 2 * CUBLAS_TARGET_BLOCKS))
        threads = blocks * REDUCTION_BLOCK
        serial = max(1, -(-in_size // threads))
        return Launch(kind, shapes, str(array.dtype), grid=blocks, block=REDUCTION_BLOCK, bytes=moved,
                      flops=in_size, serial=serial)
    # CuPy's generic kernel: the reduce axes first, the output axes last; contiguous_size is how many
    # output elements lie next to each other in memory (_get_contiguous_size)
    permuted = reduce_axis + out_axis
    strides = [array.strides[a] for a in permuted]
    out_shape = [array.shape[a] for a in out_axis]
    contiguous = 1
    for j in range(len(out_axis)):
        if strides[ndim - j - 1] != contiguous * array.itemsize:
            break
        contiguous *= out_shape[len(out_axis) - j - 1]
    block, block_stride, blocks = reduction_specs(in_size, out_size, contiguous)
    serial = max(1, -(-reduce_size // (block // block_stride)))
    return Launch(kind, shapes, str(array.dtype), grid=blocks, block=block, bytes=moved, flops=in_size,
                  serial=serial)


def matmul(a, b, output) -> Launch:
    """A cuBLAS product (batched over leading axes): an estimate of its tiles and K loop."""
    M, K = (a.shape[-2], a.shape[-1]) if a.ndim >= 2 else (1, a.shape[-1])
    N = b.shape[-1] if b.ndim >= 2 else 1
    batch = int(math.prod(output.shape[:-2])) if output.ndim > 2 else 1
    tiles = batch * -(-M // CUBLAS_TILE) * -(-N // CUBLAS_TILE)
    k_steps = max(1, -(-K // CUBLAS_K_TILE))
    split = max(1, min(-(-CUBLAS_TARGET_BLOCKS // tiles), k_steps // 8)) if tiles < CUBLAS_TARGET_BLOCKS else 1
    return Launch("matmul", (tuple(a.shape), tuple(b.shape), tuple(output.shape)), str(output.dtype),
                  grid=tiles * split, block=256, bytes=int(a.nbytes) + int(b.nbytes) + int(output.nbytes),
                  flops=2 * batch * M * N * K, serial=-(-k_steps // split), matmul=True)


def kernel(name: str, grid, block, arguments, shared_mem: int = 0, work=None) -> Launch:
    """One of minivit's CUDA kernels: its own grid, block and shared memory; the busiest thread handles
    (largest array) / (threads) elements, as in a grid-stride or a row-per-warp loop, unless the
    kernel's ``work(grid, block, arguments)`` says otherwise ({"flops", "serial", "shared_loads", "registers"}:
    a kernel that loops over shared memory, like attention.cu's)."""
    arrays = _arrays(arguments)
    grid = int(math.prod(grid)) if isinstance(grid, tuple) else int(grid)
    block = int(math.prod(block)) if isinstance(block, tuple) else int(block)
    largest = max([int(a.size) for a in arrays] or [1])
    record = Launch(f"kernel:{name}", tuple(tuple(a.shape) for a in arrays),
                    str(arrays[0].dtype) if arrays else "", grid=grid, block=block,
                    bytes=sum(int(a.nbytes) for a in arrays), flops=4 * largest,
                    serial=max(1, -(-largest // max(1, grid * block))), shared_bytes=int(shared_mem))
    for field, value in (work(grid, block, arguments) if work is not None else {}).items():
        setattr(record, field, int(value))
    return record
