"""The fast path: implementations that compute what ``minivit/ops/`` computes, faster.

    registry.py   @replaces(name): which fast kernel replaces which reference, checked at import
    cpu.py        NumPy arrays: compiled loops (numba), BLAS tricks, work spread over the cores
    cpu_loops.py  the compiled loops behind cpu.py
    gpu/          CuPy arrays: one module per kernel beside its CUDA source (gelu.py, gelu.cu, ...),
                  compiled by NVRTC; launch.py holds what they share
    nvrtc.py      the CUDA sources compiled (with or without a GPU)
    tuning.py     tune_process(): process settings the CPU kernels need to be fast;
                  limit_threads(n): a process's share of the cores (a distributed rank's)

Each fast function declares the reference it replaces (``@replaces``), has its name,
signature and cache, and is tested against it. ``minivit.dispatch`` is the one place that chooses between
them (``minivit.dispatch.use("reference")`` runs the reference everywhere).
"""

from minivit.kernels.tuning import limit_threads, tune_process

__all__ = ["limit_threads", "tune_process"]
