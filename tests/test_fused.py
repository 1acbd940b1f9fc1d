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
