"""One command for a GPU machine: is minivit right there, how fast is it, and how fast does it learn CIFAR-10.

    python3 benchmarks/gpu_check.py --out RESULTS_DIR --data-tar .carry/cifar10-jpg.tar.gz
    python3 benchmarks/gpu_check.py --rehearse --out /tmp/rehearsal     # every stage at toy size, on the CPU

Stages, in order (each writes its own file under --out; summary.md collects the tables):

  1. environment  nvidia-smi, driver, CUDA runtime, CuPy, PyTorch and numba versions
  2. tests        the GPU half of the test suite on real CuPy (pytest -m gpu)
  3. parity       CPU against GPU: forward and backward of the model (every tensor by name), and
                  AdamW steps on the same gradients; float64 tight, float32 within stated tolerances
  4. kernels      every CUDA kernel against its reference: the largest error, per dtype
  5. graphs       can a forward+backward be captured as a CUDA graph (CuPy's stream capture with
                  its memory pool), is the replay right, and what does it buy
  6. throughput   minivit on CuPy beside PyTorch eager and torch.compile (transformers' ViT), the
                  same model: cifar-tiny at batch 128 and 512, training and inference images/s,
                  peak memory (each library's memory pool at its largest)
  7. profile      where a cifar-tiny training step's time goes on the GPU, phase by phase, then
                  operation by operation (every operation the model, loss and optimizer dispatch)
  8. training     CIFAR-10 from the JPEG tarball with the GPU recipe (python -m minivit.train
                  --preset cifar-gpu --backend cupy --time-budget ...): test accuracy after every
                  epoch, time to 80% and to 90%, the final test accuracy

On an H200 (benchmarks/results/gpu-h200-2026-11-26/) stages 1 to 7 take about 6 minutes (the tests
134 s, the throughput rows about 3 minutes with torch.compile's compilation) and stage 8 its budget plus
about a minute, so with about 15 minutes of device time run it as two calls:

    python3 benchmarks/gpu_check.py --out $OUT/check --data-tar .carry/cifar10-jpg.tar.gz \
        --stages environment tests parity kernels graphs throughput profile --deadline 540
    python3 benchmarks/gpu_check.py --out $OUT/train --data-tar .carry/cifar10-jpg.tar.gz \
        --stages training --train-budget 300 --deadline 420

A deadline (--deadline, default 470 s) shortens the training budget or skips a stage rather than
run over, and says so. A stage
that fails is recorded and the next one runs. With --rehearse, the same code runs every stage
at toy size on the simulated GPU ("cupy-sim") and PyTorch on the CPU: the test suite runs this
(tests/test_gpu_check.py), so that on the GPU the only job left is to run it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from minivit import backend  # noqa: E402

START = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - START


# --- stages ---------------------------------------------------------------------------------------------------


def stage_environment(args) -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "numpy": np.__version__}
    for module in ("cupy", "torch", "numba", "scipy", "transformers"):
        try:
            info[module] = __import__(module).__version__
        except Exception as error:  # noqa: BLE001 (a missing or broken library is what this stage reports)
            info[module] = f"not available ({type(error).__name__})"
    if args.device_backend == "cupy":
        import cupy

        runtime = cupy.cuda.runtime
        properties = runtime.getDeviceProperties(0)
        info.update(device=properties["name"].decode(),
                    compute_capability=f"{properties['major']}.{properties['minor']}",
                    memory_gib=round(properties["totalGlobalMem"] / 2**30, 1),
                    driver=runtime.driverGetVersion(), cuda_runtime=runtime.runtimeGetVersion())
    else:
        info["device"] = "simulated GPU (cupy-sim) on " + platform.processor()
    smi = shutil.which("nvidia-smi")
    info["nvidia_smi"] = subprocess.run([smi], capture_output=True, text=True).stdout if smi else "not found"
    (args.out / "environment.txt").write_text(json.dumps({k: v for k, v in info.items() if k != "nvidia_smi"},
                                                         indent=2) + "\n\n" + info["nvidia_smi"])
    return info


def stage_tests(args) -> dict:
    """The tests marked gpu (the CuPy halves), on real CuPy; in a rehearsal they skip."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "--maxfail=25",
               f"--junitxml={args.out / 'gpu-tests.xml'}", "tests"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=max(30, min(args.tests_timeout, remaining(args) - 60)))
    (args.out / "gpu-tests.txt").write_text(run.stdout + run.stderr)
    last = (run.stdout.strip().splitlines() or ["(no output)"])[-1]
    return {"returncode": run.returncode, "summary": last, "passed": run.returncode == 0}


