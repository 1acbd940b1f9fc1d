"""Data-parallel training (minivit.distributed): ranks that average their shards' gradients train the
model that one process trains on the whole batch.

The proof runs real ranks: ``mpiexec -n 2`` and ``-n 4`` (tests/distributed_worker.py) against one
process with the same global batch, with every augmentation on (crops, flips, RandAugment, mixup and
cutmix) and dropout, several AdamW steps. Each image's augmentation and dropout masks are functions of
(seed, epoch, image), and mixing pairs images across the global batch (minivit.training.randomness),
so the ranks draw what one process draws; what differs is the order of the gradient sums:
  * float64: the same weights to about 1e-14 (asserted: 1e-12; 6e-15 measured on 2 ranks, 3e-15 on
    4). The largest difference is in the attention's key biases, whose gradient is zero in exact
    arithmetic (a bias added to every key shifts a query's scores by one constant, which the
    softmax ignores): the two sides' rounding noise there differs, and AdamW divides it by its own
    small scale. Elsewhere the weights agree to 2e-16.
  * float32: within 1e-5 (3e-6 measured on those key biases, 6e-8 elsewhere, on 2 and 4 ranks), for
    the same reason at float32's rounding.
All ranks hold the same weights to the last bit. A run stopped on some number of ranks continues on
any other (no generator state: the step is enough). The tests that start ranks need mpi4py and an
mpiexec (requirements-dev.txt installs them) and are skipped without.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_data import write_image_folder

from minivit import backend, sim
from minivit.checkpoint import read_checkpoint
from minivit.distributed import SingleProcess
from minivit.distributed.placement import cpu_share
from minivit.distributed.sharding import shard
from minivit.train import TrainConfig, Trainer, main, train
from minivit.training.data import Batches

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
TINY_MODEL = dict(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=32, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
NO_AUGMENTATION = dict(crop_padding=0, horizontal_flip=False)
EVERY_AUGMENTATION = dict(crop_padding=2, horizontal_flip=True, randaugment_ops=2, randaugment_magnitude=9,
                          mixup_alpha=0.8, cutmix_alpha=1.0)
WITH_DROPOUT = {**TINY_MODEL, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=16, size=8)


def tiny_values(data_dir, out, **changes) -> dict:
    # 48 images, 25% validation -> 36 training images -> 3 steps of 12 per epoch
    values = dict(model=TINY_MODEL, data_dir=str(data_dir), out=str(out), epochs=2, batch_size=12,
                  val_fraction=0.25, warmup_epochs=1, lr=3e-3, progress=False, eval_batch_size=5,
                  augment=NO_AUGMENTATION)
    values.update(changes)
    return values


def config_of(values: dict) -> TrainConfig:
    from minivit.augment import AugmentConfig

    return TrainConfig(**{**values, "augment": AugmentConfig(**values["augment"])})


def mpiexec(num_ranks: int) -> list[str]:
    pytest.importorskip("mpi4py", reason="the ranks need mpi4py (requirements-dev.txt installs it)")
    from minivit.distributed.launch import mpiexec_command

    try:
        return mpiexec_command(num_ranks)
    except RuntimeError as error:
        pytest.skip(str(error))


def run_ranks(num_ranks: int, arguments: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """``mpiexec -n num_ranks python ARGUMENTS`` with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("MINIVIT_NUM_THREADS", None)  # each rank takes its share of the cores
    return subprocess.run([*mpiexec(num_ranks), sys.executable, *arguments], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def train_on_ranks(num_ranks: int, values: dict, report_dir: Path, resume: bool = False) -> list[dict]:
    """Train on ranks through the Python API (tests/distributed_worker.py); each rank's report."""
    report_dir.mkdir(parents=True, exist_ok=True)
    result = run_ranks(num_ranks, [str(WORKER), json.dumps(values), str(report_dir)] + (["--resume"] if resume else []))
    assert result.returncode == 0, result.stdout + result.stderr
    reports = []
    for rank in range(num_ranks):
        report = json.loads((report_dir / f"rank{rank}.json").read_text())
        with np.load(report_dir / f"rank{rank}.npz") as weights:
            report["weights"] = dict(weights)
        reports.append(report)
    return reports


def largest_difference(a: dict, b: dict) -> tuple[float, str]:
    assert sorted(a) == sorted(b)
    return max((float(np.abs(a[name].astype(np.float64) - b[name]).max()), name) for name in a)


def steps_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


# --- the proof: two ranks train what one process trains -----------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("num_ranks,precision,tolerance", [(2, "float64", 1e-12), (4, "float64", 1e-12),
                                                           (2, "float32", 1e-5), (4, "float32", 1e-5)])
