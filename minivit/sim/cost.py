"""A cost model: a step's launch records (``minivit.sim.launches``) into predicted milliseconds on a named GPU.

Each launch costs the longest of five times, and never less than a floor:

    memory     bytes / (bandwidth x bandwidth_efficiency x min(1, blocks / SMs))
               (a launch with fewer blocks than SMs leaves SMs, and their share of the bandwidth, idle)
    arithmetic FLOPs / (the peak rate for its kind x efficiency): cuBLAS products at the FP32,
               TF32 or half (tensor-core) rate; everything else at the FP32 rate
    latency    serial iterations x latency_us (each iteration of a thread's loop waits for
               its load: what CuPy's generic ``sum(axis=0)`` over 33,280 rows pays)
    shared     shared-memory loads (warp instructions) at one per SM per clock x shared_efficiency,
               in waves of the blocks an SM holds at once (by its threads, shared memory and
               registers): what a kernel that loops over tiles in shared memory pays (attention.cu)
    floor      launch_floor_us: the smallest kernel's time on the device

The device's time for a step is the sum over its launches; the CPU's is ``host_us`` per
launch (CuPy's Python and the driver). A step takes the longer of the two.

``GPUS`` holds the data sheets; ``CONSTANTS`` the efficiencies and latencies, fitted to what
an H200 measured (``benchmarks/gpu_cost_model.py --fit``; before and after in
``benchmarks/results/gpu-cost-model-h200-2026-12-04.md``). These are estimates for steering work, not
measurements: the next GPU session measures, and the constants are fitted again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class GPU:
    """A GPU's data sheet (dense rates, no sparsity)."""

    name: str
    bandwidth: float  # bytes per second, device memory
    fp32: float  # FLOP/s on the CUDA cores
    tf32: float  # FLOP/s, tensor cores, float32 products with TF32 on
    half: float  # FLOP/s, tensor cores, float16 / bfloat16
    sms: int
    clock: float = 1.98e9  # Hz, boost
    shared_per_sm: int = 228 * 1024  # bytes of shared memory an SM shares among its blocks
    registers_per_sm: int = 65536
    threads_per_sm: int = 2048


GPUS = {
    "H100": GPU("NVIDIA H100 SXM", 3.35e12, 67e12, 494e12, 989e12, 132),
    "H200": GPU("NVIDIA H200", 4.8e12, 67e12, 494e12, 989e12, 132),
}


@dataclass(frozen=True)
class Constants:
    """What a GPU achieves of its data sheet, and what a launch costs beyond its work."""

    bandwidth_efficiency: float = 0.8
    fp32_efficiency: float = 0.7  # of the FP32 rate, cuBLAS float32 products
    tensor_efficiency: float = 0.5  # of the TF32 / half rate, cuBLAS products on tensor cores
    latency_us: float = 0.5  # per serial iteration of a thread's loop
    launch_floor_us: float = 2.5
    host_us: float = 8.0  # CPU time per launch
    shared_efficiency: float = 0.7  # of one shared-memory load instruction per SM per clock


DATASHEET = Constants()  # the defaults, before any fit
# Fitted to everything the H200 measured on 2026-12-04 (104 rows: training and inference steps at batch 128
# and 512 in float32, TF32 and float16, the profile's phases and operations, each suspect microbenchmark;
# benchmarks/results/gpu-cost-model-h200-2026-12-04.md: the command, the error before and after, row by
# row). The launch floor sits at its upper bound: small launches cost more than the model's floor says.
CONSTANTS = Constants(bandwidth_efficiency=0.467, fp32_efficiency=0.491, tensor_efficiency=0.3, latency_us=0.241,
                      launch_floor_us=10.0, host_us=27.1, shared_efficiency=0.655)


