"""Lesson 9, the GPU: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .diagnosis import NotYet, check_array, check_true, check_value
from .exercises import solution

# --- checks ---------------------------------------------------------------------------------------

def check_seconds_per_call(seconds_per_call) -> None:
    calls = []

    def sleepy():
        calls.append(time.perf_counter())
        time.sleep(0.02)

    seconds = seconds_per_call(sleepy, repeats=3)
    check_value(len(calls), 4, "one warm-up call, then three timed calls",
                mistakes={"timing without a warm-up call": 3, "timing twice per repeat": 7})
    what = "about 0.02 s per call (the function sleeps 20 ms)"
    if seconds is None or np.ndim(seconds) != 0:
        raise NotYet(what, [f"yours is {seconds!r}: return one number, the median seconds per call"])
    lines = [f"yours {float(seconds):.4f} s, expected about 0.0200 s"]
    if 0.019 < seconds < 0.05:
        print(f"PASS: {what} ({lines[0]})")
        return
    if 0.055 < seconds < 0.3:
        lines.append("that is about three calls' worth: did you return the total instead of the time per call?")
    elif seconds < 0.019:
        lines.append("less than the sleep itself: did you read the clock before the call finished, or divide twice?")
    raise NotYet(what, lines)


def check_gelu_kernel(gelu_kernel_parts) -> None:
    """Compile the learner's GELU ElementwiseKernel with NVRTC (no GPU needed), evaluate its operation
    as host C on 10,001 points against the exact GELU (no GPU needed: the tanh approximation fails
    here), and where a GPU is present, run it there and compare again."""
    what = "your GELU ElementwiseKernel"
    parts = gelu_kernel_parts()
    if not isinstance(parts, dict) or set(parts) != {"in_params", "out_params", "operation", "name"}:
        raise NotYet(what, ["return a dict with in_params, out_params, operation and name (cupy.ElementwiseKernel's "
                            "four arguments)"])
    try:
        from minivit.kernels.nvrtc import CompileError, compile_elementwise
    except ImportError as error:
        print(f"SKIPPED: {what}: this engine has no minivit.kernels.nvrtc ({error}).")
        return
    try:
        compile_elementwise(parts["in_params"], parts["out_params"], parts["operation"], parts["name"])
    except CompileError as error:  # the compiler's log: the learner's CUDA C
        log = [line for line in str(error).splitlines() if line.strip()][:20]
        raise NotYet(f"{what} compiles with NVRTC", log) from None
    except RuntimeError as error:  # no CuPy, or no NVRTC library: nothing to compile with here
        print(f"SKIPPED: {what}: compiling it needs CuPy's NVRTC, which this machine lacks ({error}). "
              "The numerical check against the reference GELU needs a GPU as well.")
        return
    print(f"PASS: {what} compiles with NVRTC (CUDA C checked without a GPU)")
    x = np.linspace(-6, 6, 10001)
    expected = x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    mistakes = {"the tanh approximation (gelu_new), not the exact erf form":
                0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
                "x * erf(x / sqrt 2), without the (1 + ...) / 2": x * np.vectorize(math.erf)(x / math.sqrt(2)),
                "x * Phi(x) with Phi(x) = (1 + erf(x)) / 2, the 1/sqrt(2) left out":
                0.5 * x * (1 + np.vectorize(math.erf)(x))}
    on_host = _elementwise_on_host(parts, x)
    if isinstance(on_host, str):
        print(f"SKIPPED: the numbers of your kernel on this machine's CPU: {on_host}")
    else:
        check_array(on_host, expected, "your kernel's operation, compiled as C for this CPU, equals the exact GELU "
                    "on 10,001 points in [-6, 6]", "gelu(x)", rtol=1e-12, atol=1e-12, mistakes=mistakes)
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if not has_gpu:
        print("SKIPPED: running your kernel on a GPU (this machine has none); its operation's numbers were "
              "checked on the CPU above.")
        return
    kernel = cupy.ElementwiseKernel(parts["in_params"], parts["out_params"], parts["operation"], parts["name"])
    yours = cupy.asnumpy(kernel(cupy.asarray(x)))
    check_array(yours, expected, "your kernel on the GPU equals the exact GELU", "gelu(x)", rtol=1e-12, atol=1e-12,
                mistakes=mistakes)


# What CUDA offers an elementwise operation that the host's C library names otherwise.
_CUDA_ON_HOST = """
#include <math.h>
#ifndef M_SQRT1_2
#define M_SQRT1_2 0.70710678118654752440
#endif
static double normcdf(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }
static float normcdff(float x) { return 0.5f * erfcf(-x * (float)M_SQRT1_2); }
static double rsqrt(double x) { return 1.0 / sqrt(x); }
static float rsqrtf(float x) { return 1.0f / sqrtf(x); }
#define __expf expf
#define __logf logf
#define __fdividef(a, b) ((a) / (b))
"""
_C_TYPES = {"T": "double", "float64": "double", "double": "double", "float32": "float", "float": "float"}


def _elementwise_on_host(parts, x):
    """Evaluate an ElementwiseKernel's operation (one input, one output) as plain C on this machine's
    CPU: the operation's text goes into a loop, compiled with the system's C compiler and called
    through ctypes. No GPU needed: the same C expressions, the host's libm. Returns the outputs, or a
    string saying why it could not run (no compiler, a parameter list it does not handle)."""
    import ctypes
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    def parameter(text):
        words = text.replace(",", " ").split()
        if len(words) != 2 or words[0] not in _C_TYPES:
            return None
        return _C_TYPES[words[0]], words[1]

    inputs, outputs = parameter(parts["in_params"]), parameter(parts["out_params"])
    if inputs is None or outputs is None:
        return (f"in_params {parts['in_params']!r} and out_params {parts['out_params']!r}: this check reads one "
                "input and one output, each 'T name' or 'float64 name'")
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return "this machine has no C compiler (cc, gcc or clang)"
    (in_type, in_name), (out_type, out_name) = inputs, outputs
    source = (_CUDA_ON_HOST + "typedef double T;\n"
              f"void run(const double *in, double *out, long n) {{\n"
              f"  for (long i = 0; i < n; ++i) {{\n    {in_type} {in_name} = ({in_type})in[i];\n"
              f"    {out_type} {out_name};\n    {parts['operation']};\n    out[i] = (double){out_name};\n  }}\n}}\n")
    with tempfile.TemporaryDirectory() as folder:
        c_file, library = Path(folder) / "kernel.c", Path(folder) / "kernel.so"
        c_file.write_text(source)
        built = subprocess.run([compiler, "-O1", "-shared", "-fPIC", "-o", str(library), str(c_file), "-lm"],
                               capture_output=True, text=True)
        if built.returncode != 0:
            log = [line for line in built.stderr.splitlines() if "error" in line][:3]
            return f"as host C it does not compile ({'; '.join(log) or built.stderr[:200]})"
        run = ctypes.CDLL(str(library)).run
        values = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty_like(values)
        pointer = ctypes.POINTER(ctypes.c_double)
        run.argtypes = [pointer, pointer, ctypes.c_long]
        run(values.ctypes.data_as(pointer), out.ctypes.data_as(pointer), values.size)
    return out


def check_train_steps(train_steps) -> None:
    """On the simulated GPU: the losses of a few steps, and how often the loop made the host wait."""
    import minivit
    from minivit import backend, optim
    from minivit.ops import cross_entropy_backward, cross_entropy_forward

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=32, num_labels=4)
    host_images = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype("float32")
    host_labels = np.arange(8) % 4
    steps, read_every = 8, 4
    previous = backend.name
    try:
        backend.use("cupy-sim")
        model = minivit.ViTForImageClassification(config, seed=0)
        optimizer = optim.AdamW(model.named_parameters(), lr=1e-3)
        images, labels = backend.asarray(host_images), backend.asarray(host_labels)
        backend.reset_sim_counters()
        losses = train_steps(model, optimizer, images, labels, steps, read_every)
        counters = backend.sim_counters()
        reference = minivit.ViTForImageClassification(config, seed=0)
        reference_optimizer = optim.AdamW(reference.named_parameters(), lr=1e-3)
        expected = []
        for _ in range(steps):
            reference_optimizer.zero_grad()
            loss, cache = cross_entropy_forward(reference.forward(images), labels)
            reference.backward(cross_entropy_backward(1.0, cache))
            reference_optimizer.step()
            expected.append(loss)
        expected = backend.to_numpy(backend.xp.stack(expected))
    finally:
        backend.use(previous)
    what = f"train_steps: {steps} steps, the loss read every {read_every}"
    if losses is None or len(losses) != steps:
        raise NotYet(what, [f"return the {steps} losses, one float per step (yours: "
                            f"{'None' if losses is None else len(losses)})"])
    try:
        losses = np.array([float(loss) for loss in losses])
    except TypeError:
        raise NotYet(what, ["return host numbers (floats), read with backend.to_numpy: a simulated GPU "
                            "array refuses float() outside the loop too"]) from None
    check_array(losses, expected, f"{what}: the losses", "losses", rtol=1e-5)
    allowed = math.ceil(steps / read_every)
    sites = sorted(set(counters.get("sync_sites", [])))
    hint = ""
    if counters["syncs"] >= steps:
        hint = ("at least one synchronisation per step: a float(loss) or .item() inside the loop? Keep the "
                "losses on the device and read them together every read_every steps")
    check_true(counters["syncs"] <= allowed, f"at most {allowed} host synchronisations in {steps} steps",
               yours=counters["syncs"], expected=f"<= {allowed}",
               hint=hint + (f" (they came from {', '.join(sites[:4])})" if sites else ""))


# --- solutions ------------------------------------------------------------------------------------

@solution
def seconds_per_call(function, repeats=5):
    import time

    from minivit import backend

    function()
    backend.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        backend.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@solution
def train_steps(model, optimizer, images, labels, steps, read_every):
    from minivit import backend
    from minivit.ops import cross_entropy_backward, cross_entropy_forward

    losses, pending = [], []
    for step in range(steps):
        optimizer.zero_grad()
        loss, cache = cross_entropy_forward(model.forward(images), labels)
        model.backward(cross_entropy_backward(1.0, cache))
        optimizer.step()
        pending.append(loss)  # stays on the device: no waiting here
        if len(pending) == read_every or step == steps - 1:
            losses += [float(value) for value in backend.to_numpy(backend.xp.stack(pending))]  # one copy
            pending = []
    return losses


@solution
def gelu_kernel_parts():
    return {"in_params": "T x", "out_params": "T y",
            "operation": "y = x * normcdf(x)",  # Phi(x) = (1 + erf(x / sqrt 2)) / 2 is CUDA's normcdf
            "name": "gelu_exact_forward"}


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""For one image each operation is a tiny kernel: the time is launch overhead (a few
    microseconds each, thousands per step) and host-device traffic, not arithmetic. A CPU runs
    the same small operations without launches, so it can be faster until the batch is large
    enough to fill the GPU.""",
    r"""A synchronisation empties the queue: the host waits for the 3 queued steps (60 ms) and then
    the GPU waits for the host to queue more. Once per step it costs the pipelining: the GPU idles
    while the host issues the next step's launches (a few ms with thousands of launches), so
    several ms to the full launch time per step. Read the loss every 50 steps and the cost is
    paid once per 50.""",
    r"""The elementwise chains first: GELU forward and backward, LayerNorm, the softmax with its
    scale, the optimizer update. Each is many launches and memory passes and one fused kernel.
    Test each against the reference (float64 where it supports it, and float32 within a stated
    tolerance), forward and backward, on awkward shapes, as the fused CPU kernels are tested.""",
]
