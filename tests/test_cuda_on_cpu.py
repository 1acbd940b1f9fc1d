"""attention.cu's own source (versions 1 and 2, float32 and float16) run on the CPU against the reference
(tests/cuda_on_cpu.py: a std::thread per CUDA thread). The simulated GPU checks everything around a kernel
(its arguments, layouts, the cache) with the kernel's reference in its place; this checks the kernel's
indices, tiles, barriers and shuffles where there is no GPU. Tolerances as on the GPU: float32 within 1e-5
of the largest value (another order of summation), float16 within 2e-3 (its storage's resolution).
"""

import ctypes
import math

import numpy as np
import pytest
from cuda_on_cpu import build, compiler

from minivit import ops

pytestmark = [pytest.mark.slow, pytest.mark.skipif(compiler() is None, reason="needs a C++20 compiler")]


def _wrappers() -> str:
    text = []
    for storage, suffix in (("float", "f32"), ("half_bits", "f16")):
        for name in (f"fused_{suffix}", f"v2_d64_{suffix}", f"v2_d16_{suffix}"):
            strides = "" if name.startswith("fused") else ", long long a, long long b, long long c"
            passed = "" if name.startswith("fused") else ", a, b, c"
            text.append(f"""
extern "C" void run_forward_{name}(int grid, const {storage}* qkv, {storage}* context, {storage}* probs, int T,
                                   int H, int d, float scale) {{
    launch(grid, 128, [&] {{ attention_forward_{name}(qkv, context, probs, T, H, d, scale); }});
}}
extern "C" void run_backward_{name}(int grid, const {storage}* dcontext, const {storage}* q, const {storage}* k,
                                    const {storage}* v, const {storage}* probs, {storage}* dqkv, int T, int H,
                                    int d, float scale{strides}) {{
    launch(grid, 128, [&] {{ attention_backward_{name}(dcontext, q, k, v, probs, dqkv, T, H, d, scale{passed}); }});
}}""")
    return "\n".join(text)


@pytest.fixture(scope="module")
def library():
    return build("attention.cu", _wrappers())


def _pointer(array, offset_elements=0):
    return ctypes.c_void_p(array.ctypes.data + offset_elements * array.itemsize)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("B,T,D,H,layout", [(1, 65, 192, 3, "packed"), (1, 65, 192, 12, "packed"),
                                            (2, 17, 48, 12, "packed"), (1, 1, 4, 1, "packed"),
                                            (1, 65, 192, 3, "copies"), (2, 33, 40, 4, "copies")])
def test_attention_kernels_compute_the_reference(library, version, dtype, B, T, D, H, layout):
    if version == "v1" and layout == "copies":
        pytest.skip("version 1's backward reads only the packed views of its own forward")
    rng = np.random.default_rng(0)
    d = D // H
    qkv = rng.standard_normal((B, T, 3 * D)).astype(dtype)
    dcontext = rng.standard_normal((B, T, D)).astype(dtype)
    context = np.full((B, T, D), np.nan, dtype)  # NaN: an element the kernel does not write shows
    probs = np.full((B, H, T, T), np.nan, dtype)
    dqkv = np.full((B, T, 3 * D), np.nan, dtype)
    suffix = "f16" if dtype == "float16" else "f32"
    name = f"fused_{suffix}" if version == "v1" else f"v2_d{16 if d <= 16 else 64}_{suffix}"
    sizes = (ctypes.c_int(T), ctypes.c_int(H), ctypes.c_int(d), ctypes.c_float(1 / math.sqrt(d)))
    getattr(library, f"run_forward_{name}")(ctypes.c_int(B * H), _pointer(qkv), _pointer(context), _pointer(probs),
                                            *sizes)
    if layout == "packed":  # views of qkv: q at 0, k at D, v at 2D; (image, head, token) strides
        heads = (_pointer(qkv), _pointer(qkv, D), _pointer(qkv, 2 * D))
        strides = (T * 3 * D, d, 3 * D)
    else:  # the batched forward's contiguous (B, H, T, d) copies
        copies = [np.ascontiguousarray(part) for part in qkv.reshape(B, T, 3, H, d).transpose(2, 0, 3, 1, 4)]
        heads = tuple(_pointer(part) for part in copies)
        strides = (H * T * d, T * d, d)
    extra = () if version == "v1" else tuple(ctypes.c_longlong(s) for s in strides)
    getattr(library, f"run_backward_{name}")(ctypes.c_int(B * H), _pointer(dcontext), *heads, _pointer(probs),
                                             _pointer(dqkv), *sizes, *extra)

    expected, (cache, _) = ops.attention_heads_forward(qkv.astype(np.float32), H)
    expected_dqkv = ops.attention_heads_backward(dcontext.astype(np.float32), (cache, H))
    tolerance = 2e-3 if dtype == "float16" else 1e-5
    for what, fast, reference in (("context", context, expected), ("probabilities", probs, cache.probs),
                                  ("dqkv", dqkv, expected_dqkv)):
        scale = max(1.0, float(np.abs(reference).max()))
        np.testing.assert_allclose(fast.astype(np.float32), reference, rtol=0, atol=tolerance * scale, err_msg=what)