def resident_blocks(record, gpu: GPU) -> int:
    """Blocks of this launch an SM holds at once: the fewest its threads, shared memory and registers allow."""
    limits = [32, gpu.threads_per_sm // max(1, record.block)]
    if record.shared_bytes:
        limits.append(gpu.shared_per_sm // (record.shared_bytes + 1024))  # (1 KB reserved per block)
    if record.registers:
        limits.append(gpu.registers_per_sm // (record.registers * record.block))
    return max(1, min(limits))


def shared_us(record, gpu: GPU, constants: Constants = CONSTANTS) -> float:
    """Microseconds of shared-memory loads: whole waves of resident blocks, each SM one load a clock."""
    if not record.shared_loads:
        return 0.0
    resident = resident_blocks(record, gpu)
    waves = -(-record.grid // (gpu.sms * resident))
    per_block = record.shared_loads / record.grid
    return waves * resident * per_block / (gpu.clock * constants.shared_efficiency) * 1e6


def launch_us(record, gpu: GPU, constants: Constants = CONSTANTS, tf32: bool = False) -> float:
    """Predicted microseconds on the device for one launch."""
    occupancy = min(1.0, record.grid / gpu.sms)
    memory = record.bytes / (gpu.bandwidth * constants.bandwidth_efficiency * occupancy) * 1e6
    if record.matmul and record.dtype == "float16":
        rate = gpu.half * constants.tensor_efficiency
    elif record.matmul and tf32 and record.dtype == "float32":
        rate = gpu.tf32 * constants.tensor_efficiency
    elif record.matmul and record.dtype == "float64":
        rate = gpu.fp32 * constants.fp32_efficiency  # (an H100's FP64 tensor rate is about the FP32 one)
    elif record.matmul:
        rate = gpu.fp32 * constants.fp32_efficiency
    else:
        rate = gpu.fp32 * occupancy
    arithmetic = record.flops / rate * 1e6
    latency = record.serial * constants.latency_us
    return max(constants.launch_floor_us, memory, arithmetic, latency, shared_us(record, gpu, constants))


@dataclass
class Prediction:
    """Predicted milliseconds: per phase and per operation (call site) on the device, the host's time, the step."""

    device_ms: float
    host_ms: float
    by_phase: dict
    by_site: dict  # (phase, site, kind) -> (launches, ms)
    launches: int

    @property
    def step_ms(self) -> float:
        return max(self.device_ms, self.host_ms)


def predict(records, gpu: GPU | str = "H200", constants: Constants = CONSTANTS, tf32: bool = False) -> Prediction:
    """The step's predicted time from its launch records."""
    gpu = GPUS[gpu] if isinstance(gpu, str) else gpu
    by_phase: dict = defaultdict(float)
    by_site: dict = defaultdict(lambda: [0, 0.0])
    for record in records:
        ms = launch_us(record, gpu, constants, tf32) / 1000
        by_phase[record.phase] += ms
        entry = by_site[(record.phase, record.site, record.kind)]
        entry[0] += 1
        entry[1] += ms
    device = sum(by_phase.values())
    return Prediction(device, len(records) * constants.host_us / 1000, dict(by_phase),
                      {key: tuple(value) for key, value in by_site.items()}, len(records))


def offenders(records, sms: int = 132, megabytes: float = 1.0, max_serial: int = 256) -> list:
    """Launches that move more than ``megabytes`` with fewer blocks than ``sms``, or whose threads
    loop more than ``max_serial`` times in sequence: the rule STYLE.md states for GPU kernels."""
    return [r for r in records
            if (r.bytes > megabytes * 1e6 and r.grid < sms and not r.matmul) or r.serial > max_serial]


def fit(cases, gpu: GPU | str = "H200", start: Constants = DATASHEET) -> Constants:
    """Constants that minimise the squared log error of ``predict`` over ``cases``:
    (records, tf32, measured ms, "step" or a phase name). Needs SciPy."""
    import math

    from scipy.optimize import least_squares

    names = ("bandwidth_efficiency", "fp32_efficiency", "tensor_efficiency", "latency_us", "launch_floor_us",
             "host_us", "shared_efficiency")
    lower = (0.2, 0.1, 0.05, 0.01, 0.5, 1.0, 0.1)
    upper = (1.0, 1.0, 1.0, 5.0, 10.0, 60.0, 1.0)

    def constants_of(values) -> Constants:
        return replace(start, **dict(zip(names, values)))

    def residuals(values):
        constants = constants_of(values)
        errors = []
        for records, tf32, measured_ms, what in cases:
            prediction = predict(records, gpu, constants, tf32)
            predicted = prediction.step_ms if what == "step" else prediction.by_phase.get(what, 0.0)
            errors.append(math.log(max(predicted, 1e-6) / measured_ms))
        return errors

    result = least_squares(residuals, [getattr(start, name) for name in names], bounds=(lower, upper))
    return constants_of(result.x)
