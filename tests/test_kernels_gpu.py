"""The GPU kernels (minivit/kernels/gpu/: each module and its .cu): every CUDA source compiles, and every
kernel computes what its reference computes.

Without a GPU the kernels run on the simulated GPU ("cupy-sim"), where each CUDA kernel call
runs its stand-in (the reference) while everything around it (allocation, layouts, argument
lists, caches) is the GPU code path itself; with CuPy and a GPU the same tests compare the real
CUDA kernels with the reference (run by benchmarks/gpu_check.py on the GPU machine).
Tolerances: float64 within 1e-12 (relative to the largest value); float32 within 1e-5, the GPU's
expf/erff and another order of summation.
"""

import inspect
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import HAS_CUPY

from minivit import augment, backend, dispatch, ops
from minivit.kernels import gpu as gpu_package
from minivit.kernels import nvrtc, registry
from minivit.kernels.gpu.column_sums import column_sums
from minivit.kernels.gpu.launch import CudaKernel

gpu = SimpleNamespace(**registry.kernels("gpu"))  # every GPU kernel, by the name of the reference it replaces

TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


@pytest.fixture(params=["cupy-sim", pytest.param("cupy", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "cupy" and not HAS_CUPY:
        pytest.skip("CuPy with a GPU is not available here")
    backend.use(request.param)
    yield request.param
    backend.use("numpy")


def normal(seed, shape, dtype, scale=1.0):
    return backend.asarray((scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype))


def assert_close(fast, reference, dtype, what, factor=1.0):
    fast, reference = backend.to_numpy(fast), backend.to_numpy(reference)
    assert fast.shape == reference.shape, f"{what}: shape {fast.shape} != {reference.shape}"
    assert fast.dtype == reference.dtype, f"{what}: dtype {fast.dtype} != {reference.dtype}"
    scale = max(1.0, float(np.nanmax(np.abs(reference), initial=0.0)))
    np.testing.assert_allclose(fast, reference, rtol=0, atol=factor * TOLERANCE[dtype] * scale, err_msg=what)


# --- the CUDA sources ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("file_name", sorted(nvrtc.sources()))
def test_every_cuda_source_compiles_for_sm_90(file_name):
    """Compiled by NVRTC (no GPU needed): a syntax or type error fails here."""
    pytest.importorskip("cupy")
    nvrtc.compile_check(nvrtc.source(file_name), file_name)


def test_a_broken_source_fails_with_the_compilers_log():
    pytest.importorskip("cupy")
    broken = 'extern "C" __global__ void k(float* x) { x[0] = undefined_name; }'
    with pytest.raises(nvrtc.CompileError, match="undefined_name"):
        nvrtc.compile_check(broken, "broken.cu")


def test_every_kernel_the_python_side_launches_is_in_its_source():
    """Each CudaKernel's name is an entry point of its compiled file (read from the PTX)."""
    pytest.importorskip("cupy")
    kernels = []
    for module in gpu_package.MODULES:
        kernels += [value for value in vars(module).values() if isinstance(value, CudaKernel)]
        kernels += [kernel for value in vars(module).values() if isinstance(value, dict)
                    for kernel in value.values() if isinstance(kernel, CudaKernel)]
    assert len(kernels) >= 20
    entries = {name: nvrtc.kernel_names(name) for name in {kernel.file_name for kernel in kernels}}
    for kernel in kernels:
        assert kernel.name in entries[kernel.file_name], f"{kernel.name} not in {kernel.file_name}"


def test_each_cuda_source_sits_beside_the_module_that_launches_it():
    """kernels/gpu/<name>.cu is launched from kernels/gpu/<name>.py (one module per kernel, as llm.c keeps
    one file per layer); the shared helpers (common.cuh) are the only other CUDA file."""
    folder = nvrtc.CUDA_DIR
    assert folder == Path(gpu_package.__file__).parent
    assert {path.name for path in folder.iterdir() if path.suffix in (".cu", ".cuh")} == \
        set(nvrtc.sources()) | {"common.cuh"}
    for module in gpu_package.MODULES:
        launched = {value.file_name for value in vars(module).values() if isinstance(value, CudaKernel)}
        launched |= {kernel.file_name for value in vars(module).values() if isinstance(value, dict)
                     for kernel in value.values() if isinstance(kernel, CudaKernel)}
        own = module.__name__.rpartition(".")[2] + ".cu"
        assert launched <= {own}, f"{module.__name__} launches kernels of {sorted(launched - {own})}"
    for name in nvrtc.sources():
        assert (folder / name).with_suffix(".py").exists(), f"{name} has no module beside it"


def test_an_elementwise_kernel_compiles_from_its_pieces():
    pytest.importorskip("cupy")
    nvrtc.compile_elementwise("T x", "T y", "y = x * 0.5f * (1.0f + erff(x * 0.70710678f))", "gelu_exact")
    with pytest.raises(nvrtc.CompileError, match="erff_typo"):
        nvrtc.compile_elementwise("float32 x", "float32 y", "y = erff_typo(x)", "gelu_broken")
    with pytest.raises(nvrtc.CompileError, match="type name"):
        nvrtc.elementwise_source("x", "float32 y", "y = x", "no_type")


def test_every_kernel_has_its_references_name_and_signature():
    for name, kernel in vars(gpu).items():
        assert kernel.__name__ == name
        assert inspect.signature(kernel) == inspect.signature(dispatch.reference(name)), name
        assert "Replaces" in (kernel.__doc__ or ""), name


# --- each kernel against its reference ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(37, 53), (1, 7), (2, 3, 65)])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(device, dtype, shape, approximate):
    x, dout = normal(0, shape, dtype, 3.0), normal(1, shape, dtype)
    out, cache = gpu.gelu_forward(x, approximate)
    expected, expected_cache = ops.gelu_forward(x, approximate)
    assert_close(out, expected, dtype, "forward")
    assert_close(gpu.gelu_backward(dout, cache), ops.gelu_backward(dout, expected_cache), dtype, "backward")
    strided = normal(2, (shape[0], 2 * shape[-1]), dtype)[:, ::2]  # a non-contiguous input
    assert_close(gpu.gelu_forward(strided, approximate)[0], ops.gelu_forward(strided, approximate)[0], dtype, "view")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(37, 53), (1, 7), (4, 65, 192), (3, 1)])
def test_layernorm(device, dtype, shape):
    D = shape[-1]
    x = normal(0, shape, dtype, 3.0) + 1.0
    gamma, beta, dout = normal(1, (D,), dtype), normal(2, (D,), dtype), normal(3, shape, dtype)
    out, cache = gpu.layernorm_forward(x, gamma, beta, 1e-5)
    expected, expected_cache = ops.layernorm_forward(x, gamma, beta, 1e-5)
    assert_close(out, expected, dtype, "forward")
    for a, b, what in zip(cache, expected_cache, ("xhat", "rstd", "gamma")):
        assert_close(a, b, dtype, what)
    for a, b, what in zip(gpu.layernorm_backward(dout, cache), ops.layernorm_backward(dout, expected_cache),
                          ("dx", "dgamma", "dbeta")):
        assert_close(a, b, dtype, what, factor=10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(40, 65, 192), (3, 1300)])
