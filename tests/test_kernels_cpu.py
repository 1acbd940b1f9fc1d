"""Every fast CPU kernel computes what its reference computes (minivit/kernels/cpu.py against minivit/ops).

Each kernel is run beside its reference on the same inputs, forward and backward, in
float32 and float64, on awkward shapes: odd sizes, a single row, non-contiguous views.
Tolerances: float64 agrees to about 1e-12 relative (the loops may add in another order);
float32 to a few units of its 1e-7 resolution, wider where a kernel uses the A&S erf
(absolute error 1.5e-7, PyTorch's float32 CPU formula).
"""

import inspect
from pathlib import Path

import numpy as np
import pytest

from minivit import dispatch, ops

pytest.importorskip("numba")
from minivit.kernels import cpu, registry  # noqa: E402

TOLERANCE = {"float32": 5e-6, "float64": 1e-12}
# (leading shape, last axis): odd sizes, one row, one column, a (B, H, T, T)-like stack; all of these
# run the loops' serial twins but the last, large enough for the parallel loops (cpu_loops.sized)
SHAPES = [((37,), 53), ((1,), 7), ((5,), 1), ((2, 3, 5), 65), ((2, 301), 129)]


def normal(seed, shape, dtype, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def strided(array):
    """The same values as a non-contiguous view (every other column of a wider array)."""
    wide = np.zeros((*array.shape[:-1], 2 * array.shape[-1]), dtype=array.dtype)
    wide[..., ::2] = array
    view = wide[..., ::2]
    assert not view.flags.c_contiguous or array.size <= 1
    return view


def assert_close(fast, reference, dtype, what, factor=1.0):
    fast, reference = np.asarray(fast), np.asarray(reference)
    assert fast.shape == reference.shape, what
    assert fast.dtype == reference.dtype, what
    scale = max(1.0, float(np.abs(reference).max(initial=0.0)))
    np.testing.assert_allclose(fast, reference, rtol=0, atol=factor * TOLERANCE[dtype] * scale, err_msg=what)


def test_every_kernel_has_its_references_name_and_signature():
    kernels = registry.kernels("cpu")
    assert kernels, "no kernel registered for the CPU"
    for name, kernel in kernels.items():
        assert kernel.__name__ == name
        assert inspect.signature(kernel) == inspect.signature(dispatch.reference(name)), name
        assert f"{name}" in (kernel.__doc__ or "") and "Replaces" in kernel.__doc__, name


def test_fast_mode_uses_the_kernels_and_reference_mode_does_not():
    assert dispatch.implementation("layernorm_forward") is cpu.layernorm_forward
    previous = dispatch.use("reference")
    try:
        assert dispatch.implementation("layernorm_forward") is ops.layernorm_forward
    finally:
        dispatch.use(previous)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("leading,width", SHAPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_gelu(dtype, leading, width, contiguous):
    x = normal(0, (*leading, width), dtype, scale=3.0)
    dout = normal(1, x.shape, dtype)
    if not contiguous:
        x, dout = strided(x), strided(dout)
    for approximate in ("none", "tanh"):
        out, cache = cpu.gelu_forward(x, approximate)
        expected, expected_cache = ops.gelu_forward(x, approximate)
        assert_close(out, expected, dtype, f"gelu {approximate} forward", factor=2)
        assert_close(cpu.gelu_backward(dout, cache), ops.gelu_backward(dout, expected_cache), dtype,
                     f"gelu {approximate} backward", factor=4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("leading,width", SHAPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_layernorm(dtype, leading, width, contiguous):
    x = normal(0, (*leading, width), dtype, scale=3.0) + 1
    gamma, beta = normal(1, (width,), dtype), normal(2, (width,), dtype)
    dout = normal(3, x.shape, dtype)
    if not contiguous:
        x, dout = strided(x), strided(dout)
    out, cache = cpu.layernorm_forward(x, gamma, beta, 1e-5)
    expected, expected_cache = ops.layernorm_forward(x, gamma, beta, 1e-5)
    assert_close(out, expected, dtype, "layernorm forward")
    for a, b in zip(cache, expected_cache):
        assert_close(a, b, dtype, "layernorm cache")
    for fast, reference, what in zip(cpu.layernorm_backward(dout, cache), ops.layernorm_backward(dout, expected_cache),
                                     ("dx", "dgamma", "dbeta")):
        assert_close(fast, reference, dtype, f"layernorm {what}", factor=4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("leading,width", SHAPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_softmax(dtype, leading, width, contiguous):
    x = normal(0, (*leading, width), dtype, scale=4.0)
    dprobs = normal(1, x.shape, dtype)
    if not contiguous:
        x, dprobs = strided(x), strided(dprobs)
    probs, cache = cpu.softmax_forward(x)
    expected, expected_cache = ops.softmax_forward(x)
    assert_close(probs, expected, dtype, "softmax forward")
    assert_close(cpu.softmax_backward(dprobs, cache), ops.softmax_backward(dprobs, expected_cache), dtype,
                 "softmax backward")
    # another axis is the reference's
    probs0, cache0 = cpu.softmax_forward(x, axis=0)
    assert_close(probs0, ops.softmax_forward(x, axis=0)[0], dtype, "softmax over axis 0")


@pytest.fixture(params=[False, True], ids=["products on BLAS's threads", "products on the loops' threads"])
def products_on_loop_threads(request, monkeypatch):
    """Both ways the fast kernels run their products (``tuning.products_on_loop_threads()``): NumPy's and
    SciPy's BLAS on their own threads, or each thread of the compiled loops multiplying its slab of rows."""
    from minivit.kernels import cpu_loops

    monkeypatch.setattr(cpu_loops, "products_here", request.param)
    return request.param


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows,d_in,d_out", [(37, 13, 5), (1, 7, 3), (6, 1, 1), (301, 40, 129)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(products_on_loop_threads, dtype, rows, d_in, d_out, with_bias):
    """Forward and backward; the last shape (602 rows x 129 outputs) is large enough to share among threads."""
    x = normal(0, (2, rows, d_in), dtype)
    dout = normal(3, (2, rows, d_out), dtype)
    weight, bias = normal(1, (d_in, d_out), dtype), normal(2, (d_out,), dtype) if with_bias else None
    shared = cpu._on_loop_threads(x.reshape(-1, d_in), weight)
    assert shared == (products_on_loop_threads and rows == 301)
    for weight_view in (weight, np.asfortranarray(weight), strided(np.ascontiguousarray(weight))):
        out, cache = cpu.linear_forward(x, weight_view, bias)
        expected, expected_cache = ops.linear_forward(x, weight_view, bias)
        assert_close(out, expected, dtype, "linear forward")
        assert cache[0] is expected_cache[0] and cache[2] == expected_cache[2]  # the reference's backward reads it
        for input_grad in (True, False):
            grads = cpu.linear_backward(dout, cache, input_grad)
            expected_grads = ops.linear_backward(dout, expected_cache, input_grad)
            for name, fast, reference in zip(("dx", "dweight", "dbias"), grads, expected_grads):
                assert (fast is None) == (reference is None), name
                if reference is not None:  # dweight sums 602 rows in slabs: another order of the additions
                    assert_close(fast, reference, dtype, f"linear backward {name}", factor=4)


def test_the_profile_by_shapes_marks_a_weight_that_is_a_view(monkeypatch):
    """benchmarks/profile_step.py --shapes keys each call by its arrays' shapes and layouts: that is how the
    patch projection's Fortran-ordered weight (the test below) was found, so a view must show as one."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from profile_step import describe_arrays

    x, weight = np.zeros((4, 48), np.float32), np.zeros((32, 48), np.float32)
    assert describe_arrays((x, weight.T, 0.5, (x, weight))) == "(4, 48) (48, 32) F/strided cache((4, 48), (32, 48))"


def test_a_weight_that_is_a_view_keeps_the_fast_path(monkeypatch):
    """The patch projection hands its weight as W^T of Conv2d's layout, a Fortran-ordered view: the
    fast kernels copy it (small) rather than fall back to NumPy's products on OpenBLAS's threads,
    which on an Intel machine wake a second pool of threads (1.8x the patch projection's time)."""
    from minivit.kernels import cpu_loops

    monkeypatch.setattr(cpu_loops, "products_here", True)
    x, dout = normal(0, (128, 16, 192), "float32"), normal(1, (128, 16, 128), "float32")  # cifar-cpu's
    conv_weight, bias = normal(2, (128, 3, 8, 8), "float32"), normal(3, (128,), "float32")
    weight = conv_weight.reshape(128, -1).T  # (192, 128), as minivit.model.PatchProjection passes it
    assert not weight.flags.c_contiguous
    expected, expected_cache = ops.linear_forward(x, weight, bias)
    expected_grads = ops.linear_backward(dout, expected_cache)
    slabs = []
    addmm_slabs = cpu_loops.addmm_slabs
    monkeypatch.setattr(cpu_loops, "addmm_slabs", lambda *args: slabs.append(1) or addmm_slabs(*args))

    def no_reference(*args, **kwargs):
        raise AssertionError("linear_backward fell back to the reference for a weight that is a view")

    out, cache = cpu.linear_forward(x, weight, bias)
    assert slabs, "linear_forward left the loops' threads for a weight that is a view"
    assert_close(out, expected, "float32", "linear forward, weight a view")
    monkeypatch.setattr(cpu.ops, "linear_backward", no_reference)
    for fast, reference, name in zip(cpu.linear_backward(dout, cache), expected_grads, ("dx", "dweight", "dbias")):
        assert_close(fast, reference, "float32", f"linear backward {name}, weight a view", factor=4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B,T,D,H", [(3, 5, 12, 3), (1, 1, 4, 1), (2, 65, 24, 2), (16, 65, 24, 2)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_attention_heads(products_on_loop_threads, dtype, B, T, D, H, contiguous):
    qkv = normal(0, (B, T, 3 * D), dtype)
    dcontext = normal(1, (B, T, D), dtype)
    if not contiguous:
        qkv, dcontext = strided(qkv), strided(dcontext)
    context, cache = cpu.attention_heads_forward(qkv, H)
    expected, expected_cache = ops.attention_heads_forward(qkv, H)
    assert_close(context, expected, dtype, "attention forward")
    assert_close(cache[0].probs, expected_cache[0].probs, dtype, "attention probabilities")
    assert_close(cpu.attention_heads_backward(dcontext, cache), ops.attention_heads_backward(dcontext, expected_cache),
                 dtype, "attention backward (dqkv)", factor=4)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("with_scales", [False, True])
def test_adamw_update_over_a_flat_buffer(dtype, with_scales):
    size = 1001
    data, grad = normal(0, (size,), dtype), normal(1, (size,), dtype)
    lr_scale = np.abs(normal(2, (size,), dtype)) if with_scales else 1.0
    decay = np.where(np.arange(size) % 3 == 0, 0.0, 0.05).astype(dtype)
    fast = [a.copy() for a in (data, grad, np.zeros_like(data), np.zeros_like(data))]
    reference = [a.copy() for a in fast]
    for step in range(1, 4):
        cpu.adamw_update(*fast, 1e-2, lr_scale, decay, 0.9, 0.999, 1e-8, step)
        ops.adamw_update(*reference, 1e-2, lr_scale, decay, 0.9, 0.999, 1e-8, step)
    for a, b, what in zip(fast, reference, ("data", "grad", "exp_avg", "exp_avg_sq")):
        assert_close(a, b, dtype, f"adamw {what}", factor=10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_update_over_a_flat_buffer(dtype, nesterov):
    size = 513
    data, grad = normal(0, (size,), dtype), normal(1, (size,), dtype)
    decay = np.where(np.arange(size) % 2 == 0, 0.0, 5e-4).astype(dtype)
    fast = [a.copy() for a in (data, grad, np.zeros_like(data))]
    reference = [a.copy() for a in fast]
    for step in range(1, 4):
        cpu.sgd_update(*fast, 0.1, 1.0, decay, 0.9, nesterov, step)
        ops.sgd_update(*reference, 0.1, 1.0, decay, 0.9, nesterov, step)
    for a, b, what in zip(fast, reference, ("data", "grad", "momentum")):
        assert_close(a, b, dtype, f"sgd {what}", factor=10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("magnitude", [9.0, 5.0])
def test_rand_augment_gives_each_image_the_references_operation(dtype, magnitude):
    """Each operation on the images that drew it gives what it gives inside the whole batch: the same
    pixels (to float32's resolution on [0, 255]), the same draws taken from the generator."""
    images = np.random.default_rng(0).integers(0, 256, (64, 3, 16, 12)).astype(dtype)
    fast_rng, reference_rng = np.random.default_rng(3), np.random.default_rng(3)
    fast = cpu.rand_augment(images, 2, magnitude, fast_rng)
    reference = ops.rand_augment(images, 2, magnitude, reference_rng)
    assert fast.dtype == reference.dtype == images.dtype
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-3)
    assert not np.array_equal(fast, images), "no image was changed: the test would not see a wrong operation"
    assert fast_rng.random() == reference_rng.random(), "the two took different draws from the generator"


def test_updates_hand_what_they_do_not_cover_to_the_reference():
    data = np.ones((3, 4))  # 2-D: the reference's job
    grad, m, v = np.full((3, 4), 0.5), np.zeros((3, 4)), np.zeros((3, 4))
    expected = [a.copy() for a in (data, grad, m, v)]
    cpu.adamw_update(data, grad, m, v, 0.1, 1.0, 0.0, 0.9, 0.999, 1e-8, 1)
    ops.adamw_update(*expected, 0.1, 1.0, 0.0, 0.9, 0.999, 1e-8, 1)
    np.testing.assert_array_equal(data, expected[0])


def test_exp32_is_exp_to_float32_precision():
    """The vectorisable float32 exp of the compiled loops, over its whole range."""
    from minivit.kernels import cpu_loops

    x = np.linspace(-87, 88, 200_001, dtype=np.float32).reshape(1, -1)
    out = np.empty_like(x)
    cpu_loops.exp32_rows(x, out)
    exact = np.exp(x.astype(np.float64))
    assert (np.abs(out - exact) / exact).max() < 2e-7  # float32's own rounding is 6e-8


def test_a_nan_still_comes_out_as_nan():
    # The loops may reorder sums but not assume NaN away: a diverging run must show a NaN loss.
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 0.0, 1.0], [0.5, 0.0, 1.0]], dtype="float32")
    probs, _ = cpu.softmax_forward(x)
    assert np.isnan(probs[:2]).all()  # a NaN or an inf score makes its row NaN, as in NumPy
    assert np.isfinite(probs[2]).all()
    assert np.isnan(cpu.gelu_forward(x)[0][0, 0])
    assert np.isnan(cpu.layernorm_forward(x, np.ones(3, "float32"), np.zeros(3, "float32"), 1e-5)[0][0]).all()


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("stack,m,k,n", [((5, 2), 4, 3, 6), ((40, 4), 65, 8, 65)])  # the second large enough to share
def test_batched_matmul_splits_the_stack_and_gives_the_same_result(monkeypatch, products_on_loop_threads, threads,
                                                                  stack, m, k, n):
    monkeypatch.setattr(cpu, "num_threads", threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((*stack, m, k)).astype("float32")
    b = rng.standard_normal((*stack, k, n)).astype("float32")
    np.testing.assert_allclose(cpu.batched_matmul(a, b), a @ b, rtol=1e-6, atol=1e-6)
    out = np.zeros((*stack, 2 * m, n), dtype="float32")[:, :, ::2]  # a strided view, as attention passes
    assert cpu.batched_matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-6, atol=1e-6)
    transposed = b.swapaxes(-1, -2).copy().swapaxes(-1, -2)  # k.swapaxes(-1, -2), as attention passes it
    np.testing.assert_allclose(cpu.batched_matmul(a, transposed), a @ b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(cpu.batched_matmul(a, b[:1]), a @ b[:1], rtol=1e-6, atol=1e-6)  # broadcasting


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [7, 70_001])  # the second large enough to share among threads
def test_addmm_adds_the_bias_inside_the_product(products_on_loop_threads, dtype, rows):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, 5)).astype(dtype)
    b = rng.standard_normal((5, 3)).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    expected = a.astype("float64") @ b.astype("float64") + bias
    tolerance = 1e-5 if dtype == "float32" else 1e-13
    out = cpu.addmm(bias, a, b)
    assert out.shape == (rows, 3) and out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)
    # layouts BLAS cannot take without a copy go the plain way, with the same result
    np.testing.assert_allclose(cpu.addmm(bias, a, np.asfortranarray(b)), expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(cpu.addmm(bias, a[::2], b), expected[::2], rtol=tolerance, atol=tolerance)
    assert cpu.addmm(bias, a[:0], b).shape == (0, 3)


def test_map_rows_gives_the_same_bits_as_one_pass(monkeypatch):
    x = np.random.default_rng(0).standard_normal((300, 1000)).astype("float32")
    whole = np.tanh(x) * 2 + x
    blocked = cpu.map_rows(lambda rows: np.tanh(rows) * 2 + rows, x, block_elements=4096)
    np.testing.assert_array_equal(blocked, whole)


def test_the_last_shape_runs_the_parallel_loops_and_the_others_their_serial_twins():
    from minivit.kernels import cpu_loops

    sizes = [np.prod(leading) * width for leading, width in SHAPES]
    assert max(sizes[:-1]) < cpu_loops.PARALLEL_FROM <= sizes[-1]
    assert cpu_loops.sized(cpu_loops.layernorm_forward, sizes[-1]) is cpu_loops.layernorm_forward
    twin = cpu_loops.sized(cpu_loops.layernorm_forward, sizes[0])
    assert twin is not cpu_loops.layernorm_forward
    assert twin.py_func.__code__ is cpu_loops.layernorm_forward.py_func.__code__  # the same source
    assert twin is cpu_loops.sized(cpu_loops.layernorm_forward, 1)  # compiled once


# --- inference-only fused operations (ops/linear_gelu.py, ops/residual_layernorm.py) --------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("leading,d_in,d_out", [((37,), 13, 53), ((1,), 7, 1), ((2, 65), 24, 96), ((2, 301), 16, 129)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_gelu_inference(dtype, leading, d_in, d_out, with_bias):
    x = normal(0, (*leading, d_in), dtype)
    weight, bias = normal(1, (d_in, d_out), dtype), normal(2, (d_out,), dtype) if with_bias else None
    for x_view in (x, strided(x)):
        for approximate in ("none", "tanh"):
            fused = cpu.linear_gelu_inference(x_view, weight, bias, approximate)
            assert_close(fused, ops.linear_gelu_inference(x_view, weight, bias, approximate), dtype,
                         f"linear + gelu {approximate}", factor=2)
            # and the reference is the composition it says it is
            expected = ops.gelu_forward(ops.linear_forward(x_view, weight, bias)[0], approximate)[0]
            np.testing.assert_array_equal(ops.linear_gelu_inference(x_view, weight, bias, approximate), expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("leading,width", SHAPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_residual_layernorm_inference(dtype, leading, width, contiguous):
    skip = normal(0, (*leading, width), dtype, scale=3.0) + 1
    branch = normal(1, skip.shape, dtype)
    gamma, beta = normal(2, (width,), dtype), normal(3, (width,), dtype)
    if not contiguous:
        skip, branch = strided(skip), strided(branch)
    hidden, normed = cpu.residual_layernorm_inference(skip, branch, gamma, beta, 1e-5)
    expected_hidden, expected_normed = ops.residual_layernorm_inference(skip, branch, gamma, beta, 1e-5)
    np.testing.assert_array_equal(hidden, expected_hidden)  # one addition either way
    assert_close(normed, expected_normed, dtype, "residual + layernorm")
    composed = ops.layernorm_forward(ops.residual_forward(skip, branch)[0], gamma, beta, 1e-5)[0]
    np.testing.assert_array_equal(expected_normed, composed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("leading,width", SHAPES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_residual_forward(dtype, leading, width, contiguous):
    skip, branch = normal(0, (*leading, width), dtype), normal(1, (*leading, width), dtype)
    if not contiguous:
        skip, branch = strided(skip), strided(branch)
    out, cache = cpu.residual_forward(skip, branch)
    np.testing.assert_array_equal(out, ops.residual_forward(skip, branch)[0])
    assert cache is None and out.dtype == skip.dtype
    broadcast = cpu.residual_forward(skip, branch[..., :1])[0]  # broadcasting: the reference
    np.testing.assert_array_equal(broadcast, skip + branch[..., :1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_size", [1, 40])
def test_the_inference_forward_gives_the_training_forwards_logits_and_keeps_nothing(monkeypatch, dtype, batch_size):
    """Inside no_grad in eval mode the model runs the fused kernels; the logits are those of the same
    forward outside no_grad, and no module keeps a cache."""
    import minivit

    model = minivit.ViTForImageClassification("cifar-tiny", dtype=dtype).eval()
    pixel_values = normal(0, (batch_size, 3, 32, 32), dtype)
    calls = []
    watched = ("linear_gelu_inference", "residual_layernorm_inference", "residual_forward", "gelu_forward")
    with dispatch.wrap(lambda name, function: counting(function, calls, name), names=watched), minivit.no_grad():
        fused = model.forward(pixel_values)
    assert calls.count("residual_layernorm_inference") == 2 * model.config.num_hidden_layers, calls
    assert calls.count("linear_gelu_inference") == model.config.num_hidden_layers, calls
    assert "residual_forward" not in calls and "gelu_forward" not in calls, calls
    assert all(module._cache is None for module in model.modules())
    assert_close(fused, model.forward(pixel_values), dtype, "logits", factor=4)


def test_the_reference_mode_runs_the_plain_forward_at_inference_too(monkeypatch):
    """No fast kernel, no fusion: inside no_grad the reference runs the operations the training forward
    runs (the fused operations' references are only their tests' oracles)."""
    import minivit

    model = minivit.ViTForImageClassification("cifar-tiny", dtype="float64").eval()
    pixel_values = normal(0, (2, 3, 32, 32), "float64")
    calls = []
    for name in ("linear_gelu_inference", "residual_layernorm_inference"):
        monkeypatch.setattr(ops, name, counting(getattr(ops, name), calls))
    previous = dispatch.use("reference")
    try:
        with minivit.no_grad():
            logits = model.forward(pixel_values)
        np.testing.assert_array_equal(logits, model.forward(pixel_values))
    finally:
        dispatch.use(previous)
    assert calls == []


def counting(function, calls, name=None):
    def counted(*args, **kwargs):
        calls.append(name or function.__name__)
        return function(*args, **kwargs)
    return counted
