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
from types import ModuleType

import numpy

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


def default_rng(seed=None):
    """A random generator that makes arrays on the active backend (for dropout and augmentation)."""
    return xp.random.default_rng(seed)


def synchronize() -> None:
    """Wait for the GPU to finish queued work (a no-op on NumPy). Use it around timings."""
    if name == "cupy":
        xp.cuda.get_current_stream().synchronize()


_env_backend = os.environ.get("MINIVIT_BACKEND", "numpy").strip().lower() or "numpy"
if _env_backend != "numpy":
    use(_env_backend)
