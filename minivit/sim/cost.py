"""A cost model: a step's launch records (``minivit.sim.launches``) into predicted milliseconds on a named GPU.

Each launch costs the longest of four times, and never less than a floor:

    memory     bytes / (bandwidth x bandwidth_efficiency x min(1, blocks / SMs))
               (a launch with fewer blocks than SMs leaves SMs, and their share of the bandwidth, idle)
    arithmetic FLOPs / (the peak rate for its kind x efficiency): cuBLAS products at the FP32,
               TF32 or half (tensor-core) rate; everything else at the FP32 rate
    latency    serial iterations x latency_us (each iteration of a thread's loop waits for
               its load: what CuPy's generic ``sum(axis=0)`` over 33,280 rows pays)
    floor      launch_floor_us: the smallest kernel's time on the device

The device's time for a step is the sum over its launches; the CPU's is ``host_us`` per
launch (CuPy's Python and the driver). A step takes the longer of the two.

``GPUS`` holds the data sheets; ``CONSTANTS`` the efficiencies and latencies, fitted to what
an H200 measured (``benchmarks/gpu_cost_model.py --fit``; before and after in
``benchmarks/results/gpu-cost-model.md``). These are estimates for steering work, not
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


DATASHEET = Constants()  # the defaults, before any fit
# Fitted to the H200's step and phase times of 2026-11-26 (benchmarks/results/gpu-cost-model.md: the
# command, the error before and after). Two constants sit at their bounds (the tensor-core efficiency
# at its floor: TF32 bought little on that H200; the launch floor at its ceiling): the model is
# short of something there, which per-operation measurements (gpu_check's suspects stage) can tell.
CONSTANTS = Constants(bandwidth_efficiency=1.0, fp32_efficiency=0.34, tensor_efficiency=0.051, latency_us=0.225,
                      launch_floor_us=10.0, host_us=40.0)


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
    return max(constants.launch_floor_us, memory, arithmetic, latency)


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
             "host_us")
    lower = (0.2, 0.1, 0.05, 0.01, 0.5, 1.0)
    upper = (1.0, 1.0, 1.0, 5.0, 10.0, 60.0)

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