def _model_pass(config, dtype: str, images: np.ndarray, dlogits: np.ndarray) -> dict:
    """logits, the input gradient and every parameter gradient, by name, on the active backend."""
    import minivit

    model = minivit.ViTForImageClassification(config, seed=0, dtype=dtype)
    logits = model.forward(backend.asarray(images.astype(dtype)))
    dpixels = model.backward(backend.asarray(dlogits.astype(dtype)))
    tensors = {"logits": backend.to_numpy(logits), "dpixel_values": backend.to_numpy(dpixels)}
    tensors.update({f"grad/{name}": backend.to_numpy(p.grad) for name, p in model.named_parameters()})
    return tensors


def _optimizer_steps(config, dtype: str, gradients: list[dict]) -> dict:
    """Parameters after AdamW steps on given host gradients (the same on both sides)."""
    import minivit
    from minivit import optim

    model = minivit.ViTForImageClassification(config, seed=0, dtype=dtype)
    optimizer = optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05)
    for step, grads in enumerate(gradients, start=1):
        for name, parameter in model.named_parameters():
            parameter.grad[...] = backend.asarray(grads[name].astype(dtype))
        optimizer.lr = 1e-3 * step / len(gradients)
        optimizer.step()
    return {f"param/{name}": value for name, value in model.state_dict().items()}


def _largest_errors(ours: dict, reference: dict) -> dict:
    """{name: max |ours - reference| / max(1, max |reference|)} for every reference tensor (a missing one fails)."""
    errors = {}
    for name, expected in reference.items():
        if name not in ours:
            raise AssertionError(f"{name} is missing on the GPU side")
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        errors[name] = float(np.abs(ours[name].astype(np.float64) - expected).max(initial=0.0)) / scale
    return errors


PARITY_TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


def stage_parity(args) -> dict:
    import minivit

    config = minivit.preset("cifar-tiny") if not args.rehearse else minivit.ViTConfig(
        image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=10)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((8, 3, config.image_size, config.image_size))
    dlogits = rng.standard_normal((8, config.num_labels))
    gradients = []
    results = {}
    for dtype in ("float64", "float32"):
        backend.use("numpy")
        cpu = _model_pass(config, dtype, images, dlogits)
        if not gradients:
            gradients = [{name[5:]: value * scale for name, value in cpu.items() if name.startswith("grad/")}
                         for scale in (1.0, -0.5, 2.0)]
        cpu.update(_optimizer_steps(config, dtype, gradients))
        backend.use(args.device_backend)
        device = _model_pass(config, dtype, images, dlogits)
        device.update(_optimizer_steps(config, dtype, gradients))
        backend.use("numpy")
        errors = _largest_errors(device, cpu)
        worst = max(errors, key=errors.get)
        results[dtype] = {"tensors": len(errors), "max_error": errors[worst], "worst_tensor": worst,
                          "tolerance": PARITY_TOLERANCE[dtype], "passed": errors[worst] <= PARITY_TOLERANCE[dtype]}
    (args.out / "parity.json").write_text(json.dumps(results, indent=2))
    return results


