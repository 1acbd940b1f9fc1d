"""The array backend: the one module that chooses NumPy, CuPy, or the simulated GPU.

Every other module of the engine does its array math through ``backend.xp``,
read at call time, so one code path serves all of them:

    from minivit import backend
    xp = backend.xp
    out = xp.maximum(x, 0)

Backends:
    "numpy"     the CPU (the default)
    "cupy"      an NVIDIA GPU through CuPy
    "cupy-sim"  a strict stand-in for CuPy that runs on the CPU (``minivit.sim``): its arrays
                behave as CuPy's do where it matters (no implicit copies to the host, no mixing
                with NumPy arrays) and it counts what a GPU would pay: kernel launches, host
                synchronisations and copies. See ``sim_counters()``.

Choose one with ``minivit.backend.use(name)`` or the environment variable
``MINIVIT_BACKEND`` (read when minivit is imported). Switch backends before
building a model: arrays made on one backend are not converted when you switch.

Importing this module changes nothing in the process (no environment variables,
no allocator settings, no thread pools): speed tuning is one explicit call,
``minivit.kernels.tune_process()``.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy

BACKENDS = ("numpy", "cupy", "cupy-sim")

xp: ModuleType = numpy  # the active array namespace: numpy, cupy, or minivit.sim
name: str = "numpy"  # one of BACKENDS


def _import_cupy() -> ModuleType:
    """Import CuPy and prove, with one tiny kernel and one matrix product, that it can use a GPU."""
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError(
            "The cupy backend needs CuPy, which is not installed. Install the build for your "
            "CUDA version with its libraries, e.g. `pip install 'cupy-cuda13x[ctk]'` (CUDA 13) or "
            "`pip install 'cupy-cuda12x[ctk]'` (CUDA 12), or `pip install -e '.[gpu]'`; or use the "
            "numpy backend (minivit.backend.use('numpy'), MINIVIT_BACKEND=numpy)."
        ) from error
    try:
        device_count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError when there is no driver or device
        raise RuntimeError(
            f"CuPy is installed but cannot reach a GPU ({error}). The cupy backend needs an "
            "NVIDIA GPU with a working driver (check `nvidia-smi`); on a machine without one, use "
            "the numpy backend, or 'cupy-sim' to see what a step would cost on a GPU."
        ) from error
    if device_count == 0:
        raise RuntimeError(
            "CuPy is installed but found no GPU. The cupy backend needs an NVIDIA GPU; "
            "on a machine without one, use the numpy backend."
        )
    _check_device(cupy)
    return cupy


def _check_device(cupy) -> None:
    """Run one elementwise kernel (compiled by NVRTC) and one cuBLAS product; say what is missing."""
    try:
        values = cupy.arange(4, dtype=cupy.float32)
        total = float((values * 2.0).sum())
    except Exception as error:
        raise RuntimeError(
            f"CuPy sees a GPU but could not compile or run a kernel on it ({type(error).__name__}: {error}). "
            "This usually means the CUDA driver is older than the CuPy build (`nvidia-smi` shows the "
            "driver's CUDA version; install the matching cupy-cuda12x or cupy-cuda13x) or NVRTC is "
            "missing (install CuPy with its libraries: `pip install 'cupy-cuda13x[ctk]'`)."
        ) from error
    if total != 12.0:
        raise RuntimeError(f"CuPy's test kernel computed {total} instead of 12: the GPU setup is broken.")
    try:
        identity = cupy.eye(8, dtype=cupy.float32)
        product = float((identity @ identity).sum())
    except Exception as error:
        raise RuntimeError(
            f"CuPy could not run a matrix product with cuBLAS ({type(error).__name__}: {error}). "
            "Install CuPy with its CUDA libraries: `pip install 'cupy-cuda13x[ctk]'` (or cupy-cuda12x)."
        ) from error
    if product != 8.0:
        raise RuntimeError(f"cuBLAS computed a wrong product ({product} instead of 8): the GPU setup is broken.")


def _import_sim() -> ModuleType:
    from minivit import sim

    return sim


def use(backend_name: str) -> ModuleType:
    """Make ``backend_name`` ("numpy", "cupy" or "cupy-sim") the active backend; returns its namespace."""
    global xp, name
    if backend_name not in BACKENDS:
        raise ValueError(f"Unknown backend {backend_name!r}: choose one of {', '.join(BACKENDS)}.")
    if backend_name == "numpy":
        xp = numpy
    elif backend_name == "cupy":
        xp = _import_cupy()
    else:
        xp = _import_sim()
    name = backend_name
    return xp


def is_gpu() -> bool:
    """True on CuPy and on its simulation: arrays live on a (real or simulated) device."""
    return name in ("cupy", "cupy-sim")


def asarray(array, dtype=None):
    """Move ``array`` (host or device) onto the active backend, optionally casting it."""
    return xp.asarray(array, dtype=dtype)


def to_numpy(array) -> numpy.ndarray:
    """Bring ``array`` back to the host as a NumPy array (a no-op for NumPy arrays)."""
    if isinstance(array, numpy.ndarray):
        return array
    if hasattr(array, "get"):  # a cupy.ndarray, or the simulation's
        return array.get()
    return numpy.asarray(array)


def is_array(obj) -> bool:
    """True for an array of the active backend."""
    return isinstance(obj, xp.ndarray)


def erf(x):
    """The error function, elementwise, on the active backend (SciPy's, CuPy's or the simulation's)."""
    if name == "cupy":
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)
    if name == "cupy-sim":
        return xp.special.erf(x)
    import scipy.special

    return scipy.special.erf(x)


def default_rng(seed=None):
    """A random generator that makes arrays on the active backend (for dropout and augmentation)."""
    return xp.random.default_rng(seed)


def synchronize() -> None:
    """Wait for the GPU to finish queued work (a no-op on NumPy). Use it around timings."""
    if is_gpu():
        xp.cuda.get_current_stream().synchronize()


def use_tf32(enabled: bool = True) -> None:
    """Let cuBLAS compute float32 matrix products with TensorFloat-32 (10-bit mantissas, as PyTorch's
    ``allow_tf32``) on GPUs that have it (Ampere and newer): several times the float32 speed of the
    products, at about 1e-3 relative precision. A no-op on NumPy and on the simulated GPU."""
    if name != "cupy":
        return
    try:  # CuPy's switch (the environment variable CUPY_TF32=1 sets it at import)
        from cupy._core import _routines_linalg as linalg
    except ImportError as error:
        raise RuntimeError(f"This CuPy ({xp.__version__}) has no TF32 switch; update CuPy or leave tf32 off.") \
            from error
    mode = linalg.COMPUTE_TYPE_TF32 if enabled else linalg.COMPUTE_TYPE_DEFAULT
    linalg.set_compute_type(xp.float32, mode)


def sim_counters() -> dict:
    """What the simulated GPU has counted since the last reset (backend "cupy-sim" only):

        launches    kernel launches (each elementwise operation, reduction, copy, matrix product, ...)
        syncs       host synchronisations (.item(), float(), bool(), .get(), tolist(), ...)
        to_device   host-to-device copies;  to_host: device-to-host copies
        sync_sites  where each synchronisation came from ("file:line")
        by_phase    launches per phase, for code run inside ``sim.phase(name)``
    """
    return _import_sim().counters()


def reset_sim_counters() -> None:
    """Set the simulated GPU's counters back to zero."""
    _import_sim().reset_counters()


_env_backend = os.environ.get("MINIVIT_BACKEND", "numpy").strip().lower() or "numpy"
if _env_backend != "numpy":
    use(_env_backend)
