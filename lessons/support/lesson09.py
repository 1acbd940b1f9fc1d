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

from .diagnosis import NotYet, check_array, check_true, check_value, diagnose
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


# --- Exercise 4: LayerNorm as a RawKernel, one warp per row ---------------------------------------

LAYERNORM_KERNEL = "layernorm_warp"
LAYERNORM_PARAMETERS = [("const float*", "x"), ("const float*", "gamma"), ("const float*", "beta"),
                        ("float*", "out"), ("int", "rows"), ("int", "D"), ("float", "eps")]
LAYERNORM_SIGNATURE = ('extern "C" __global__ void layernorm_warp(const float* x, const float* gamma, '
                       "const float* beta, float* out, int rows, int D, float eps)")
THREADS_PER_BLOCK = 128  # four warps: four rows per block
# (rows, D): a whole warp's worth, a width that is no multiple of 32, fewer columns than lanes, a long row;
# row counts that leave the last block with idle warps
LAYERNORM_CASES = ((6, 32), (5, 100), (3, 7), (5, 1000))
LAYERNORM_EPS = 1e-2  # large, so that where eps goes shows in the numbers
HARD_ROW = 1  # its mean (100) is large against its spread (0.1): mean(x^2) - mean^2 cancels there in float32


def layernorm_blocks(rows: int) -> int:
    """The grid for ``rows`` rows: one warp per row, THREADS_PER_BLOCK / 32 rows per block."""
    return -(-rows // (THREADS_PER_BLOCK // 32))


def _layernorm_inputs(rows: int, D: int, seed: int = 0):
    """float32 rows of different means and spreads (row HARD_ROW: mean 100, spread 0.1), gamma, beta."""
    rng = np.random.default_rng(seed + D)
    scales = np.geomspace(0.1, 4.0, rows)[:, None]
    means = rng.uniform(-1, 1, (rows, 1))
    scales[HARD_ROW], means[HARD_ROW] = 0.1, 100.0
    x = (means + scales * rng.standard_normal((rows, D))).astype(np.float32)  # (rows, D)
    gamma = (1 + 0.5 * rng.standard_normal(D)).astype(np.float32)  # (D,)
    beta = (0.5 * rng.standard_normal(D)).astype(np.float32)  # (D,)
    return x, gamma, beta


def _layernorm_mistakes(x, gamma, beta, eps):
    """{what the slip is: what it computes} for one (rows, D) input, in float64."""
    x, gamma, beta = (np.asarray(a, dtype=np.float64) for a in (x, gamma, beta))
    D = x.shape[-1]
    mean = x.mean(-1, keepdims=True)  # (rows, 1)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)  # (rows, 1)

    def normalised(centre, rstd):
        return (x - centre) * rstd * gamma + beta

    by_lanes_mean = x.sum(-1, keepdims=True) / 32
    by_lanes_variance = ((x - by_lanes_mean) ** 2).sum(-1, keepdims=True) / 32
    return {
        "the variance without the mean, mean(x^2) instead of mean((x - mean)^2)":
            normalised(mean, 1 / np.sqrt((x**2).mean(-1, keepdims=True) + eps)),
        "eps outside the square root, 1 / (sqrt(var) + eps)": normalised(mean, 1 / (np.sqrt(variance) + eps)),
        "eps added after the inverse square root, rsqrt(var) + eps": normalised(mean, 1 / np.sqrt(variance) + eps),
        "leaving eps out, 1 / sqrt(var)": normalised(mean, 1 / np.sqrt(variance)),
        "multiplying by sqrt(var + eps) instead of dividing": normalised(mean, np.sqrt(variance + eps)),
        "the unbiased variance (the sum of squares divided by D - 1, not D)":
            normalised(mean, 1 / np.sqrt(variance * D / (D - 1) + eps)) if D > 1 else np.full_like(x, np.nan),
        "dividing the sums by 32 (the lanes) instead of D":
            normalised(by_lanes_mean, 1 / np.sqrt(by_lanes_variance + eps)),
        "dividing the row's sum by 32 (the lanes) instead of D, for the mean":
            normalised(by_lanes_mean, 1 / np.sqrt(((x - by_lanes_mean) ** 2).mean(-1, keepdims=True) + eps)),
        "leaving out gamma and beta": (x - mean) / np.sqrt(variance + eps),
        "adding gamma and multiplying by beta": (x - mean) / np.sqrt(variance + eps) * beta + gamma,
    }


def _shuffle_hints(shuffles) -> list[str]:
    """What the shuffles of one warp (HostRun.shuffles) say about its two reductions."""
    exchanges = [(kind, argument) for kind, argument in shuffles if kind != "syncwarp"]
    if not exchanges:
        return ["no lane exchanged a value with another (no __shfl_xor_sync ran): each lane's sum covers only "
                "its own columns. Reduce across the warp: for offset = 16, 8, 4, 2, 1: "
                "sum += __shfl_xor_sync(0xffffffff, sum, offset)"]
    hints = []
    steps = [1, 2, 4, 8, 16]
    for kind in ("xor", "down"):
        counts = {step: sum(1 for k, argument in exchanges if k == kind and argument == step) for step in steps}
        most = max(counts.values())
        missing = [step for step in steps if counts[step] < most]
        if most and missing:
            used = ", ".join(f"{step} ({counts[step]}x)" for step in reversed(steps))
            hints.append(f"a reduction step is missing: warp 0's __shfl_{kind}_sync offsets were {used}; offset "
                         f"{' and '.join(map(str, missing))} ran fewer times than the others, so a reduction "
                         f"without it adds up only part of the warp's lanes. Halve the offset from 16 down to 1 "
                         "(the loop condition offset > 0, not offset > 1)")
        if most == 1 and not missing and kind == "xor":
            hints.append("the offsets 16, 8, 4, 2, 1 ran once: one reduction, where LayerNorm needs two (the sum "
                         "for the mean, then the sum of squared differences for the variance)")
    if any(kind == "down" for kind, _ in exchanges) and not any(kind == "index" for kind, _ in exchanges):
        hints.append("with __shfl_down_sync only lane 0 ends with the whole sum; the other lanes hold partial "
                     "sums. Broadcast it (__shfl_sync(0xffffffff, sum, 0)), or use __shfl_xor_sync, after which "
                     "every lane holds the total")
    return hints


def _run_problem(run, rows: int, D: int) -> list[str]:
    """The hint for a launch that did not finish (HostRun.error), naming the row and lane."""
    fault = run.fault
    if fault is not None:
        thread = fault["block"] * THREADS_PER_BLOCK + fault["thread"]
        row, lane = thread // 32, thread % 32
        array, index = fault["array"], fault["index"]
        touched = f"{array}[{index}], past the end of {array} ({fault['count']} elements)"
        if row >= rows:
            return [f"reading out of bounds: the warp of row {row} (lane {lane}) touched {touched}; there are "
                    f"only {rows} rows. The last block has warps with no row: return early, "
                    "if (row >= rows) return;, before anything is read"]
        column = index - row * D if array in ("x", "out") else index
        return [f"reading out of bounds: lane {lane} of row {row} touched {touched}: column {column} of a row of "
                f"D = {D} columns. A lane's columns are lane, lane + 32, ... while they are below D: for D not a "
                "multiple of 32 (or more than 32 * your loop's count) the loop condition must be c < D"]
    if "DIVERGED" in (run.error or "") or "LEFT" in (run.error or ""):
        return [f"the lanes of a warp did not meet at the same shuffle ({run.error.split(':', 1)[1].strip()}). "
                "Every lane named in the mask must reach each __shfl_xor_sync: is a shuffle inside a loop whose "
                "count depends on the lane (c < D), or after a return some lanes take? Reduce after the loop"]
    return [f"the launch did not finish: {run.error}"]


def check_layernorm_kernel(layernorm_kernel_source) -> None:
    """Compile the learner's LayerNorm RawKernel with NVRTC (no GPU needed), run it on this CPU warp by
    warp (support.cuda_on_host: 32 lanes in lockstep, the shuffles exchanged as on a GPU, every array
    ending at memory the process may not touch) on LAYERNORM_CASES against LayerNorm in float64, and
    where a GPU is present run it there too."""
    import re

    from .cuda_on_host import HostCompileError, HostKernel

    what = "your LayerNorm RawKernel"
    source = layernorm_kernel_source()
    if not isinstance(source, str) or not re.search(r'extern\s+"C"\s+__global__\s+void\s+layernorm_warp\s*\(',
                                                    source):
        raise NotYet(what, [f"return the kernel's CUDA C as one string that defines {LAYERNORM_SIGNATURE}"])
    try:
        from minivit.kernels.nvrtc import CompileError, compile_check
    except ImportError as error:
        compile_check = None
        print(f"SKIPPED: compiling {what} with NVRTC: this engine has no minivit.kernels.nvrtc ({error}).")
    if compile_check is not None:
        try:
            compile_check(source, "layernorm_warp.cu")
            print(f"PASS: {what} compiles with NVRTC (CUDA C checked without a GPU)")
        except CompileError as error:
            log = [line for line in str(error).splitlines() if line.strip()][:20]
            raise NotYet(f"{what} compiles with NVRTC", log) from None
        except RuntimeError as error:
            print(f"SKIPPED: compiling {what} with NVRTC, which this machine lacks ({error}).")
    try:
        kernel = HostKernel(source, LAYERNORM_KERNEL, LAYERNORM_PARAMETERS)
    except HostCompileError as error:
        if "no C++ compiler" in str(error):
            print(f"SKIPPED: running {what} on this CPU: {error}.")
            return
        raise NotYet(f"{what} compiles as C++ for this CPU (to run it warp by warp)",
                     str(error).splitlines()) from None
    expected_what = (f"{what}, run on this CPU warp by warp (32 lanes in lockstep, the shuffles exchanged as on a "
                     f"GPU), equals LayerNorm (eps = {LAYERNORM_EPS})")
    passed, shuffles = [], []
    for rows, D in LAYERNORM_CASES:
        x, gamma, beta = _layernorm_inputs(rows, D)
        run = kernel.launch(layernorm_blocks(rows), THREADS_PER_BLOCK,
                            dict(x=x, gamma=gamma, beta=beta, out=np.full((rows, D), np.nan), rows=rows, D=D,
                                 eps=LAYERNORM_EPS))
        case = f"{expected_what}, on {rows} rows of D = {D}"
        if run.error:
            raise NotYet(case, _run_problem(run, rows, D))
        expected = layernorm_reference(x, gamma, beta, LAYERNORM_EPS)
        mistakes = _layernorm_mistakes(x, gamma, beta, LAYERNORM_EPS)
        yours = run.arrays["out"]
        lines = diagnose(yours, expected, "out", mistakes=mistakes, rtol=1e-4, atol=1e-5)
        if lines:
            row_ok = [bool(np.all(np.abs(yours[r] - expected[r]) <= 1e-5 + 1e-4 * np.abs(expected[r]).max()))
                      for r in range(rows)]
            extra = _shuffle_hints(run.shuffles)
            if not extra and row_ok.count(False) == 1 and not row_ok[HARD_ROW]:
                extra.append(f"every row is right but row {HARD_ROW}, whose mean (100) is large against its spread "
                             "(0.1): in float32, mean(x^2) - mean^2 cancels most of the variance's digits. Subtract "
                             "the mean first: a second pass over the row, sum((x - mean)^2)")
            named = any(line.startswith("this is what") for line in lines)
            longest_passed = max((d for _, d in passed), default=0)
            if not extra and not named and passed and longest_passed <= 32 * 8 and D > longest_passed:
                extra.append(f"right for D up to {longest_passed}, wrong for D = {D}: does each lane read "
                             "a fixed number of columns? Stride over the whole row: for (c = lane; c < D; c += 32)")
            raise NotYet(case, extra + lines)
        passed.append((rows, D))
        shuffles = run.shuffles
    if not any(kind != "syncwarp" for kind, _ in shuffles):
        raise NotYet(what, ["the numbers are right, but no __shfl_xor_sync ran: this exercise is the warp "
                            "reduction. Let every lane sum its columns, then add the 32 partial sums with five "
                            "shuffles (offsets 16, 8, 4, 2, 1)"])
    offsets = ", ".join(f"{kind} {argument}" for kind, argument in shuffles)
    print(f"PASS: {expected_what}, on {len(LAYERNORM_CASES)} shapes (rows, D) = "
          f"{', '.join(map(str, LAYERNORM_CASES))}, within 1e-4; warp 0 shuffled {offsets}")
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if not has_gpu:
        print("SKIPPED: running your kernel on a GPU (this machine has none); it ran on the CPU above, warp by warp.")
        return
    gpu_kernel = cupy.RawKernel(source, LAYERNORM_KERNEL)
    for rows, D in LAYERNORM_CASES:
        x, gamma, beta = _layernorm_inputs(rows, D)
        out = cupy.full((rows, D), cupy.nan, dtype=cupy.float32)
        gpu_kernel((layernorm_blocks(rows),), (THREADS_PER_BLOCK,),
                   (cupy.asarray(x), cupy.asarray(gamma), cupy.asarray(beta), out, np.int32(rows), np.int32(D),
                    np.float32(LAYERNORM_EPS)))
        expected = layernorm_reference(x, gamma, beta, LAYERNORM_EPS)
        check_array(cupy.asnumpy(out), expected, f"your kernel on the GPU equals LayerNorm on {rows} rows of D = {D}",
                    "out", rtol=1e-4, atol=1e-5)


def layernorm_reference(x, gamma, beta, eps):
    """LayerNorm over the last axis in float64 (what the kernel's float32 is compared with)."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta


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


@solution
def layernorm_kernel_source():
    return r"""
// One warp (32 threads) per row: each lane sums the columns lane, lane + 32, ...; five shuffles add
// the 32 partial sums so that every lane holds the total (the butterfly: after the step with offset
// k, each lane holds the sum of the 2k lanes that differ from it only in the bits below 2k).
__device__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffff, value, offset);
    return value;
}