def stage_kernels(args) -> dict:
    """Every fast GPU kernel against its reference, on cifar-tiny-shaped inputs, float32 and float64."""
    from types import SimpleNamespace

    from minivit import ops
    from minivit.kernels import registry

    gpu = SimpleNamespace(**registry.kernels("gpu"))  # the GPU's kernels, by the reference each replaces

    backend.use(args.device_backend)
    xp = backend.xp
    B = 4 if args.rehearse else 128
    T, D, H, K = 65, 192, 3, 10

    def cases(dtype, rounded=False):
        """The kernels' calls on cifar-tiny-shaped inputs of ``dtype`` (rounded: values that float16 holds)."""

        def normal(seed, shape, dtype, scale=1.0):
            values = scale * np.random.default_rng(seed).standard_normal(shape)
            return backend.asarray((values.astype(np.float16) if rounded else values).astype(dtype))

        x = normal(0, (B, T, D), dtype, 3.0)
        gamma, beta, dout = normal(1, (D,), dtype), normal(2, (D,), dtype), normal(3, (B, T, D), dtype)
        hidden, dhidden = normal(4, (B, T, 4 * D), dtype, 3.0), normal(5, (B, T, 4 * D), dtype)
        qkv, dcontext = normal(6, (B, T, 3 * D), dtype), normal(7, (B, T, D), dtype)
        scores, dprobs = normal(8, (B, H, T, T), dtype, 4.0), normal(9, (B, H, T, T), dtype)
        logits = normal(10, (B, K), dtype, 3.0)
        labels = backend.asarray(np.random.default_rng(11).integers(0, K, B))
        flat = [normal(12 + i, (100_003,), dtype) for i in range(2)]
        images = backend.asarray(np.random.default_rng(14).integers(0, 256, (B, 3, 32, 32)).astype(np.uint8))
        top, left = backend.asarray(np.arange(B) % 9), backend.asarray(np.arange(B)[::-1] % 9)
        flip = backend.asarray(np.arange(B) % 2 == 0)
        mean, std = xp.asarray([0.49, 0.48, 0.45], dtype=xp.float32), xp.asarray([0.25, 0.24, 0.26], dtype=xp.float32)
        ln_cache = ops.layernorm_forward(x, gamma, beta, 1e-12)[1]
        attention_cache = ops.attention_heads_forward(qkv, H)[1]
        ce_cache = ops.cross_entropy_forward(logits, labels, 0.1)[1]

        def adamw(function):
            arrays = [flat[0].copy(), flat[1], xp.zeros_like(flat[0]), xp.zeros_like(flat[0])]
            function(*arrays, 1e-3, 1.0, 0.05, 0.9, 0.999, 1e-8, 1)
            return arrays[0]

        def clip(function):
            grad = flat[1].copy()
            return function(grad, 0.5), grad

        return {
            "gelu_forward": (lambda m: m.gelu_forward(hidden)[0]),
            "gelu_backward": (lambda m: m.gelu_backward(dhidden, (hidden, "none"))),
            "layernorm_forward": (lambda m: m.layernorm_forward(x, gamma, beta, 1e-12)[0]),
            "layernorm_backward": (lambda m: m.layernorm_backward(dout, ln_cache)),
            "softmax_forward": (lambda m: m.softmax_forward(scores)[0]),
            "softmax_backward": (lambda m: m.softmax_backward(dprobs, (ops.softmax_forward(scores)[0], -1))),
            "attention_heads_forward": (lambda m: m.attention_heads_forward(qkv, H)[0]),
            "attention_heads_backward": (lambda m: m.attention_heads_backward(dcontext, attention_cache)),
            "cross_entropy_forward": (lambda m: m.cross_entropy_forward(logits, labels, 0.1)[0]),
            "cross_entropy_backward": (lambda m: m.cross_entropy_backward(1.0, ce_cache)),
            "adamw_update": (lambda m: adamw(m.adamw_update)),
            "clip_by_norm": (lambda m: clip(m.clip_by_norm)),
            "crop_flip_normalize": (lambda m: m.crop_flip_normalize(images, top, left, flip, 4, mean, std)),
        }

    def as_list(result):
        items = result if isinstance(result, tuple) else (result,)
        return [backend.to_numpy(item).astype(np.float64) for item in items if item is not None]

    results = {}
    half_cases = ("gelu_forward", "gelu_backward", "layernorm_forward", "layernorm_backward", "softmax_forward",
                  "softmax_backward", "attention_heads_forward", "attention_heads_backward")
    for dtype in ("float32", "float64", "float16"):
        for name, run in cases(dtype).items():
            if dtype == "float16":  # float16 kernels against the float32 reference on the same values
                if name not in half_cases:
                    continue
                fast = as_list(run(gpu))
                reference = as_list(cases("float32", rounded=True)[name](ops))
                error = max(float(np.abs(a.astype(np.float64) - b).max()) / max(1.0, float(np.abs(b).max()))
                            for a, b in zip(fast, reference))
                results[f"{name} (float16)"] = {"max_error": error, "tolerance": 1e-2, "passed": error <= 1e-2}
                continue
            fast, reference = as_list(run(gpu)), as_list(run(ops))
            error = max(float(np.abs(a.astype(np.float64) - b).max()) / max(1.0, float(np.abs(b).max()))
                        for a, b in zip(fast, reference))
            tolerance = 1e-12 if dtype == "float64" else 1e-5
            if name == "crop_flip_normalize":
                tolerance = 1e-6  # float32 pixels in both dtypes' runs
            results[f"{name} ({dtype})"] = {"max_error": error, "tolerance": tolerance, "passed": error <= tolerance}
    backend.use("numpy")
    (args.out / "kernels.json").write_text(json.dumps(results, indent=2))
    return results


def _training_pieces(config_name: str, batch_size: int, dtype="float32", seed=0):
    """A model, its optimizer and a fixed batch on the active backend."""
    import minivit
    from minivit import optim

    config = minivit.preset(config_name) if isinstance(config_name, str) else config_name
    model = minivit.ViTForImageClassification(config, seed=seed, dtype=dtype)
    optimizer = optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    images = backend.asarray(rng.standard_normal((batch_size, 3, config.image_size, config.image_size)).astype(dtype))
    labels = backend.asarray(rng.integers(0, config.num_labels, batch_size))
    return model, optimizer, images, labels


