import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers (hf_reference)


def _cupy_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


HAS_CUPY = _cupy_available()


@pytest.fixture(params=["numpy", "cupy-sim", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend_name(request):
    """Runs a test on every backend: NumPy, the simulated GPU (always), and CuPy (skipped cleanly
    without CuPy and a GPU)."""
    from minivit import backend

    if request.param == "cupy" and not HAS_CUPY:
        pytest.skip("CuPy with a GPU is not available here")
    previous = backend.name
    backend.use(request.param)
    yield request.param
    backend.use(previous)


@pytest.fixture(autouse=True)
def _numpy_backend_by_default():
    """Every test starts (and ends) on the numpy backend unless it asks otherwise."""
    from minivit import backend

    backend.use("numpy")
    yield
    backend.use("numpy")


@pytest.fixture
def reference_kernels():
    """Runs a test on the pure reference (minivit/ops): what the gradient checks prove."""
    from minivit import dispatch

    previous = dispatch.use("reference")
    yield
    dispatch.use(previous)


@pytest.fixture(params=["reference", "fast"])
def kernel_mode(request):
    """Runs a test twice: on the pure reference and on the fast kernels (the default)."""
    from minivit import dispatch

    previous = dispatch.use(request.param)
    yield request.param
    dispatch.use(previous)
