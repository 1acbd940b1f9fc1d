"""The fast path: implementations that compute what ``minivit/ops/`` computes, faster.

    cpu.py        NumPy arrays: compiled loops (numba), BLAS tricks, work spread over the cores
    cpu_loops.py  the compiled loops behind cpu.py
    gpu.py        CuPy arrays: CUDA kernels (sources in cuda/*.cu), compiled by NVRTC
    tuning.py     tune_process(): process settings the CPU kernels need to be fast, applied on
                  their first use (MINIVIT_TUNE=0 refuses);
                  limit_threads(n): a process's share of the cores (a distributed rank's)

Each fast function has the name, signature and cache of the reference it replaces
and is tested against it. ``minivit.dispatch`` is the one place that chooses between
them (``minivit.dispatch.use("reference")`` runs the reference everywhere).
"""

from minivit.kernels.tuning import limit_threads, tune_process

__all__ = ["limit_threads", "tune_process"]