def stage_graphs(args) -> dict:
    """Capture zero_grad + forward + loss + backward as a CUDA graph (CuPy's stream capture) and replay it.

    What a captured step cannot do: kernel arguments are captured by value, so the learning rate
    and AdamW's bias corrections (host numbers each step) would be frozen in the graph; the
    optimizer step is left outside the graph here.
    """
    from minivit import dispatch

    if args.rehearse:
        return {"skipped": "CUDA graphs need a GPU (stream capture); nothing to rehearse on the simulation"}
    import cupy

    backend.use("cupy")
    model, _, images, labels = _training_pieces("cifar-tiny", 128)

    def forward_backward():
        model.zero_grad()
        loss, cache = dispatch.cross_entropy_forward(model.forward(images), labels, 0.1)
        model.backward(dispatch.cross_entropy_backward(1.0, cache))
        return loss

    stream = cupy.cuda.Stream(non_blocking=True)
    result = {}
    with stream:
        for _ in range(3):  # the memory pool learns the step's sizes before capture
            forward_backward()
        stream.synchronize()
        eager_grad = model.flat.grad.copy()
        try:
            stream.begin_capture()
            forward_backward()
            graph = stream.end_capture()
        except Exception as error:  # noqa: BLE001 (the finding is whether it works)
            try:
                stream.end_capture()
            except Exception:  # noqa: BLE001
                pass
            return {"captured": False, "error": f"{type(error).__name__}: {error}"}
        graph.launch(stream)
        stream.synchronize()
        result["captured"] = True
        result["replay_equals_eager"] = bool(cupy.allclose(model.flat.grad, eager_grad, rtol=1e-5, atol=1e-6))

        def timed(function, repeats=20):
            function()
            stream.synchronize()
            start = time.perf_counter()
            for _ in range(repeats):
                function()
            stream.synchronize()
            return (time.perf_counter() - start) / repeats

        result["eager_ms"] = 1000 * timed(forward_backward)
        result["graph_ms"] = 1000 * timed(lambda: graph.launch(stream))
        result["speedup"] = result["eager_ms"] / result["graph_ms"]
    backend.use("numpy")
    (args.out / "graphs.json").write_text(json.dumps(result, indent=2))
    return result


def _median_seconds(function, steps: int, warmup: int, synchronize) -> float:
    for _ in range(warmup):
        function()
    synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def minivit_throughput(args, preset, batch_size: int, tf32: bool = False, precision: str = "float32") -> dict:
    import minivit
    from minivit import amp, dispatch, no_grad
    from minivit.optim import AdamW

    backend.use(args.device_backend)
    backend.use_tf32(tf32)
    config = minivit.preset(preset) if not args.rehearse else _rehearsal_config()
    pool = backend.xp.get_default_memory_pool()
    pool.free_all_blocks()
    xp = backend.xp
    model = minivit.ViTForImageClassification(config, seed=0, dtype=precision)
    float16 = precision == "float16"
    optimizer = AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05, master_weights=float16)
    scaler = amp.LossScaler() if float16 else None
    rng = np.random.default_rng(0)
    images = backend.asarray(rng.standard_normal((batch_size, 3, config.image_size, config.image_size))
                             .astype(precision))
    labels = backend.asarray(rng.integers(0, config.num_labels, batch_size))

    def train_step():  # the Trainer's step (minivit/training/trainer.py), without data and augmentation
        model.train()
        optimizer.zero_grad()
        logits = model.forward(images)
        loss, cache = dispatch.cross_entropy_forward(logits.astype(xp.float32, copy=False), labels, 0.1)
        dlogits = dispatch.cross_entropy_backward(1.0, cache)
        if scaler is not None:
            dlogits = scaler.scale_loss_gradient(dlogits, model.dtype)
        model.backward(dlogits)
        if scaler is not None:
            scaler.unscale(model.flat.grad, optimizer.master_grad)
        optimizer.clip_gradients(1.0)
        optimizer.step(skip=None if scaler is None else scaler.found_inf)
        if scaler is not None:
            scaler.update()

    def inference():
        model.eval()
        with no_grad():
            model.forward(images)

    train = _median_seconds(train_step, args.steps, args.warmup, backend.synchronize)
    infer = _median_seconds(inference, args.steps, args.warmup, backend.synchronize)
    result = {"train_images_per_second": batch_size / train, "inference_images_per_second": batch_size / infer,
              "peak_memory_mib": pool.total_bytes() / 2**20}
    backend.use_tf32(False)
    backend.use("numpy")
    return result