extern "C" __global__ void layernorm_warp(const float* x, const float* gamma, const float* beta, float* out,
                                          int rows, int D, float eps) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (row >= rows) return;  // the last block's spare warps: all 32 lanes leave together
    const float* x_row = x + (long long)row * D;
    float* out_row = out + (long long)row * D;
    float sum = 0.0f;
    for (int c = lane; c < D; c += 32) sum += x_row[c];
    float mean = warp_sum(sum) / D;
    float square_sum = 0.0f;  // a second pass: sum((x - mean)^2), not sum(x^2) - D mean^2, which cancels
    for (int c = lane; c < D; c += 32) {
        float centered = x_row[c] - mean;
        square_sum += centered * centered;
    }
    float rstd = rsqrtf(warp_sum(square_sum) / D + eps);
    for (int c = lane; c < D; c += 32) out_row[c] = (x_row[c] - mean) * rstd * gamma[c] + beta[c];
}
"""


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
    r"""With one warp per row the launch has as many warps as rows whatever $D$ is; at $D = 4096$
    each lane reads 128 columns per pass, three passes, and the row's sums take five shuffles
    either way. When $D$ is large and the rows are few (fewer warps than the GPU can keep busy,
    which is thousands), most of the GPU idles while each warp walks a long row: then a block of
    several warps per row splits the row's columns among more threads, each warp reduces its part
    with shuffles, and the warps' results meet in shared memory after a `__syncthreads()`. For
    ViT widths (192 to 1024) and tens of thousands of rows, a warp per row keeps every SM busy
    with no shared memory at all, which is why the engine's kernel uses it.""",
]