def test_layernorm_backward_over_many_rows_and_one_tokens_rows(device, dtype, shape):
    # many rows: several blocks of partial sums (cuda/layernorm.cu's fused kernel, then column_sums.cu)
    D = shape[-1]
    x = normal(0, shape, dtype, 3.0) + 1.0
    gamma, beta, dout = normal(1, (D,), dtype), normal(2, (D,), dtype), normal(3, shape, dtype)
    _, cache = gpu.layernorm_forward(x, gamma, beta, 1e-5)
    _, expected_cache = ops.layernorm_forward(x, gamma, beta, 1e-5)
    for a, b, what in zip(gpu.layernorm_backward(dout, cache), ops.layernorm_backward(dout, expected_cache),
                          ("dx", "dgamma", "dbeta")):
        assert_close(a, b, dtype, what, factor=10)
    if len(shape) == 3:  # one token's rows, as the final LayerNorm's backward after CLS pooling: strided views
        token = tuple(part[:, 0] for part in cache[:2]) + (gamma,)
        expected_token = tuple(part[:, 0] for part in expected_cache[:2]) + (gamma,)
        for a, b, what in zip(gpu.layernorm_backward(dout[:, 0], token),
                              ops.layernorm_backward(dout[:, 0], expected_token), ("dx", "dgamma", "dbeta")):
            assert_close(a, b, dtype, f"token 0 {what}", factor=10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(2, 1300, 192), (7, 5), (1, 576)])