TORCH_SIDE = r'''
import json, sys, time
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
from minivit.convert import hf_config_kwargs
from minivit import preset, ViTConfig
from transformers import ViTConfig as HFConfig, ViTForImageClassification
options = json.loads(sys.argv[2])
device = options["device"]
torch.backends.cuda.matmul.allow_tf32 = options["tf32"]
amp = options["amp"] and device == "cuda"
scaler = torch.amp.GradScaler("cuda") if amp else None
config = preset(options["preset"]) if options["preset"] else ViTConfig(**options["config"])
model = ViTForImageClassification(HFConfig(**hf_config_kwargs(config))).to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
forward = torch.compile(model) if options["compiled"] else model
B = options["batch_size"]
images = torch.randn(B, 3, config.image_size, config.image_size, device=device)
labels = torch.randint(0, config.num_labels, (B,), device=device)
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
def train_step():
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.float16, enabled=amp):
        logits = forward(pixel_values=images).logits
    loss = torch.nn.functional.cross_entropy(logits.float(), labels, label_smoothing=0.1)
    if amp:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
def inference():
    model.eval()
    with torch.inference_mode(), torch.autocast(device, dtype=torch.float16, enabled=amp):
        forward(pixel_values=images)
def median(function):
    for _ in range(options["warmup"]):
        function()
    sync()
    times = []
    for _ in range(options["steps"]):
        start = time.perf_counter(); function(); sync(); times.append(time.perf_counter() - start)
    return float(np.median(times))
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
compile_start = time.perf_counter()
train = median(train_step)
infer = median(inference)
print(json.dumps({"train_images_per_second": B / train, "inference_images_per_second": B / infer,
                  "peak_memory_mib": torch.cuda.max_memory_reserved() / 2**20 if device == "cuda" else None,
                  "seconds_with_compilation": time.perf_counter() - compile_start}))
'''


def torch_throughput(args, preset: str, batch_size: int, compiled: bool, timeout: float, tf32: bool = False,
                     amp: bool = False) -> dict:
    options = {"device": "cpu" if args.rehearse else "cuda", "preset": None if args.rehearse else preset,
               "config": _rehearsal_config().to_dict() if args.rehearse else None, "batch_size": batch_size,
               "compiled": compiled, "steps": args.steps, "warmup": args.warmup + (3 if compiled else 0), "tf32": tf32,
               "amp": amp}
    run = subprocess.run([sys.executable, "-c", TORCH_SIDE, str(ROOT), json.dumps(options)], capture_output=True,
                         text=True, timeout=timeout)
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _rehearsal_config():
    import minivit

    return minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, num_labels=10)


def stage_throughput(args) -> dict:
    batch_sizes = [8] if args.rehearse else [128, 512]
    rows = []
    for batch_size in batch_sizes:
        sides = {"minivit (CuPy)": lambda b=batch_size: minivit_throughput(args, "cifar-tiny", b),
                 "minivit (CuPy, TF32)": lambda b=batch_size: minivit_throughput(args, "cifar-tiny", b, tf32=True),
                 "PyTorch eager": lambda b=batch_size: torch_throughput(args, "cifar-tiny", b, False, 120),
                 "PyTorch eager (TF32)": lambda b=batch_size: torch_throughput(args, "cifar-tiny", b, False, 120,
                                                                               tf32=True),
                 "minivit (CuPy, float16)": lambda b=batch_size: minivit_throughput(args, "cifar-tiny", b,
                                                                                    precision="float16"),
                 "PyTorch eager (AMP float16)": lambda b=batch_size: torch_throughput(args, "cifar-tiny", b, False,
                                                                                      120, amp=True)}
        if not args.rehearse:  # compiling takes minutes on the CPU; on the GPU up to 150 s, within the deadline
            sides["torch.compile"] = lambda b=batch_size: torch_throughput(args, "cifar-tiny", b, True,
                                                                           min(150, max(60, remaining(args) - 60)))
        for side, measure in sides.items():
            try:
                result = measure()
            except Exception as error:  # noqa: BLE001 (recorded beside the others)
                result = {"error": f"{type(error).__name__}: {error}"}
            rows.append({"preset": "cifar-tiny", "batch_size": batch_size, "side": side, **result})
            print(f"  throughput: batch {batch_size}, {side}: {result}", flush=True)
    for row in rows:
        eager = next((r for r in rows if r["batch_size"] == row["batch_size"] and r["side"] == "PyTorch eager"), {})
        if "train_images_per_second" in row and "train_images_per_second" in eager:
            row["train_vs_eager"] = row["train_images_per_second"] / eager["train_images_per_second"]
    (args.out / "throughput.json").write_text(json.dumps(rows, indent=2))
    return {"rows": rows}


