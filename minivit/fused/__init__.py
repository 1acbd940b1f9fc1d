"""Fused kernels: each elementwise or row-wise chain as one pass, for speed.

The readable NumPy/CuPy code in ``minivit.ops`` is the definition; a fused
kernel computes the same thing in one loop over the data instead of one pass
per operator (tests compare the two). ``minivit.ops`` calls a fused kernel
when one is available for the array at hand and ``MINIVIT_FUSED`` is not "0":

    cpu.py   NumPy arrays, compiled with numba (parallel loops over rows).

Fused kernels exist for the chains that measured slowest as NumPy passes:
exact GELU, LayerNorm and the softmax, forward and backward (the softmax's
forward for float32 only: it uses the vectorised float32 exp).
"""

from __future__ import annotations

import os

from minivit import backend

_cpu = None
_cpu_checked = False


def enabled() -> bool:
    return os.environ.get("MINIVIT_FUSED", "1") != "0"


def cpu_kernels():
    """The numba kernels for NumPy arrays, or None (numba missing, or MINIVIT_FUSED=0)."""
    global _cpu, _cpu_checked
    if not enabled() or backend.name != "numpy":
        return None
    if not _cpu_checked:
        _cpu_checked = True
        try:
            from minivit.fused import cpu as module
        except ImportError:  # numba is optional: the plain NumPy path runs without it
            module = None
        _cpu = module
    return _cpu
