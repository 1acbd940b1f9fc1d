"""The simulated GPU (backend "cupy-sim"): strict where CuPy is strict, and counting what a GPU pays."""

import numpy as np
import pytest

from minivit import backend, sim


@pytest.fixture
def xp():
    backend.use("cupy-sim")
    backend.reset_sim_counters()
    yield backend.xp


def test_arrays_refuse_implicit_conversion_to_numpy(xp):
    x = xp.arange(3)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)
    with pytest.raises(TypeError):
        np.concatenate([x, x])
    np.testing.assert_array_equal(backend.to_numpy(x), [0, 1, 2])  # the explicit way


def test_arrays_refuse_to_mix_with_host_arrays(xp):
    x = xp.ones(3)
    host = np.ones(3)
    for mixed in (lambda: x + host, lambda: host + x, lambda: x * host, lambda: xp.maximum(x, host)):
        with pytest.raises(TypeError, match="Unsupported type"):
            mixed()
    with pytest.raises(TypeError):
        x + [1, 2, 3]
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        x[:2] = np.ones(2)
    with pytest.raises(TypeError, match="host arrays"):
        x[np.array([0, 1])]
    x[...] = np.full(3, 7.0)  # a whole-array upload is allowed, as in CuPy, and counted
    assert backend.sim_counters()["to_device"] == 1
    assert float((x + 1.0)[0]) == 8.0  # Python and NumPy scalars mix, as in CuPy
    assert float((x * np.float32(2))[0]) == 14.0


def test_the_namespace_holds_only_what_cupy_implements():
    cupy = pytest.importorskip("cupy")
    import cupyx.scipy.special

    public = [name for name in dir(sim) if not name.startswith("_") and name not in sim.CONTROLS]
    missing = [name for name in public if not hasattr(cupy, name)]
    assert not missing, f"not in CuPy: {missing}"
    generator_methods = [name for name in dir(sim.random.default_rng(0)) if not name.startswith("_")]
    assert not [name for name in generator_methods if not hasattr(cupy.random.Generator, name)]
    array_methods = [name for name in dir(sim.ndarray) if not name.startswith("_")]
    assert not [name for name in array_methods if not hasattr(cupy.ndarray, name)]
    assert hasattr(cupyx.scipy.special, "erf")


def test_launches_are_counted_and_views_are_free(xp):
    x = xp.ones((4, 6), dtype=xp.float32)  # 1: a fill
    y = x * 2 + 1  # 2: two elementwise kernels
    y.reshape(6, 4).T[1:]  # views: free
    y.sum(axis=0)  # 1: a reduction
    y.T.reshape(-1)  # a copy: 1
    x @ y.T  # a product: 1
    xp.empty((100, 100))  # allocation: free
    assert backend.sim_counters()["launches"] == 6


def test_host_reads_are_counted_with_where_they_came_from(xp):
    x = xp.arange(5, dtype=xp.float32)
    float(x.sum())
    x.get()
    bool(x[0] > 1)
    counts = backend.sim_counters()
    assert counts["syncs"] == 3 and counts["to_host"] == 3
    assert all("test_sim.py" in site for site in counts["sync_sites"]), counts["sync_sites"]
    assert "float()" in counts["sync_sites"][0] and ".get()" in counts["sync_sites"][1]


def test_boolean_mask_indexing_synchronises(xp):
    x = xp.arange(6)
    x[x > 2]
    assert backend.sim_counters()["syncs"] == 1


def test_copies_across_the_bus_are_counted(xp):
    x = backend.asarray(np.zeros((10, 10), dtype=np.float32))
    backend.to_numpy(x)
    counts = backend.sim_counters()
    assert (counts["to_device"], counts["to_host"]) == (1, 1)
    assert counts["bytes_to_device"] == counts["bytes_to_host"] == 400


def test_phases_and_simulated_kernels(xp):
    x = xp.ones(10)
    with sim.phase("forward"):
        x = x * 3
        with sim.kernel_launch("my_kernel"):  # the reference runs inside, counted as one launch
            x = xp.exp(x) + xp.sqrt(x) * 2
    counts = backend.sim_counters()
    assert counts["by_phase"] == {"other": 1, "forward": 2}
    assert counts["by_kind"]["kernel:my_kernel"] == 1


def test_results_are_numpys(xp):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
    np.testing.assert_array_equal(backend.to_numpy(backend.asarray(a) @ backend.asarray(b)), a @ b)
    assert isinstance(xp.float32(1.0) * xp.ones(2), xp.ndarray)
    assert backend.is_array(xp.zeros(2)) and not backend.is_array(np.zeros(2))


def test_environment_variable_selects_the_simulation():
    import os
    import subprocess
    import sys

    env = {**os.environ, "MINIVIT_BACKEND": "cupy-sim"}
    out = subprocess.run([sys.executable, "-c", "from minivit import backend; print(backend.name)"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "cupy-sim"


def test_every_launch_is_recorded_with_its_phase_site_grid_and_bytes(xp):
    from minivit.sim import cost

    a = xp.ones((1000, 64), dtype=xp.float32)  # a fill: 64,000 elements, 128 threads a block
    with sim.phase("forward"):
        a * 2.0
    fill, product = sim.records()
    assert (fill.kind, fill.grid, fill.block, fill.bytes) == ("fill", 500, 128, 256_000)
    assert product.phase == "forward" and "test_sim.py" in product.site and product.bytes == 512_000
    assert cost.predict(sim.records(), "H200").device_ms > 0


def test_recording_without_the_arithmetic_records_the_same_launches():
    # a step reads nothing back, so its values cannot steer its launches: costs_only() may skip the products
    from minivit.sim.workload import record_step

    fast, full = (record_step("cifar-tiny", 2, skip_arithmetic=skip) for skip in (True, False))
    describe = [(r.kind, r.phase, r.grid, r.block, r.bytes, r.serial) for r in fast]
    assert describe == [(r.kind, r.phase, r.grid, r.block, r.bytes, r.serial) for r in full]
    assert len(fast) > 300