def stage_profile(args) -> dict:
    """Where a training step's time goes: CUDA-event times of each phase of the Trainer's step."""
    from minivit import dispatch, profile
    from minivit.augment import AugmentConfig, augment_batch
    from minivit.optim import clip_grad_norm

    backend.use(args.device_backend)
    config = _rehearsal_config() if args.rehearse else "cifar-tiny"
    batch_size = 8 if args.rehearse else 512
    model, optimizer, _, labels = _training_pieces(config, batch_size)
    size = model.config.image_size
    images = backend.asarray(np.random.default_rng(0).integers(0, 256, (batch_size, 3, size, size)).astype(np.uint8))
    mean, std = backend.asarray(np.full(3, 0.5, np.float32)), backend.asarray(np.full(3, 0.25, np.float32))
    rng, host_rng = backend.default_rng(0), np.random.default_rng(0)
    augment = AugmentConfig(crop_padding=4, horizontal_flip=True)

    def step():
        with profile.phase("augment"):
            pixel_values, targets = augment_batch(images, labels, augment, mean, std, 10, rng, host_rng)
        with profile.phase("zero_grad"):
            optimizer.zero_grad()
        with profile.phase("forward"):
            logits = model.forward(pixel_values)
        with profile.phase("loss"):
            loss, cache = dispatch.cross_entropy_forward(logits, targets, 0.1)
            dlogits = dispatch.cross_entropy_backward(1.0, cache)
        with profile.phase("backward"):
            model.backward(dlogits)
        with profile.phase("clip"):
            clip_grad_norm(model.parameters(), 1.0)
        with profile.phase("optimizer"):
            optimizer.step()

    for _ in range(3):
        step()
    backend.synchronize()
    if args.rehearse:  # the simulation counts launches per phase instead of timing them
        backend.reset_sim_counters()
        step()
        by_phase = backend.sim_counters()["by_phase"]
        table = "\n".join(["| phase | launches per step |", "|---|---|"]
                          + [f"| {name} | {count} |" for name, count in by_phase.items()])
        text = f"rehearsal (simulated GPU), batch {batch_size}: launches per phase\n\n{table}\n"
        (args.out / "profile.md").write_text(text)
        backend.reset_sim_counters()
        with _each_operation_a_phase():
            step()
        by_operation = backend.sim_counters()["by_phase"]
        operations = "\n".join(["| operation | launches per step |", "|---|---|"]
                                + [f"| {name} | {count} |" for name, count in by_operation.items()
                                   if name.startswith("op:")])
        (args.out / "profile-operations.md").write_text(operations + "\n")
        backend.use("numpy")
        return {"table": text, "operations": operations}
    steps = 20
    with profile.Profiler() as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        backend.synchronize()
        wall = time.perf_counter() - start
    table = profiler.table(steps)
    text = (f"cifar-tiny, batch {batch_size}: {1000 * wall / steps:.2f} ms per step by the host's clock "
            f"({batch_size * steps / wall:.0f} images/s); device time per phase (CUDA events):\n\n{table}\n")
    (args.out / "profile.md").write_text(text)
    operations = _operation_table(step, steps, profiler)
    (args.out / "profile-operations.md").write_text(operations)
    backend.use("numpy")
    return {"table": text, "operations": operations}


@contextlib.contextmanager
def _each_operation_a_phase():
    """Every dispatched operation runs inside profile.phase("op:<name>") (timed or counted like a phase)."""
    from minivit import dispatch, profile

    def in_phase(name: str, function):
        def run(*arguments, **keywords):
            with profile.phase(f"op:{name}"):
                return function(*arguments, **keywords)
        return run

    with dispatch.wrap(in_phase):
        yield


def _operation_table(step, steps: int, phases) -> str:
    """Device milliseconds per step in each dispatched operation (CUDA events around each call)."""
    from minivit import profile

    with _each_operation_a_phase(), profile.Profiler() as profiler:
        for _ in range(steps):
            step()
    by_operation = {name[3:]: seconds for name, seconds in profiler.seconds.items() if name.startswith("op:")}
    step_seconds = sum(phases.seconds.values()) or 1.0
    lines = ["| operation | calls per step | ms per step | share of the step |", "|---|---|---|---|"]
    for name, seconds in sorted(by_operation.items(), key=lambda item: -item[1]):
        calls = profiler.calls[f"op:{name}"] // steps
        lines.append(f"| {name} | {calls} | {1000 * seconds / steps:.2f} | {100 * seconds / step_seconds:.1f}% |")
    outside = max(0.0, step_seconds - sum(by_operation.values()))
    lines.append(f"| outside the operations (+= of gradients, reshapes, copies) | | {1000 * outside / steps:.2f} | "
                 f"{100 * outside / step_seconds:.1f}% |")
    return ("Each dispatched operation timed with CUDA events around it (a separate 20-step pass; the events "
            "themselves add a little)\n\n" + "\n".join(lines) + "\n")


def _extract(tar_path: Path, target: Path) -> Path:
    """Unpack the JPEG tarball safely; returns the folder that holds train/ and test/."""
    with tarfile.open(tar_path) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(target, filter="data")
        else:
            archive.extractall(target)  # noqa: S202 (Python < 3.11.4; our own tarball)
    for candidate in [target, *sorted(p for p in target.rglob("*") if p.is_dir())]:
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    raise RuntimeError(f"{tar_path} holds no folder with train/ and test/")