def test_linear_backward(device, dtype, shape):
    # the bias gradient by column_sums.cu (two passes over parts of 512 rows), the products as the reference's
    D_out = 24
    x, weight, bias = normal(0, shape, dtype), normal(1, (shape[-1], D_out), dtype), normal(2, (D_out,), dtype)
    dout = normal(3, (*shape[:-1], D_out), dtype)
    _, cache = ops.linear_forward(x, weight, bias)
    for input_grad in (True, False):
        fast, expected = gpu.linear_backward(dout, cache, input_grad), ops.linear_backward(dout, cache, input_grad)
        assert (fast[0] is None) == (not input_grad) == (expected[0] is None)
        for a, b, what in zip(fast, expected, ("dx", "dweight", "dbias")):
            if b is not None:
                assert_close(a, b, dtype, what, factor=10)
    rows = normal(4, (1100, 200), dtype)  # three parts, 200 columns: seven blocks of 32 columns
    assert_close(column_sums(rows), rows.sum(axis=0), dtype, "column sums", factor=10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(37, 53), (1, 7), (2, 3, 65, 65)])
def test_softmax(device, dtype, shape):
    x, dprobs = normal(0, shape, dtype, 4.0), normal(1, shape, dtype)
    probs, cache = gpu.softmax_forward(x)
    expected, expected_cache = ops.softmax_forward(x)
    assert_close(probs, expected, dtype, "forward")
    assert_close(gpu.softmax_backward(dprobs, cache), ops.softmax_backward(dprobs, expected_cache), dtype, "backward")
    assert_close(gpu.softmax_forward(x, axis=0)[0], ops.softmax_forward(x, axis=0)[0], dtype, "axis 0")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B,T,D,H", [(3, 5, 12, 3), (1, 1, 4, 1), (2, 65, 192, 3), (2, 65, 192, 12)])