def test_ranks_reach_the_weights_of_one_process(data_dir, tmp_path, num_ranks, precision, tolerance):
    """Augmentation (all of it) and dropout on: the ranks' shards get what one process gives them."""
    values = tiny_values(data_dir, tmp_path / "ranks", precision=precision, augment=EVERY_AUGMENTATION,
                         model=WITH_DROPOUT)
    reports = train_on_ranks(num_ranks, values, tmp_path / "reports")
    one_process = train(config_of({**values, "out": str(tmp_path / "one")}))

    assert [report["size"] for report in reports] == [num_ranks] * num_ranks
    assert reports[0]["summary"]["step"] == 6  # 6 AdamW steps
    # every rank holds the same weights, to the last bit (the same averaged gradient, the same step)
    for report in reports[1:]:
        assert largest_difference(reports[0]["weights"], report["weights"])[0] == 0.0
    # ... which are the single process's, and so is the checkpoint rank 0 wrote
    difference, name = largest_difference(reports[0]["weights"], read_checkpoint(tmp_path / "one" /
                                                                                 "checkpoint-last.npz")[1])
    assert difference <= tolerance, f"{name} differs by {difference:.3g} ({precision}, {num_ranks} ranks)"
    assert largest_difference(reports[0]["weights"], read_checkpoint(tmp_path / "ranks" /
                                                                     "checkpoint-last.npz")[1])[0] == 0.0
    # the logs are the whole batch's: losses and accuracies summed over the shards, validation over the shards
    ranks_log, one_log = steps_log(tmp_path / "ranks"), steps_log(tmp_path / "one")
    assert [row["step"] for row in ranks_log] == [row["step"] for row in one_log] == list(range(1, 7))  # (once)
    for ours, theirs in zip(ranks_log, one_log):
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=2e-5) and ours["lr"] == theirs["lr"]
        # (mixed targets: the accuracy counts argmax hits, which a near tie in float32 may flip)
        assert ours["accuracy"] == pytest.approx(theirs["accuracy"], abs=1.01 / 12 if precision == "float32" else 0)
    for report in reports:  # every rank knows the result
        assert report["summary"]["val_accuracy"] == one_process["val_accuracy"]
    # each rank ran on its share of the cores
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert [report["threads"] for report in reports] == [max(1, cores // num_ranks)] * num_ranks


@pytest.mark.slow
def test_a_run_resumes_on_another_number_of_ranks(data_dir, tmp_path):
    """Stopped on 2 ranks, continued in one process, finished on 4: the weights of one unbroken process."""
    values = tiny_values(data_dir, tmp_path / "resumed", epochs=3, precision="float64",
                         augment=EVERY_AUGMENTATION, model=WITH_DROPOUT)
    straight = train(config_of({**values, "out": str(tmp_path / "straight")}))
    stopped = train_on_ranks(2, {**values, "max_steps": 4}, tmp_path / "stopped-reports")
    assert stopped[0]["summary"]["step"] == 4 and not stopped[0]["summary"]["finished"]
    assert read_checkpoint(tmp_path / "resumed" / "checkpoint-last.npz")[0]["ranks"] == 2
    middle = train(config_of({**values, "max_steps": 7}), resume=True)
    assert middle["step"] == 7 and not middle["finished"]
    resumed = train_on_ranks(4, values, tmp_path / "resumed-reports", resume=True)
    assert resumed[0]["summary"]["finished"] and resumed[0]["summary"]["step"] == straight["step"] == 9

    weights = read_checkpoint(tmp_path / "straight" / "checkpoint-last.npz")[1]
    difference, name = largest_difference(resumed[0]["weights"], weights)
    assert difference <= 1e-12, f"{name} differs by {difference:.3g}"
    steps, straight_steps = steps_log(tmp_path / "resumed"), steps_log(tmp_path / "straight")
    assert [row["step"] for row in steps] == [row["step"] for row in straight_steps] == list(range(1, 10))
    for ours, theirs in zip(steps, straight_steps):
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-9) and ours["lr"] == theirs["lr"]


@pytest.mark.slow
def test_the_command_line_on_two_ranks_and_its_errors(data_dir, tmp_path):
    tiny = ["--data-dir", str(data_dir), "--image-size", "8", "--patch-size", "4", "--hidden-size", "16",
            "--num-hidden-layers", "1", "--num-attention-heads", "2", "--intermediate-size", "32",
            "--val-fraction", "0.25", "--no-progress", "--epochs", "1"]
    result = run_ranks(2, ["-m", "minivit.train", *tiny, "--batch-size", "12", "--out", str(tmp_path / "run"),
                           "--distributed", "--max-steps", "2"])
    assert result.returncode == 0, result.stderr
    summaries = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and json.loads(summaries[0])["step"] == 2  # rank 0 alone prints
    assert "continue with: mpiexec -n 2 python -m minivit.train --resume" in result.stderr

    # a global batch that does not divide among the ranks: one error line, no run folder left
    result = run_ranks(3, ["-m", "minivit.train", *tiny, "--batch-size", "8", "--out", str(tmp_path / "three"),
                           "--distributed"])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and errors == [
        "error: --batch-size 8 does not divide among 3 ranks: it is the global batch, and each rank takes an equal "
        "share of it. Choose a multiple of 3, such as 6 or 9, or start 1, 2, 4 or 8 ranks."]
    assert not (tmp_path / "three").exists()


@pytest.mark.slow
@pytest.mark.parametrize("precision,tolerance", [("float32", 1e-5), ("float16", 1e-4)])
def test_two_ranks_on_the_simulated_gpu_through_its_nccl(data_dir, tmp_path, precision, tolerance):
    """The NCCL path with two ranks, every augmentation and dropout on: the simulated NCCL moves the bytes
    between the processes, and the per-sample draws run on the (simulated) device.

    In float16 the ranks average their scaled float16 gradients (half the bytes of float32; NCCL's
    average multiplies by 1/N before it sums, so the sum cannot overflow where the mean would not),
    then unscale them into the float32 master gradients: the weights agree within 1e-4 (3e-5
    measured), but for the key biases, whose zero gradient is float16 rounding noise that AdamW
    scales up to steps of up to the learning rate (2.7e-3 measured; bounded by the rates' sum, 0.012).
    """
    values = tiny_values(data_dir, tmp_path / "ranks", backend="cupy-sim", precision=precision,
                         augment=EVERY_AUGMENTATION, model=WITH_DROPOUT)
    reports = train_on_ranks(2, values, tmp_path / "reports")
    assert reports[0]["description"] == "2 GPU ranks through NCCL"
    assert largest_difference(reports[0]["weights"], reports[1]["weights"])[0] == 0.0
    train(config_of({**values, "out": str(tmp_path / "one")}))
    ours, theirs = (read_checkpoint(tmp_path / run / "checkpoint-last.npz")[1] for run in ("ranks", "one"))
    key_biases = [name for name in ours if name.endswith("attention.k_proj.bias")]
    difference, name = largest_difference(*({name: weights[name] for name in weights if name not in key_biases}
                                            for weights in (ours, theirs)))
    assert difference <= tolerance, f"{name} differs by {difference:.3g}"
    rates = sum(row["lr"] for row in steps_log(tmp_path / "one"))
    assert largest_difference(*({name: weights[name] for name in key_biases} for weights in (ours, theirs)))[0] \
        <= (tolerance if precision == "float32" else rates)
    for row, one_row in zip(steps_log(tmp_path / "ranks"), steps_log(tmp_path / "one")):
        assert row["loss"] == pytest.approx(one_row["loss"], abs=1e-3)


# --- the NCCL path on the simulated GPU, one rank, in this process ----------------------------------------

def simulated_nccl_ranks():
    from minivit.distributed import simulated_nccl
    from minivit.distributed.nccl import NCCLCommunicator

    return NCCLCommunicator(SingleProcess(), simulated_nccl)


def test_the_simulated_nccl_all_reduce_is_one_launch_and_no_sync():
    backend.use("cupy-sim")
    communicator = simulated_nccl_ranks()
    gradient = backend.asarray(np.arange(10, dtype=np.float32))
    sim.reset_counters()
    communicator.allreduce_mean(gradient)
    communicator.broadcast(gradient)
    counts = sim.counters()
    assert counts["launches"] == 2 and counts["syncs"] == 0 and counts["to_host"] == 0
    assert counts["by_kind"] == {"kernel:nccl_all_reduce": 1, "kernel:nccl_broadcast": 1}
    np.testing.assert_array_equal(backend.to_numpy(gradient), np.arange(10))  # the mean of one rank's
    with pytest.raises(TypeError, match="contiguous arrays on the device"):
        communicator.allreduce_mean(np.zeros(3, dtype=np.float32))  # a host array
    with pytest.raises(TypeError, match="contiguous arrays on the device"):
        communicator.allreduce_mean(backend.asarray(np.zeros((4, 4), dtype=np.float32))[:, 0])


def test_the_simulated_nccl_reads_and_writes_the_memory_it_is_pointed_at():
    from minivit.distributed import simulated_nccl as nccl

    backend.use("cupy-sim")
    send = backend.asarray(np.array([1.5, -2.0, 3.0]))
    receive = backend.xp.zeros(3, dtype="float64")
    comm = nccl.NcclCommunicator(1, nccl.get_unique_id(), 0)
    comm.allReduce(send.data.ptr, receive.data.ptr, 3, nccl.NCCL_FLOAT64, nccl.NCCL_SUM, 0)
    np.testing.assert_array_equal(backend.to_numpy(receive), [1.5, -2.0, 3.0])
    with pytest.raises(ValueError, match="INVALID_RANK"):
        nccl.NcclCommunicator(1, nccl.get_unique_id(), 1)


def test_a_training_step_through_nccl_on_the_simulated_gpu(data_dir, tmp_path):
    """One rank through the NCCL communicator: the same run as without it, one all-reduce launch per
    step, and no host synchronisation inside the step."""
    values = tiny_values(data_dir, tmp_path / "nccl", backend="cupy-sim", epochs=1)
    seen = {}

    def count_a_step(trainer, step):
        if step == 1:
            sim.reset_counters()
        if step == 2:
            seen.update(sim.counters())

    train_with_nccl = Trainer(config_of(values), communicator=simulated_nccl_ranks(), on_step=count_a_step)
    assert train_with_nccl.comm.description == "1 GPU rank through NCCL"
    train_with_nccl.run()
    assert seen["by_phase"]["allreduce"] == 1 and seen["syncs"] == 0
    train(config_of({**values, "out": str(tmp_path / "plain")}))
    backend.use("numpy")
    assert largest_difference(read_checkpoint(tmp_path / "nccl" / "checkpoint-last.npz")[1],
                              read_checkpoint(tmp_path / "plain" / "checkpoint-last.npz")[1])[0] == 0.0


# --- the parts, each on its own ---------------------------------------------------------------------------

def test_the_shards_of_a_global_batch_are_the_batch():
    images = np.arange(40 * 3 * 2 * 2, dtype=np.uint8).reshape(40, 3, 2, 2)
    labels = np.arange(40) % 3
    whole = Batches(images, labels, batch_size=12, seed=5)
    for num_ranks in (2, 3, 4):
        ranks = [Batches(images, labels, 12, 5, rank, num_ranks) for rank in range(num_ranks)]
        for step in (0, 2, 4):  # epochs 0 and 1 (3 steps per epoch)
            shards = [batches.get(step) for batches in ranks]
            assert all(len(shard_labels) == 12 // num_ranks for _, shard_labels in shards)
            np.testing.assert_array_equal(np.concatenate([shard_images for shard_images, _ in shards]),
                                          whole.get(step)[0])
            np.testing.assert_array_equal(np.concatenate([shard_labels for _, shard_labels in shards]),
                                          whole.get(step)[1])


def test_a_global_batch_that_does_not_divide_among_the_ranks_is_refused():
    images, labels = np.zeros((40, 3, 2, 2), dtype=np.uint8), np.zeros(40, dtype=np.int64)
    with pytest.raises(ValueError, match=r"--batch-size 10 does not divide among 4 ranks: it is the global batch.*"
                                         r"multiple of 4, such as 8 or 12, or start 1, 2 or 5 ranks"):
        Batches(images, labels, 10, 0, rank=1, num_ranks=4)


def test_evaluation_shards_cover_the_set_once():
    for count in (0, 1, 7, 10):
        for size in (1, 2, 3, 4):
            parts = [shard(count, rank, size) for rank in range(size)]
            assert sum((list(range(count))[part] for part in parts), []) == list(range(count))
            assert max(part.stop - part.start for part in parts) - min(part.stop - part.start for part in parts) <= 1


def test_each_rank_takes_its_share_of_the_cores():
    assert cpu_share([[0, 1], [0, 1]]) == 1  # not bound: both see both cores
    assert cpu_share([[0], [1]]) == 1  # bound to a core each (Open MPI's default)
    assert cpu_share([list(range(16))] * 4) == 4
    assert cpu_share([[0, 1, 2]] * 2) == 1  # whole threads only
    assert cpu_share([[0]] * 3) == 1  # more ranks than cores: one thread each


def test_limit_threads_sets_blas_numba_and_minivit_threads(monkeypatch):
    from minivit.kernels import cpu, limit_threads

    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MINIVIT_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)  # limit_threads sets them for what loads later
    before = cpu.num_threads
    try:
        done = limit_threads(1)
        assert cpu.num_threads == 1 and os.environ["MINIVIT_NUM_THREADS"] == "1"
        assert "openblas" in done["openblas"] and done["numba"] in ("1 threads", "numba not installed")
    finally:
        limit_threads(before)


def test_mpiexec_command_adds_what_open_mpi_needs(tmp_path):
    from minivit.distributed.launch import mpiexec_command

    open_mpi, hydra = tmp_path / "openmpi-mpiexec", tmp_path / "mpich-mpiexec"
    open_mpi.write_text("#!/bin/sh\necho 'mpiexec (Open MPI) 5.0.11'\n")
    hydra.write_text("#!/bin/sh\necho 'HYDRA build details:'\n")
    for script in (open_mpi, hydra):
        script.chmod(0o755)
    as_root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    assert mpiexec_command(2, str(open_mpi)) == [str(open_mpi), "-n", "2", *as_root] + (
        ["--oversubscribe"] if (os.cpu_count() or 1) < 2 else [])
    assert mpiexec_command(1000, str(open_mpi))[-1] == "--oversubscribe"
    assert mpiexec_command(1000, str(hydra)) == [str(hydra), "-n", "1000"]


def test_distributed_without_mpi4py_says_what_to_install(data_dir, tmp_path, monkeypatch, capsys):
    from minivit import distributed

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if it were not installed
    monkeypatch.setattr(distributed, "_connected", {})
    argv = ["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--distributed", "--no-progress"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "--distributed needs mpi4py, which is not installed" in error
    assert "pip install -r requirements-distributed.txt" in error and "mpiexec -n 2" in error
    assert not (tmp_path / "run").exists()


def test_simulated_ranks_pass_copies_in_order_and_report_a_deadlock():
    from minivit.distributed.simulated_ranks import Deadlock, run_ranks

    def program(comm):
        if comm.rank == 0:
            message = np.zeros(3)
            comm.send(message, dest=1)
            message += 7  # the copy sent is not touched
            comm.send(message, dest=1)
            return comm.bytes_sent
        first, second = comm.recv(source=0), comm.recv(source=0)
        return first.tolist(), second.tolist()

    assert run_ranks(2, program) == [48, ([0.0, 0.0, 0.0], [7.0, 7.0, 7.0])]
    # a ring that passes its neighbour's value along: sendrecv sends before it waits
    assert run_ranks(4, lambda comm: int(comm.sendrecv(np.array(comm.rank), (comm.rank + 1) % 4,
                                                       (comm.rank - 1) % 4))) == [3, 0, 1, 2]
    with pytest.raises(Deadlock, match="rank 0 waited 0.2 s for a message from rank 1"):
        run_ranks(2, lambda comm: comm.recv(source=1 - comm.rank), timeout=0.2)
    with pytest.raises(ValueError, match="talks to the ranks 0 .. 1 other than itself"):
        run_ranks(2, lambda comm: comm.send(np.zeros(1), dest=comm.rank))


@pytest.mark.slow
def test_the_benchmark_runs_both_sides(tmp_path):
    """benchmarks/distributed_cpu.py end to end on a tiny model: a smoke run, not a measurement."""
    mpiexec(2)
    tiny = json.dumps({key: TINY_MODEL[key] for key in ("image_size", "patch_size", "hidden_size",
                                                       "num_hidden_layers", "num_attention_heads",
                                                       "intermediate_size")})
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "distributed_cpu.py"), "--model", tiny,
                             "--batch-size", "8", "--steps", "1", "--warmup", "1", "--rounds", "1", "--images", "400"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| one process | 1 x " in result.stdout and "| data parallel | 2 x 1 |" in result.stdout
    assert "machine:" in result.stdout and "the all-reduce alone" in result.stdout


@pytest.mark.gpu
def test_the_nccl_path_on_one_real_gpu(data_dir, tmp_path):
    """Where CuPy, a GPU and NCCL are present: CuPy's NCCL bindings, one rank (a GPU holds one rank)."""
    from conftest import HAS_CUPY

    if not HAS_CUPY:
        pytest.skip("CuPy with a GPU is not available here")
    from minivit.distributed.nccl import NCCLCommunicator, nccl_module

    try:
        nccl = nccl_module("cupy")
    except RuntimeError as error:
        pytest.skip(str(error))
    backend.use("cupy")
    communicator = NCCLCommunicator(SingleProcess(), nccl)
    gradient = backend.asarray(np.arange(10, dtype=np.float32))
    communicator.allreduce_mean(gradient)
    communicator.broadcast(gradient)
    np.testing.assert_array_equal(backend.to_numpy(gradient), np.arange(10))
    values = tiny_values(data_dir, tmp_path / "nccl", backend="cupy", epochs=1)
    Trainer(config_of(values), communicator=communicator).run()
    train(config_of({**values, "out": str(tmp_path / "plain")}))
    difference, name = largest_difference(read_checkpoint(tmp_path / "nccl" / "checkpoint-last.npz")[1],
                                          read_checkpoint(tmp_path / "plain" / "checkpoint-last.npz")[1])
    assert difference <= 1e-6, f"{name} differs by {difference:.3g}"


@pytest.mark.slow
def test_an_error_on_one_rank_ends_every_rank():
    """Rank 1 fails alone while rank 0 waits in an all-reduce: the job ends (MPI_Abort) instead of hanging."""
    program = ("import numpy as np\nfrom minivit.distributed import connect\ncomm = connect('numpy')\n"
               "if comm.rank == 1:\n    raise RuntimeError('rank 1 fails alone')\n"
               "comm.allreduce_sum(np.zeros(3))\n")
    result = run_ranks(2, ["-c", program], timeout=120)
    assert result.returncode != 0 and "rank 1 fails alone" in result.stderr
