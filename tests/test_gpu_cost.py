"""GPU kernels sized for the GPU: a cifar-tiny batch-512 training step, recorded on the simulated GPU
launch by launch and costed for an H200 by the cost model (minivit.sim.cost).

The rule (STYLE.md): a launch that moves more than 1 MB runs at least as many blocks as the GPU
has SMs (132), and no thread loops more than 256 times in sequence. CuPy's generic
``sum(axis=0)`` over 33,280 rows breaks both (6 to 24 blocks, 2,080 rows per thread): on the
H200 the bias gradients cost more than the whole forward. And a backward should cost about
twice its forward: the predicted ratio must stay at most 2.2.
"""

import pytest

from minivit import backend
from minivit.sim import cost, launches
from minivit.sim.workload import record_step

MAX_BACKWARD_OVER_FORWARD = 2.2


@pytest.fixture(scope="module")
def step_records():
    return record_step("cifar-tiny", batch_size=512)


def test_no_launch_leaves_the_gpu_idle_or_loops_too_long(step_records):
    bad = cost.offenders(step_records, sms=cost.GPUS["H200"].sms, megabytes=1.0, max_serial=256)
    described = sorted({f"{r.phase}: {r.site} ({r.kind}, {r.grid} blocks, {r.serial} serial, {r.bytes / 1e6:.1f} MB)"
                        for r in bad})
    assert not bad, f"{len(bad)} launches break the rule:\n" + "\n".join(described)


def test_the_backward_costs_about_twice_the_forward(step_records):
    prediction = cost.predict(step_records, "H200")
    ratio = prediction.by_phase["backward"] / prediction.by_phase["forward"]
    assert ratio <= MAX_BACKWARD_OVER_FORWARD, (
        f"predicted backward {prediction.by_phase['backward']:.2f} ms = {ratio:.2f} x forward "
        f"{prediction.by_phase['forward']:.2f} ms (at most {MAX_BACKWARD_OVER_FORWARD})")


def test_the_records_reproduce_cupys_reduction_grid():
    # CuPy's own rule, where CuPy is installed (it needs no GPU to answer)
    reduction = pytest.importorskip("cupy._core._reduction")
    for in_size, out_size, contiguous in [(33280 * 192, 192, 192), (33280 * 768, 768, 768), (5120, 10, 10),
                                          (33280 * 192, 33280, 1), (100, 1, 1)]:
        assert launches.reduction_specs(in_size, out_size, contiguous) == \
            tuple(reduction._get_block_specs(in_size, out_size, contiguous, -1))


def test_a_column_sum_over_many_rows_gets_few_blocks_and_long_loops():
    xp = backend.use("cupy-sim")
    try:
        backend.reset_sim_counters()
        dout = xp.zeros((33280, 192), dtype=xp.float32)
        backend.reset_sim_counters()
        dout.sum(axis=0)  # CuPy's generic reduction: 6 blocks of 512 threads, 16 threads a column
        dout.sum(axis=-1)  # over the contiguous axis: CUB, a block per row
        from minivit import sim

        columns, rows = sim.records()
        assert (columns.grid, columns.block, columns.serial) == (6, 512, 2080)
        assert rows.grid == 33280 and rows.serial == 1
        assert cost.offenders([columns]) == [columns] and cost.offenders([rows]) == []
    finally:
        backend.use("numpy")