def test_attention_heads(device, dtype, B, T, D, H):
    qkv, dcontext = normal(0, (B, T, 3 * D), dtype), normal(1, (B, T, D), dtype)
    context, cache = gpu.attention_heads_forward(qkv, H)
    expected, expected_cache = ops.attention_heads_forward(qkv, H)
    assert_close(context, expected, dtype, "forward")
    assert_close(cache[0].probs, expected_cache[0].probs, dtype, "probabilities")
    assert_close(gpu.attention_heads_backward(dcontext, cache), ops.attention_heads_backward(dcontext, expected_cache),
                 dtype, "backward", factor=10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy(device, dtype, smoothing, soft):
    xp = backend.xp
    B, K = 37, 10
    logits = normal(0, (B, K), dtype, 3.0)
    labels = backend.asarray(np.random.default_rng(1).integers(0, K, B))
    targets = augment.one_hot(labels, K, dtype) * 0.7 + augment.one_hot(labels[::-1], K, dtype) * 0.3 if soft \
        else labels
    loss, cache = gpu.cross_entropy_forward(logits, targets, smoothing)
    expected, expected_cache = ops.cross_entropy_forward(logits, targets, smoothing)
    assert_close(loss, expected, dtype, "loss")
    assert_close(gpu.cross_entropy_backward(1.0, cache), ops.cross_entropy_backward(1.0, expected_cache), dtype,
                 "backward")
    assert isinstance(loss, xp.ndarray) and loss.shape == ()  # no host read


def test_cross_entropy_turns_a_wrong_label_into_a_nan_loss(device):
    logits = normal(0, (3, 4), "float32")
    for wrong in (-1, 4):
        labels = backend.asarray(np.array([0, wrong, 2]))
        assert np.isnan(float(gpu.cross_entropy_forward(logits, labels)[0]))
        assert np.isnan(float(ops.cross_entropy_forward(logits, labels)[0]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("per_element", [False, True])
def test_adamw_and_sgd_updates(device, dtype, per_element):
    size = 1001
    xp = backend.xp
    lr_scale = backend.asarray(np.linspace(0.1, 1, size).astype(dtype)) if per_element else 1.0
    decay = backend.asarray(np.where(np.arange(size) % 3 == 0, 0.0, 0.05).astype(dtype)) if per_element else 0.05
    fast = [normal(0, (size,), dtype), normal(1, (size,), dtype), xp.zeros(size, dtype), xp.zeros(size, dtype)]
    reference = [a.copy() for a in fast]
    for step in (1, 2, 3):
        gpu.adamw_update(*fast, 1e-2, lr_scale, decay, 0.9, 0.999, 1e-8, step)
        ops.adamw_update(*reference, 1e-2, lr_scale, decay, 0.9, 0.999, 1e-8, step)
    for a, b, what in zip(fast, reference, ("data", "grad", "exp_avg", "exp_avg_sq")):
        assert_close(a, b, dtype, f"adamw {what}", factor=10)
    fast, reference = fast[:3], [a.copy() for a in fast[:3]]
    for step in (1, 2, 3):
        gpu.sgd_update(*fast, 0.1, lr_scale, decay, 0.9, True, step)
        ops.sgd_update(*reference, 0.1, lr_scale, decay, 0.9, True, step)
    for a, b, what in zip(fast, reference, ("data", "grad", "momentum")):
        assert_close(a, b, dtype, f"sgd {what}", factor=10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_by_norm(device, dtype, max_norm):
    grad = normal(0, (100_003,), dtype)
    expected_grad = grad.copy()
    norm = gpu.clip_by_norm(grad, max_norm)
    expected_norm = ops.clip_by_norm(expected_grad, max_norm)
    assert_close(norm, expected_norm, dtype, "norm")
    assert_close(grad, expected_grad, dtype, "clipped gradient")


@pytest.mark.parametrize("padding", [0, 4])
def test_crop_flip_normalize(device, padding):
    xp = backend.xp
    images = backend.asarray(np.random.default_rng(0).integers(0, 256, (7, 3, 12, 10)).astype(np.uint8))
    rng = backend.default_rng(0)
    top, left = rng.integers(0, 2 * padding + 1, size=7), rng.integers(0, 2 * padding + 1, size=7)
    flip = rng.random(7) < 0.5
    mean, std = xp.asarray([0.5, 0.4, 0.3], dtype=xp.float32), xp.asarray([0.2, 0.3, 0.4], dtype=xp.float32)
    assert_close(gpu.crop_flip_normalize(images, top, left, flip, padding, mean, std),
                 ops.crop_flip_normalize(images, top, left, flip, padding, mean, std), "float32", "pixels")


def test_what_a_kernel_does_not_cover_goes_to_the_reference(device):
    x = normal(0, (4, 6), "float32")
    assert_close(gpu.softmax_forward(x, axis=0)[0], ops.softmax_forward(x, axis=0)[0], "float32", "axis 0")
    qkv = normal(1, (2, 3, 12), "float32")
    with_dropout = gpu.attention_heads_forward(qkv, 2, 0.5, backend.default_rng(0), True)
    assert with_dropout[1][0].dropout_mask is not None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_forward(device, dtype):
    x = normal(0, (4, 9, 16), dtype)
    out, mask = gpu.dropout_forward(x, 0.25, backend.default_rng(5), True)
    expected, expected_mask = ops.dropout_forward(x, 0.25, backend.default_rng(5), True)  # the same draws
    assert_close(mask, expected_mask, dtype, "mask")
    assert_close(out, expected, dtype, "output")
    assert gpu.dropout_forward(x, 0.25, backend.default_rng(5), False)[1] is None  # eval: the identity


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sample_uniform(device, dtype):
    """The same integer hash: the same numbers, to the last bit, in one launch."""
    from minivit import sim

    samples = backend.asarray(np.array([7, 0, 2**40 + 3, 12], dtype=np.uint64))
    for shape in [(4, 9, 16), (4,)]:
        if device == "cupy-sim":
            sim.reset_counters()
        fast = gpu.sample_uniform(samples, 0xDEADBEEF12345678, shape, np.dtype(dtype))
        if device == "cupy-sim":
            assert sim.counters()["launches"] == 1  # the kernel (the samples are uint64 already)
        reference = ops.sample_uniform(samples, 0xDEADBEEF12345678, shape, np.dtype(dtype))
        assert fast.dtype == reference.dtype and fast.shape == reference.shape
        np.testing.assert_array_equal(backend.to_numpy(fast), backend.to_numpy(reference))


def test_rand_augment(device):
    """One kernel per round gives each image the operation the reference gives it. On a GPU, float32
    transcendental functions and fused multiply-adds may move an affine source pixel across a
    rounding boundary: at most 0.1% of the pixels may differ, the rest agree within 1e-3."""
    rng = np.random.default_rng(0)
    images = backend.asarray(rng.integers(0, 256, (64, 3, 16, 12)).astype(np.float32))
    for magnitude in (9.0, 5.0):
        fast = backend.to_numpy(gpu.rand_augment(images, 2, magnitude, backend.default_rng(3)))
        reference = backend.to_numpy(ops.rand_augment(images, 2, magnitude, backend.default_rng(3)))
        assert fast.shape == reference.shape and fast.dtype == reference.dtype
        off = np.abs(fast - reference) > 1e-3 * 255
        assert off.mean() <= 1e-3, f"{off.mean():.2%} of the pixels differ at magnitude {magnitude}"


@pytest.mark.parametrize("shape", [(37, 53), (2, 3, 65)])
def test_float16_kernels_compute_in_float32(device, shape):
    """float16 in memory, float32 arithmetic: the result is the float32 reference's, rounded to float16
    (within float16's resolution, 1e-3 relative)."""
    xp = backend.xp
    x = normal(0, shape, "float16", 3.0)
    x32 = x.astype(xp.float32)
    gamma, beta = normal(1, (shape[-1],), "float16"), normal(2, (shape[-1],), "float16")
    dout = normal(3, shape, "float16")
    cases = {
        "gelu": (gpu.gelu_forward(x)[0], ops.gelu_forward(x32)[0]),
        "gelu backward": (gpu.gelu_backward(dout, (x, "none")),
                          ops.gelu_backward(dout.astype(xp.float32), (x32, "none"))),
        "layernorm": (gpu.layernorm_forward(x, gamma, beta, 1e-5)[0],
                      ops.layernorm_forward(x32, gamma.astype(xp.float32), beta.astype(xp.float32), 1e-5)[0]),
        "softmax": (gpu.softmax_forward(x)[0], ops.softmax_forward(x32)[0]),
    }
    for what, (fast, reference) in cases.items():
        assert fast.dtype == xp.float16, what
        fast, reference = backend.to_numpy(fast).astype(np.float32), backend.to_numpy(reference)
        scale = max(1.0, float(np.abs(reference).max()))
        np.testing.assert_allclose(fast, reference, rtol=0, atol=2e-3 * scale, err_msg=what)


FUSED_KERNEL_NAMES = {"v1": ("attention_forward_fused", "attention_backward_fused"),
                      "v2": ("attention_forward_v2_d{width}", "attention_backward_v2_d{width}")}


def _assert_attention_matches_the_reference(qkv, dcontext, H, context, cache, dqkv, dtype):
    xp = backend.xp
    qkv32, dcontext32 = qkv.astype(xp.float32), dcontext.astype(xp.float32)
    expected, expected_cache = ops.attention_heads_forward(qkv32, H)
    expected_dqkv = ops.attention_heads_backward(dcontext32, expected_cache)
    tolerance = 2e-3 if dtype == "float16" else 10 * TOLERANCE["float32"]
    compared = (("context", context, expected), ("probabilities", cache[0].probs, expected_cache[0].probs),
                ("dqkv", dqkv, expected_dqkv))
    for what, fast, reference in compared:
        assert fast.dtype == np.dtype(dtype), what
        fast, reference = backend.to_numpy(fast).astype(np.float32), backend.to_numpy(reference)
        scale = max(1.0, float(np.abs(reference).max()))
        np.testing.assert_allclose(fast, reference, rtol=0, atol=tolerance * scale, err_msg=what)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("B,T,D,H", [(2, 65, 192, 3), (2, 65, 192, 12), (3, 17, 48, 12), (1, 72, 64, 1),
                                     (2, 33, 40, 4), (1, 1, 4, 1)])
def test_fused_attention_is_one_launch_each_way_and_computes_the_reference(device, version, dtype, B, T, D, H):
    # attention.cu: one block per (image, head); q, k, v read from qkv, dq, dk, dv written into it.
    # v2 at cifar-tiny's heads (65 tokens of 64) and cifar-gpu's (12 heads of 16), odd sizes, one token
    from minivit.kernels.gpu import attention

    qkv, dcontext = normal(0, (B, T, 3 * D), dtype), normal(1, (B, T, D), dtype)
    if device == "cupy-sim":
        backend.reset_sim_counters()
    with attention.implementation(version):
        context, cache = gpu.attention_heads_forward(qkv, H)
        dqkv = gpu.attention_heads_backward(dcontext, cache)
    if device == "cupy-sim":
        kinds = backend.sim_counters()["by_kind"]
        suffix, width = ("f16" if dtype == "float16" else "f32"), (16 if D // H <= 16 else 64)
        forward, backward = (name.format(width=width) for name in FUSED_KERNEL_NAMES[version])
        assert kinds == {f"kernel:{forward}_{suffix}": 1, f"kernel:{backward}_{suffix}": 1}
    _assert_attention_matches_the_reference(qkv, dcontext, H, context, cache, dqkv, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_attention_v2_backward_reads_the_batched_forwards_copies(device, dtype):
    """Forward and backward are chosen apart: v2's backward reads q, k, v through strides, so it runs after
    the batched forward (contiguous (B, H, T, d) copies) as after a fused one (views of qkv)."""
    from minivit.kernels.gpu import attention

    B, T, D, H = 2, 65, 192, 3
    qkv, dcontext = normal(0, (B, T, 3 * D), dtype), normal(1, (B, T, D), dtype)
    with attention.implementation("batched"):
        context, cache = gpu.attention_heads_forward(qkv, H)
    assert cache[0].q.flags.c_contiguous
    if device == "cupy-sim":
        backend.reset_sim_counters()
    with attention.implementation("v2"):
        dqkv = gpu.attention_heads_backward(dcontext, cache)
    if device == "cupy-sim":
        suffix = "f16" if dtype == "float16" else "f32"
        assert backend.sim_counters()["by_kind"] == {f"kernel:attention_backward_v2_d64_{suffix}": 1}
    _assert_attention_matches_the_reference(qkv, dcontext, H, context, cache, dqkv, dtype)


def test_attention_takes_the_table_choice_or_the_next_that_fits(device):
    """ATTENTION_KERNELS per (dtype, direction); a case a fused kernel cannot hold falls to the next one down."""
    from minivit.kernels.gpu import attention

    assert attention._choose(np.float32, "backward", 65, 64) == attention.ATTENTION_KERNELS[("float32", "backward")]
    with attention.implementation("v2"):
        assert attention._choose(np.float32, "forward", 65, 64) == "v2"
        assert attention._choose(np.float16, "backward", 65, 16) == "v2"
        assert attention._choose(np.float32, "forward", 90, 32) == "v1"  # more tokens than v2 holds
        assert attention._choose(np.float32, "forward", 200, 64) == "batched"  # nor v1
        assert attention._choose(np.float64, "forward", 65, 64) == "batched"  # no float64 build
    with pytest.raises(ValueError, match="choose one of"):
        with attention.implementation("v3"):
            pass


def test_attention_too_long_for_shared_memory_takes_the_batched_products(device):
    qkv = normal(0, (1, 200, 3 * 64), "float32")  # 200 tokens: more than the fused kernel holds
    context, cache = gpu.attention_heads_forward(qkv, 2)
    assert cache[0].q.flags.c_contiguous  # the split copy of the batched path, not views of qkv
    assert_close(context, ops.attention_heads_forward(qkv, 2)[0], "float32", "context")
