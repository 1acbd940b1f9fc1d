"""Process settings that make the CPU kernels faster: one explicit call, ``tune_process()``.

Importing minivit changes nothing in the process. The training and benchmark command
lines call ``tune_process()`` first thing; a notebook or a script may call it too. It
works the same whether NumPy was imported before minivit or not.

What it sets, and why (each measured on 2 cores, cifar-tiny, batch 128):

1. OpenBLAS's worker threads sleep soon after a matrix product. By default they spin
   for about 2^28 cycles (~0.1 s) waiting for the next product, taking the cores from
   the compiled loops that run between products. OpenBLAS reads its timeout
   (OPENBLAS_THREAD_TIMEOUT) when its threads start, so for each OpenBLAS already loaded
   (NumPy's, SciPy's) the timeout is re-read and the threads are restarted.
2. numba's parallel loops use the "workqueue" threading layer, whose threads sleep
   between loops (OpenMP's spin, as OpenBLAS's do). Only possible before the first
   parallel loop has run.
3. glibc's malloc keeps freed memory for reuse instead of handing large blocks back to
   the operating system: every step allocates and frees the same large activations, and
   each first touch of a fresh page is a page fault (measured: GELU's forward took twice
   as long on fresh pages).
"""

from __future__ import annotations

import ctypes
import os
import sys

OPENBLAS_THREAD_TIMEOUT = 8  # 2^8 cycles of spinning before a worker sleeps (OpenBLAS clamps to 4..30)


def tune_process() -> dict:
    """Apply the three settings above to this process; returns what was done, setting by setting."""
    return {
        "openblas_thread_timeout": _openblas_sleep_sooner(),
        "numba_threading_layer": _numba_workqueue(),
        "malloc": _keep_freed_memory(),
    }


def _loaded_openblas_paths() -> list[str]:
    """Paths of the OpenBLAS libraries this process has loaded (NumPy and SciPy bundle their own)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:  # not Linux
        return []
    return sorted(paths)


def _openblas_sleep_sooner() -> str:
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ and os.environ["OPENBLAS_THREAD_TIMEOUT"] != str(
            OPENBLAS_THREAD_TIMEOUT):
        return f"left at the environment's {os.environ['OPENBLAS_THREAD_TIMEOUT']}"
    try:  # SciPy's own OpenBLAS (the linear layers' addmm uses it): loaded now, so that it is tuned too
        import scipy.linalg.blas  # noqa: F401
    except ImportError:
        pass
    done = []
    previous = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(OPENBLAS_THREAD_TIMEOUT)
    try:
        for path in _loaded_openblas_paths():
            library = ctypes.CDLL(path)  # the already loaded library: no second copy
            try:
                read_environment, shut_down = library.openblas_read_env, library.blas_thread_shutdown_
            except AttributeError:
                continue  # an OpenBLAS without these entry points: left as it is
            read_environment()  # takes the new timeout ...
            shut_down()  # ... and the worker threads, restarted by the next product, use it
            done.append(os.path.basename(path))
    finally:
        if previous is None:
            del os.environ["OPENBLAS_THREAD_TIMEOUT"]
        else:
            os.environ["OPENBLAS_THREAD_TIMEOUT"] = previous
    return f"2^{OPENBLAS_THREAD_TIMEOUT} cycles in {', '.join(done)}" if done else "no OpenBLAS loaded"


def _numba_workqueue() -> str:
    try:
        import numba
        from numba.np.ufunc import parallel
    except ImportError:
        return "numba not installed"
    if getattr(parallel, "_is_initialized", False):
        return f"left at {numba.threading_layer()} (a parallel loop already ran)"
    if numba.config.THREADING_LAYER != "default":
        return f"left at the configured {numba.config.THREADING_LAYER}"
    numba.config.THREADING_LAYER = "workqueue"
    return "workqueue"


def _keep_freed_memory() -> str:
    if not sys.platform.startswith("linux"):
        return "not Linux: left alone"
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    except (OSError, AttributeError):
        return "not glibc: left alone"
    return "freed memory kept (mmap threshold 32 MiB, no trimming)"