def _rehearsal_images(root: Path) -> Path:
    """A tiny image folder (10 classes, coloured 32x32 images) for a rehearsal."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for label in range(10):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                colour = np.array([25 * label, 255 - 25 * label, (77 * label) % 255])
                pixels = np.clip(colour + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def stage_training(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="minivit-gpu-check-"))
    if args.data_dir:
        data_dir = Path(args.data_dir)
    elif args.rehearse:
        data_dir = _rehearsal_images(work / "images")
    else:
        if not args.data_tar or not Path(args.data_tar).is_file():
            raise RuntimeError(f"no CIFAR-10 tarball at {args.data_tar}: pass --data-tar or --data-dir")
        data_dir = _extract(Path(args.data_tar), work / "data")
    run_dir = args.out / "cifar-gpu-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    budget = args.train_budget
    spare = remaining(args) - 60  # decoding, evaluation and the summary after the run
    if budget > spare:
        print(f"  training: the deadline leaves {spare:.0f} s of the {budget:.0f} s asked for", flush=True)
        budget = max(10.0, spare)
    command = [sys.executable, "-m", "minivit.train", "--preset", "cifar-gpu", "--backend", args.device_backend,
               "--data-dir", str(data_dir), "--out", str(run_dir), "--time-budget", f"{budget:g}",
               "--test-every-epoch", "--no-progress"]
    if args.rehearse:
        command += ["--batch-size", "16", "--image-size", "32", "--hidden-size", "16", "--num-hidden-layers", "1",
                    "--num-attention-heads", "2", "--intermediate-size", "32"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=max(60, remaining(args) - 10))
    (args.out / "training-log.txt").write_text(" ".join(command) + "\n\n" + run.stdout + run.stderr)
    if run.returncode != 0:
        raise RuntimeError(f"training failed (exit {run.returncode}): {run.stderr.strip()[-800:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]

    def time_to(accuracy: float):
        return next((row["elapsed"] for row in rows if row.get("test_accuracy", 0) >= accuracy), None)

    evaluation = subprocess.run([sys.executable, "-m", "minivit.evaluate", "--checkpoint",
                                 str(run_dir / "checkpoint-last.npz"), "--data-dir", str(data_dir), "--backend",
                                 args.device_backend, "--json"], cwd=ROOT, capture_output=True, text=True, env=env)
    final = json.loads(evaluation.stdout.strip().splitlines()[-1]) if evaluation.returncode == 0 else {}
    result = {"command": " ".join(command), "time_budget": budget, "wall_seconds": time.perf_counter() - started,
              "epochs": rows[-1]["epoch"] if rows else 0, "images_per_second": rows[-1]["images_per_second"] if rows
              else None, "seconds_to_80": time_to(0.8), "seconds_to_90": time_to(0.9),
              "final_test_accuracy": final.get("accuracy"),
              "curve": [{"elapsed": row["elapsed"], "epoch": row["epoch"], "test_accuracy": row.get("test_accuracy"),
                         "val_accuracy": row["val_accuracy"], "train_loss": row["train_loss"]} for row in rows]}
    (args.out / "training.json").write_text(json.dumps(result, indent=2))
    _plot_curve(result["curve"], args.out / "training-curve.png")
    shutil.rmtree(work, ignore_errors=True)
    return result


def _plot_curve(curve: list, path: Path) -> None:
    from minivit.plots import _new_figure

    figure = _new_figure((6, 4))
    axis = figure.subplots()
    axis.plot([row["elapsed"] for row in curve], [100 * (row["test_accuracy"] or 0) for row in curve], marker=".",
              label="test")
    axis.plot([row["elapsed"] for row in curve], [100 * row["val_accuracy"] for row in curve], marker=".",
              label="validation")
    for target in (80, 90):
        axis.axhline(target, color="grey", linewidth=0.5)
    axis.set_xlabel("training seconds")
    axis.set_ylabel("accuracy (%)")
    axis.set_title("CIFAR-10, minivit on one GPU")
    axis.legend()
    figure.savefig(path, dpi=100)


# --- the run ------------------------------------------------------------------------------------------------

STAGES = {"environment": stage_environment, "tests": stage_tests, "parity": stage_parity, "kernels": stage_kernels,
          "graphs": stage_graphs, "throughput": stage_throughput, "profile": stage_profile,
          "training": stage_training}
MINIMUM_SECONDS = {"tests": 40, "parity": 15, "kernels": 10, "graphs": 10, "throughput": 60, "profile": 10,
                   "training": 60}


def remaining(args) -> float:
    return args.deadline - elapsed()


def summary_markdown(results: dict, args) -> str:
    env = results.get("environment", {}).get("result", {})
    lines = [f"# GPU check ({'rehearsal on the CPU' if args.rehearse else env.get('device', '?')})", "",
             f"command: `{' '.join(sys.argv)}`", "",
             "| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {stage['status']} | {stage['seconds']:.0f} |" for name, stage in results.items()]
    lines += ["", "## Environment", "", "```", json.dumps({k: v for k, v in env.items() if k != "nvidia_smi"},
                                                          indent=2), "```"]
    if "parity" in results and results["parity"]["status"] == "ok":
        lines += ["", "## CPU against GPU", "", "| dtype | tensors | largest error | tensor | tolerance |",
                  "|---|---|---|---|---|"]
        for dtype, row in results["parity"]["result"].items():
            lines.append(f"| {dtype} | {row['tensors']} | {row['max_error']:.2e} | {row['worst_tensor']} | "
                         f"{row['tolerance']:.0e} |")
    if "kernels" in results and results["kernels"]["status"] == "ok":
        lines += ["", "## Kernels against their references", "", "| kernel | largest error | tolerance | |",
                  "|---|---|---|---|"]
        for name, row in results["kernels"]["result"].items():
            lines.append(f"| {name} | {row['max_error']:.2e} | {row['tolerance']:.0e} | "
                         f"{'ok' if row['passed'] else 'OFF'} |")
    if "throughput" in results and results["throughput"]["status"] == "ok":
        lines += ["", "## Throughput (cifar-tiny)", "",
                  "| batch | side | train img/s | inference img/s | peak MiB | train vs eager |",
                  "|---|---|---|---|---|---|"]
        for row in results["throughput"]["result"]["rows"]:
            if "error" in row:
                lines.append(f"| {row['batch_size']} | {row['side']} | {row['error']} | | | |")
                continue
            peak = f"{row['peak_memory_mib']:.0f}" if row.get("peak_memory_mib") is not None else "-"
            lines.append(f"| {row['batch_size']} | {row['side']} | {row['train_images_per_second']:.0f} | "
                         f"{row['inference_images_per_second']:.0f} | {peak} | {row.get('train_vs_eager', 0):.2f}x |")
    if "graphs" in results and results["graphs"]["status"] == "ok":
        lines += ["", "## CUDA graph of forward + backward", "", "```", json.dumps(results["graphs"]["result"]), "```"]
    if "profile" in results and results["profile"]["status"] == "ok":
        lines += ["", "## Where a step's time goes", "", results["profile"]["result"]["table"], "",
                  results["profile"]["result"].get("operations", "")]
    if "training" in results and results["training"]["status"] == "ok":
        t = results["training"]["result"]
        lines += ["", "## CIFAR-10 with the GPU recipe", "", f"`{t['command']}`", "",
                  f"- {t['epochs']} epochs in {t['time_budget']:.0f} s of training, {t['images_per_second']} images/s",
                  f"- time to 80% test accuracy: {t['seconds_to_80']} s; to 90%: {t['seconds_to_90']} s",
                  f"- final test accuracy: {t['final_test_accuracy']}", "", "![curve](training-curve.png)"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for everything measured (made if missing)")
    parser.add_argument("--data-tar", help="the CIFAR-10 JPEG tarball (train/<class>/*.jpg, test/<class>/*.jpg)")
    parser.add_argument("--data-dir", help="or an unpacked copy")
    parser.add_argument("--rehearse", action="store_true", help="every stage at toy size on the simulated GPU")
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    parser.add_argument("--deadline", type=float, default=470.0, help="seconds for the whole run")
    parser.add_argument("--train-budget", type=float, default=300.0, help="seconds of training (stage 8)")
    parser.add_argument("--tests-timeout", type=float, default=240.0)
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per throughput measurement")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    args.device_backend = "cupy-sim" if args.rehearse else "cupy"
    if args.rehearse:
        args.steps, args.warmup, args.train_budget = 2, 1, min(args.train_budget, 8.0)
    results = {}
    for name in args.stages:
        if remaining(args) < MINIMUM_SECONDS.get(name, 5):
            results[name] = {"status": f"skipped: {remaining(args):.0f} s left of the deadline", "seconds": 0.0}
            print(f"[{elapsed():5.0f} s] {name}: skipped (deadline)", flush=True)
            continue
        print(f"[{elapsed():5.0f} s] {name} ...", flush=True)
        started = time.perf_counter()
        try:
            result = STAGES[name](args)
            status = "ok"
            if isinstance(result, dict) and result.get("passed") is False:
                status = "failed"
            if name in ("parity", "kernels") and not all(row["passed"] for row in result.values()):
                status = "failed: over tolerance"
        except Exception as error:  # noqa: BLE001 (one stage's failure must not lose the others)
            result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
            status = f"failed: {type(error).__name__}: {str(error)[:200]}"
        finally:
            backend.use("numpy")
        results[name] = {"status": status, "seconds": time.perf_counter() - started, "result": result}
        print(f"[{elapsed():5.0f} s] {name}: {status}", flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        (args.out / "summary.md").write_text(summary_markdown(results, args))
    print((args.out / "summary.md").read_text())
    return 0 if all(stage["status"] in ("ok",) or stage["status"].startswith("skipped") for stage in results.values()) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
