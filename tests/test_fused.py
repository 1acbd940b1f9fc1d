"""Fused kernels compute what the readable path computes (minivit.fused against minivit.ops)."""

import numpy as np
import pytest

from minivit import fused, ops

pytest.importorskip("numba")


@pytest.fixture
def plain(monkeypatch):
    """Run a function with fused kernels switched off: the readable NumPy path."""
    def run(function, *args):
        monkeypatch.setenv("MINIVIT_FUSED", "0")
        try:
            return function(*args)
        finally:
            monkeypatch.setenv("MINIVIT_FUSED", "1")
    return run


def test_fused_kernels_are_used_by_default():
    assert fused.cpu_kernels() is not None


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-6), ("float64", 1e-15)])
def test_gelu(plain, dtype, atol):
    x = (3 * np.random.default_rng(0).standard_normal((37, 53))).astype(dtype)
    dout = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    fused_out, fused_cache = ops.gelu_forward(x)
    plain_out, plain_cache = plain(ops.gelu_forward, x)
    np.testing.assert_allclose(fused_out, plain_out, atol=atol, rtol=0)
    np.testing.assert_allclose(ops.gelu_backward(dout, fused_cache), plain(ops.gelu_backward, dout, plain_cache),
                               atol=10 * atol, rtol=0)
    assert fused_out.dtype == dtype


@pytest.mark.parametrize("dtype,atol", [("float32", 2e-6), ("float64", 1e-13)])
def test_layernorm(plain, dtype, atol):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 9, 24)) * 3 + 1).astype(dtype)
    gamma, beta = rng.standard_normal(24).astype(dtype), rng.standard_normal(24).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    fused_out, fused_cache = ops.layernorm_forward(x, gamma, beta, 1e-5)
    plain_out, plain_cache = plain(ops.layernorm_forward, x, gamma, beta, 1e-5)
    np.testing.assert_allclose(fused_out, plain_out, atol=atol, rtol=0)
    for fused_grad, plain_grad in zip(ops.layernorm_backward(dout, fused_cache),
                                      plain(ops.layernorm_backward, dout, plain_cache)):
        np.testing.assert_allclose(fused_grad, plain_grad, atol=10 * atol, rtol=0)


def test_non_contiguous_input(plain):
    x = np.random.default_rng(0).standard_normal((6, 10)).astype("float32")[:, ::2]
    np.testing.assert_allclose(ops.gelu_forward(x)[0], plain(ops.gelu_forward, x)[0], atol=1e-6)


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-6), ("float64", 1e-15)])
def test_softmax(plain, dtype, atol):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 2, 7, 11)) * 4).astype(dtype)
    dprobs = rng.standard_normal(x.shape).astype(dtype)
    fused_probs, fused_cache = ops.softmax_forward(x)
    plain_probs, plain_cache = plain(ops.softmax_forward, x)
    np.testing.assert_allclose(fused_probs, plain_probs, atol=atol, rtol=0)
    np.testing.assert_allclose(ops.softmax_backward(dprobs, fused_cache),
                               plain(ops.softmax_backward, dprobs, plain_cache), atol=10 * atol, rtol=0)
    assert fused_probs.dtype == dtype


def test_exp32_is_exp_to_float32_precision():
    """The vectorisable float32 exp of the fused kernels, over its whole range."""
    from minivit.fused import cpu

    x = np.linspace(-87, 88, 200_001, dtype=np.float32).reshape(1, -1)
    exact = np.exp(x.astype(np.float64))
    relative = np.abs(cpu.exp32(x) - exact) / exact
    assert relative.max() < 2e-7  # float32's own rounding is 6e-8


def test_a_nan_still_comes_out_as_nan():
    # The kernels may reorder sums but not assume NaN away: a diverging run must show a NaN loss.
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 0.0, 1.0], [0.5, 0.0, 1.0]], dtype="float32")
    probs, _ = ops.softmax_forward(x)
    assert np.isnan(probs[:2]).all()  # a NaN or an inf score makes its row NaN, as in NumPy
    assert np.isfinite(probs[2]).all()
    assert np.isnan(ops.gelu_forward(x)[0][0, 0])
