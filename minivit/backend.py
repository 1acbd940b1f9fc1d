"""The array backend: the one module that chooses NumPy or CuPy.

Every other module of the engine does its array math through ``backend.xp``,
read at call time, so one code path serves both:

    from minivit import backend
    xp = backend.xp
    out = xp.maximum(x, 0)

NumPy is the default. Choose CuPy with ``minivit.backend.use("cupy")`` or the
environment variable ``MINIVIT_BACKEND=cupy`` (read when minivit is imported).
Switch backends before building a model: arrays made on one backend are not
converted when you switch.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

# OpenBLAS (NumPy's BLAS) keeps its worker threads busy-waiting for about 2^28 cycles (~0.1 s)
# after every matrix product. In a training step the next operation is often a parallel kernel
# (minivit.fused) whose threads then share the cores with spinning ones. Waiting 2^8 cycles
# before sleeping measured a 2-3% faster step on 2 cores. OpenBLAS reads this when it is loaded,
# so it only takes effect when minivit is imported before NumPy (as `python -m minivit.train`
# does); an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "8")

import numpy  # noqa: E402

xp: ModuleType = numpy  # the active array namespace: numpy or cupy
name: str = "numpy"  # "numpy" or "cupy"

_BACKENDS = ("numpy", "cupy")


def _import_cupy() -> ModuleType:
    """Import CuPy and check that a GPU is there, or say how to get one."""
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError(
            "The cupy backend needs CuPy, which is not installed. Install the build for your "
            "CUDA version, e.g. `pip install cupy-cuda12x` or `pip install cupy-cuda13x`, "
            "or use the numpy backend (minivit.backend.use('numpy'), MINIVIT_BACKEND=numpy)."
        ) from error
    try:
        device_count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError when there is no driver or device
        raise RuntimeError(
            f"CuPy is installed but cannot reach a GPU ({error}). The cupy backend needs an "
            "NVIDIA GPU with a working driver; on a machine without one, use the numpy backend."
        ) from error
    if device_count == 0:
        raise RuntimeError(
            "CuPy is installed but found no GPU. The cupy backend needs an NVIDIA GPU; "
            "on a machine without one, use the numpy backend."
        )
    return cupy


def use(backend_name: str) -> ModuleType:
    """Make ``backend_name`` ("numpy" or "cupy") the active backend and return its namespace."""
    global xp, name
    if backend_name not in _BACKENDS:
        raise ValueError(f"Unknown backend {backend_name!r}: choose one of {', '.join(_BACKENDS)}.")
    xp = numpy if backend_name == "numpy" else _import_cupy()
    name = backend_name
    return xp


def is_cupy() -> bool:
    return name == "cupy"


def asarray(array, dtype=None):
    """Move ``array`` (host or device) onto the active backend, optionally casting it."""
    return xp.asarray(array, dtype=dtype)


def to_numpy(array) -> numpy.ndarray:
    """Bring ``array`` back to the host as a NumPy array (a no-op for NumPy arrays)."""
    if isinstance(array, numpy.ndarray):
        return array
    if hasattr(array, "get"):  # a cupy.ndarray
        return array.get()
    return numpy.asarray(array)


def is_array(obj) -> bool:
    """True for an array of the active backend."""
    return isinstance(obj, xp.ndarray)


def erf(x):
    """The error function, elementwise, on the active backend (SciPy's or CuPy's)."""
    if name == "cupy":
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)
    import scipy.special

    return scipy.special.erf(x)


def _default_num_threads() -> int:
    for variable in ("MINIVIT_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


num_threads: int = _default_num_threads()  # threads for map_rows on NumPy
_thread_pool = None


def map_rows(fn, *arrays, block_elements: int = 1 << 17):
    """Run ``fn``, which treats each row (last axis) on its own, on blocks of rows.

    Why: on NumPy every operator in a chain like ``0.5 * x * (1 + erf(x / sqrt2))``
    is a separate pass over the whole array, usually far larger than the CPU's
    caches, and runs on one core. Cut into blocks of about ``block_elements``
    elements, the whole chain runs in cache, and blocks run on ``num_threads``
    cores (NumPy and SciPy release the GIL inside their loops). This is the CPU
    stand-in for a fused GPU kernel. On CuPy, ``fn`` simply runs once on the
    whole arrays. The result is the same to the last bit either way: each
    element is computed by the same operations.

    The arrays must share their leading shape (their last axes may differ, e.g.
    (..., D) and (..., 1)). Returns what ``fn`` returns (an array or a tuple),
    with the leading shape restored.
    """
    leading_shape = arrays[0].shape[:-1]
    num_rows = 1
    for size in leading_shape:
        num_rows *= size
    rows_per_block = max(1, block_elements // max(1, arrays[0].shape[-1]))
    if name == "cupy" or num_rows <= rows_per_block:
        return fn(*arrays)

    row_views = [a.reshape(num_rows, a.shape[-1]) for a in arrays]
    blocks = [slice(start, min(start + rows_per_block, num_rows)) for start in range(0, num_rows, rows_per_block)]
    first = fn(*(view[blocks[0]] for view in row_views))
    single_output = not isinstance(first, tuple)
    first = (first,) if single_output else first
    outputs = [xp.empty((num_rows, block_out.shape[-1]), dtype=block_out.dtype) for block_out in first]
    for output, block_out in zip(outputs, first):
        output[blocks[0]] = block_out

    def run(block):
        results = fn(*(view[block] for view in row_views))
        for output, block_out in zip(outputs, (results,) if single_output else results):
            output[block] = block_out

    for _ in _pool().map(run, blocks[1:]):  # iterating re-raises a block's exception
        pass
    outputs = tuple(output.reshape(*leading_shape, output.shape[-1]) for output in outputs)
    return outputs[0] if single_output else outputs


def _pool():
    global _thread_pool
    if _thread_pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _thread_pool = ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="minivit")
    return _thread_pool


def batched_matmul(a, b, out=None):
    """``a @ b`` for stacks of matrices (..., M, K) @ (..., K, N), ``out`` as in ``xp.matmul``.

    Why: NumPy hands the products of a stack to BLAS one after another, and BLAS runs a
    product as small as attention's (65 x 64 @ 64 x 65) on one core. Here the stack is cut
    along its first axis into ``num_threads`` parts that run side by side (NumPy releases the
    GIL inside matmul). Each product is the same BLAS call either way, so the result is too.
    On CuPy, or for arrays whose first axes differ, it is plain ``xp.matmul``.
    """
    parts = min(num_threads, a.shape[0]) if a.ndim > 2 else 1
    if name == "cupy" or parts < 2 or a.shape[:-2] != b.shape[:-2]:
        return xp.matmul(a, b, out=out)
    if out is None:
        out = xp.empty((*a.shape[:-1], b.shape[-1]), dtype=xp.result_type(a, b))
    bounds = [a.shape[0] * part // parts for part in range(parts + 1)]
    slices = [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]
    pending = [_pool().submit(xp.matmul, a[part], b[part], out=out[part]) for part in slices[1:]]
    xp.matmul(a[slices[0]], b[slices[0]], out=out[slices[0]])
    for result in pending:
        result.result()  # re-raises a part's exception
    return out


def addmm(bias, a, b):
    """``a @ b + bias`` for 2-D ``a`` (M, K) and ``b`` (K, N), ``bias`` (N,): a linear layer's forward.

    Why: added afterwards, the bias is one more pass over the (M, N) result, which is as large
    as a layer's activations. BLAS's gemm computes ``C = alpha A B + beta C`` and can add the
    product into ``C`` while each block of it is still in cache; with ``C`` filled with the
    bias and beta = 1 the sum comes out of one call, as PyTorch's ``addmm`` (nn.Linear) does.
    On NumPy this calls SciPy's BLAS (NumPy does not expose beta): C-ordered arrays are
    Fortran-ordered transposes, so out^T = b^T a^T + bias^T is computed on those, with no copy.
    Other dtypes, layouts or CuPy: plain ``a @ b + bias``.
    """
    if (name == "cupy" or a.dtype != b.dtype or a.dtype not in (numpy.float32, numpy.float64)
            or not (a.flags.c_contiguous and b.flags.c_contiguous) or a.size == 0 or b.size == 0):
        return a @ b + bias
    from scipy.linalg import blas

    out = numpy.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    out[...] = bias  # broadcast along the rows
    gemm = blas.sgemm if a.dtype == numpy.float32 else blas.dgemm
    gemm(1.0, b.T, a.T, beta=1.0, c=out.T, overwrite_c=True)  # writes into out
    return out


def default_rng(seed=None):
    """A random generator that makes arrays on the active backend (for dropout and augmentation)."""
    return xp.random.default_rng(seed)


def synchronize() -> None:
    """Wait for the GPU to finish queued work (a no-op on NumPy). Use it around timings."""
    if name == "cupy":
        xp.cuda.get_current_stream().synchronize()


def _keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory for reuse rather than hand it back to the OS.

    Every training step allocates and frees the same large activation arrays. By
    default glibc returns big freed blocks to the operating system, so the next
    step's arrays start on fresh pages, and each first touch of a page is a page
    fault: measured here, that doubled the time of GELU's forward in a training
    step. A 32 MiB mmap threshold and no trimming keep the memory in the process.
    Linux with glibc only; set MINIVIT_TUNE_MALLOC=0 to leave malloc alone.
    """
    if os.environ.get("MINIVIT_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    except (OSError, AttributeError):
        pass  # not glibc (musl, macOS): nothing to tune


_keep_freed_memory()
_env_backend = os.environ.get("MINIVIT_BACKEND", "numpy").strip().lower() or "numpy"
if _env_backend != "numpy":
    use(_env_backend)
