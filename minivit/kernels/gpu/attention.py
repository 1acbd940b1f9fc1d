"""Attention over all heads on the GPU: replaces ops.attention_heads_forward / attention_heads_backward,
with the same cache.

Three implementations, chosen per (storage dtype, direction) by ``ATTENTION_KERNELS`` where they fit:

    "v2"       attention.cu's second version, tiled in registers (float32 and float16 storage, float32
               arithmetic; T <= 72 tokens, head dimension <= 64): one kernel each way, one block of 128
               threads per (image, head)
    "v1"       attention.cu's first version, a warp per query row (T <= 128, 48 KB of shared memory):
               one kernel each way; its backward needs the q, k, v views its own forward made
    "batched"  cuBLAS's batched products around softmax.cu's kernel (the scale folded in): 5 launches
               forward and 7 backward instead of the reference's ~8 / ~12; every dtype and size

The fused kernels read q, k and v where the qkv projection wrote them and write dq, dk, dv there; after
a fused forward the cache's q, k and v are views of qkv. A choice that does not fit falls to the next
one down (v2, then v1, then batched). ``implementation(name)`` makes every case take one of them
(benchmarks/gpu_session/suspects.py times the three side by side; the kernel tests run each).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import HALF_AND_FLOAT, WITH_HALF, compute, contiguous, supported, typed
from minivit.kernels.gpu.softmax import softmax_rows, softmax_rows_backward
from minivit.kernels.registry import replaces

# What the dispatcher takes, per (storage dtype, direction), where it fits. The fastest of what the H200
# measured at cifar-tiny's shapes (benchmarks/results/gpu-h200-2026-12-04/check/suspects.md): v1 forward
# in both dtypes, the batched products for the float32 backward (v1's was slower), v1's for float16.
# v2 was not yet measured there: the next GPU session's suspects stage times it beside these and
# writes the table its numbers justify (attention-choice.json).
ATTENTION_KERNELS = {("float32", "forward"): "v1", ("float32", "backward"): "batched",
                     ("float16", "forward"): "v1", ("float16", "backward"): "v1"}
IMPLEMENTATIONS = ("v2", "v1", "batched")


def _attention_forward_fused_stand_in(qkv, context, probs, T, H, d, scale):
    out, (attention, _) = ops.attention_heads_forward(compute(qkv), int(H))
    context[...] = out
    probs[...] = attention.probs


def _attention_backward_fused_stand_in(dcontext, q, k, v, probs, dqkv, T, H, d, scale, *strides):
    attention = ops.AttentionCache(compute(q), compute(k), compute(v), float(scale), compute(probs), None)
    dqkv[...] = ops.attention_heads_backward(compute(dcontext), (attention, int(H)))


# --- what each kernel does inside, for the cost model (minivit.sim.cost: shared-memory loads) -------------

V1_WARPS = 4  # attention.cu: WARPS
V1_MAX_TOKENS = 32 * 4  # attention.cu: 32 x MAX_TOKENS_PER_LANE
V2_THREADS = 128  # attention.cu: V2_THREADS
V2_MAX_TOKENS = 72  # attention.cu: V2_MAX_TOKENS
V2_SCORE_TILE = (9, 5)  # attention.cu: SCORE_ROWS, SCORE_COLS (threads 8 x 16)
V2_OUT_COLS = 4  # attention.cu: OUT_COLS
SHARED_MEMORY_LIMIT = 48 * 1024  # bytes a block may use without asking for more
# registers a thread uses, from NVRTC's ptxas -v for sm_90 (they limit the blocks an SM holds)
REGISTERS = {("v1", "forward"): 40, ("v1", "backward"): 40, ("v2", "forward"): 95, ("v2", "backward"): 128}


def _sizes(arguments) -> tuple[int, int]:
    """(tokens, head dimension) from a fused kernel's arguments (..., T, H, d, scale, ...)."""
    integers = [int(a) for a in arguments if isinstance(a, np.int32)]
    return integers[0], integers[2]


def _v1_work(direction: str):
    def work(grid, block, arguments):
        T, d = _sizes(arguments)
        per_lane = -(-T // 32)
        if direction == "forward":  # a warp per row: q . k_j over d, then p . v over T, two loads a step
            loads = T * (per_lane * d * 2 + -(-d // 32) * T * 2)
            flops = 2 * T * T * d * 2
        else:  # dP by a warp per row; dV, dQ, dK an element per thread, T steps of two loads each
            loads = T * per_lane * d * 2 + 3 * (T * d // 32) * T * 2
            flops = 4 * 2 * T * T * d
        staging = 3 * -(-T * d // block)
        return {"shared_loads": grid * loads, "flops": grid * flops, "serial": staging,
                "registers": REGISTERS[("v1", direction)]}
    return work


def _v2_out_tile(d: int) -> tuple[int, int]:
    """(threads across the columns, rows a thread owns) of an output tile (attention.cu: OutputTile)."""
    out_tx = 4 if d <= 16 else 16
    return out_tx, -(-V2_MAX_TOKENS // (V2_THREADS // out_tx))


def _v2_work(direction: str):
    def work(grid, block, arguments):
        T, d = _sizes(arguments)
        warps = V2_THREADS // 32
        rows, columns = V2_SCORE_TILE
        _, out_rows = _v2_out_tile(d)
        score = d * (rows + columns)  # loads a warp issues for one (T x T) tile product over d
        output = T * (out_rows + V2_OUT_COLS)  # ... for one (T x d) tile product over T
        score_fma = rows * columns * d
        output_fma = out_rows * V2_OUT_COLS * T
        if direction == "forward":
            loads, fma, staged = warps * (score + output), score_fma + output_fma, 3 * T * d + T * T
        else:
            loads, fma, staged = warps * (score + 3 * output), score_fma + 3 * output_fma, 4 * T * d + 2 * T * T
        return {"shared_loads": grid * (loads + staged // 32), "flops": grid * V2_THREADS * 2 * fma,
                "serial": -(-staged // V2_THREADS), "registers": REGISTERS[("v2", direction)]}
    return work


ATTENTION_FORWARD_FUSED = typed("attention.cu", "attention_forward_fused", _attention_forward_fused_stand_in,
                                HALF_AND_FLOAT, _v1_work("forward"))
ATTENTION_BACKWARD_FUSED = typed("attention.cu", "attention_backward_fused", _attention_backward_fused_stand_in,
                                 HALF_AND_FLOAT, _v1_work("backward"))
ATTENTION_FORWARD_V2 = {width: typed("attention.cu", f"attention_forward_v2_d{width}",
                                     _attention_forward_fused_stand_in, HALF_AND_FLOAT, _v2_work("forward"))
                        for width in (16, 64)}
ATTENTION_BACKWARD_V2 = {width: typed("attention.cu", f"attention_backward_v2_d{width}",
                                      _attention_backward_fused_stand_in, HALF_AND_FLOAT, _v2_work("backward"))
                         for width in (16, 64)}


def _v1_shared_bytes(T: int, d: int) -> int:
    """Shared memory of version 1 (float32 values): the larger of forward and backward."""
    forward = 2 * T * (d + 1) + V1_WARPS * (d + T)
    backward = T * (d + 1) + T * (T + 1) + V1_WARPS * d
    return 4 * max(forward, backward)


def _v2_shared_bytes(T: int, d: int) -> int:
    """Shared memory of version 2 (float32 values): two regions, d (T | 1) and max(T, d) (T | 1)."""
    stride = T | 1
    return 4 * (d * stride + max(T, d) * stride)


def _fits(name: str, T: int, d: int) -> bool:
    if name == "v2":
        return T <= V2_MAX_TOKENS and d <= 4 * 16 and _v2_shared_bytes(T, d) <= SHARED_MEMORY_LIMIT
    if name == "v1":
        return T <= V1_MAX_TOKENS and _v1_shared_bytes(T, d) <= SHARED_MEMORY_LIMIT
    return True


def _choose(dtype, direction: str, T: int, d: int) -> str:
    """The implementation for this case: the table's choice, or the next one down that fits."""
    if np.dtype(dtype) not in HALF_AND_FLOAT:
        return "batched"
    wanted = ATTENTION_KERNELS.get((np.dtype(dtype).name, direction), "batched")
    for name in IMPLEMENTATIONS[IMPLEMENTATIONS.index(wanted):]:
        if _fits(name, T, d):
            return name
    return "batched"


@contextlib.contextmanager
def implementation(name: str):
    """Every (dtype, direction) takes ``name`` ("v2", "v1" or "batched") where it fits, inside the block."""
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"implementation {name!r}: choose one of {IMPLEMENTATIONS}")
    saved = dict(ATTENTION_KERNELS)
    ATTENTION_KERNELS.update({key: name for key in ATTENTION_KERNELS})
    try:
        yield
    finally:
        ATTENTION_KERNELS.clear()
        ATTENTION_KERNELS.update(saved)


@replaces("attention_heads_forward")
def attention_heads_forward(qkv, num_heads: int, dropout_p: float = 0.0, rng=None, training: bool = False):
    """Replaces ops.attention_heads_forward, with the same cache.

    Fused (v2 or v1, ``ATTENTION_KERNELS``): one kernel, one block per (image, head), reading q, k
    and v where they lie in qkv and writing the merged context and the probabilities (attention.cu);
    the cache's q, k and v are views of qkv. Batched: 5 launches: one copy splits qkv into
    contiguous q, k and v for every head at once, two batched cuBLAS products around one softmax
    kernel (the scale folded in), one copy merges the heads.
    """
    if (dropout_p and training) or not supported(qkv, dtypes=WITH_HALF):
        return ops.attention_heads_forward(qkv, num_heads, dropout_p, rng, training)
    xp = backend.xp
    B, T, three_D = qkv.shape
    D = three_D // 3
    d = D // num_heads
    scale = 1.0 / math.sqrt(d)
    chosen = _choose(qkv.dtype, "forward", T, d)
    if chosen != "batched":
        qkv = contiguous(qkv)
        context = xp.empty((B, T, D), dtype=qkv.dtype)
        probs = xp.empty((B, num_heads, T, T), dtype=qkv.dtype)
        arguments = (qkv, context, probs, np.int32(T), np.int32(num_heads), np.int32(d), np.float32(scale))
        if chosen == "v2":
            ATTENTION_FORWARD_V2[16 if d <= 16 else 64][qkv.dtype](B * num_heads, arguments, block=V2_THREADS,
                                                                  shared_mem=_v2_shared_bytes(T, d))
        else:
            ATTENTION_FORWARD_FUSED[qkv.dtype](B * num_heads, arguments, block=32 * V1_WARPS,
                                               shared_mem=_v1_shared_bytes(T, d))
        heads = qkv.reshape(B, T, 3, num_heads, d).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, d): views
        return context, (ops.AttentionCache(heads[0], heads[1], heads[2], scale, probs, None), num_heads)
    heads = xp.ascontiguousarray(qkv.reshape(B, T, 3, num_heads, d).transpose(2, 0, 3, 1, 4))  # (3, B, H, T, d)
    q, k, v = heads[0], heads[1], heads[2]
    probs = softmax_rows(xp.matmul(q, k.swapaxes(-1, -2)), scale)  # (B, H, T, T)
    out = xp.matmul(probs, v)  # (B, H, T, d)
    context = out.transpose(0, 2, 1, 3).reshape(B, T, D)  # one copy: the heads merged
    return context, (ops.AttentionCache(q, k, v, scale, probs, None), num_heads)


def _views_of_packed_qkv(q, k, v) -> bool:
    """q, k and v (B, H, T, d) are the fused forward's views of one (B, T, 3D) array (q's memory
    first, k's D values on, v's 2D on): version 1's backward reads them there."""
    B, H, T, d = q.shape
    item = q.itemsize
    packed = (T * 3 * H * d * item, d * item, 3 * H * d * item, item)
    if not (q.strides == k.strides == v.strides == packed and q.dtype == k.dtype == v.dtype):
        return False
    return (k.data.ptr - q.data.ptr == H * d * item) and (v.data.ptr - q.data.ptr == 2 * H * d * item)


def _element_strides(q, k, v) -> tuple[int, int, int] | None:
    """(image, head, token) strides in elements shared by q, k and v (B, H, T, d) with unit stride along d
    (version 2's backward reads any such layout), or None."""
    if not (q.strides == k.strides == v.strides and q.dtype == k.dtype == v.dtype) or q.strides[3] != q.itemsize:
        return None
    return tuple(stride // q.itemsize for stride in q.strides[:3])


@replaces("attention_heads_backward")
def attention_heads_backward(dcontext, cache):
    """Replaces ops.attention_heads_backward. Fused (v2, or v1 after a fused forward): one kernel
    (attention.cu) writes dq, dk and dv into (B, T, 3D). Batched: 7 launches (two layout copies,
    four batched products, one softmax-backward kernel with the scale folded in); dq, dk and dv are
    written into one (3, B, H, T, d) array and leave as one (B, T, 3D) copy."""
    attention, num_heads = cache
    q, k, v, scale, probs, dropout_mask = attention
    if dropout_mask is not None or not supported(dcontext, probs, dtypes=WITH_HALF):
        return ops.attention_heads_backward(dcontext, cache)
    xp = backend.xp
    B, T, D = dcontext.shape
    d = D // num_heads
    chosen = _choose(q.dtype, "backward", T, d)
    strides = _element_strides(q, k, v)
    if chosen == "v2" and strides is not None:
        dqkv = xp.empty((B, T, 3 * D), dtype=q.dtype)
        ATTENTION_BACKWARD_V2[16 if d <= 16 else 64][q.dtype](
            B * num_heads, (contiguous(dcontext), q, k, v, contiguous(probs), dqkv, np.int32(T), np.int32(num_heads),
                            np.int32(d), np.float32(scale), *(np.int64(s) for s in strides)),
            block=V2_THREADS, shared_mem=_v2_shared_bytes(T, d))
        return dqkv
    if chosen in ("v2", "v1") and _fits("v1", T, d) and _views_of_packed_qkv(q, k, v):
        dqkv = xp.empty((B, T, 3 * D), dtype=q.dtype)
        ATTENTION_BACKWARD_FUSED[q.dtype](B * num_heads, (contiguous(dcontext), q, k, v, probs, dqkv, np.int32(T),
                                                          np.int32(num_heads), np.int32(d), np.float32(scale)),
                                          block=32 * V1_WARPS, shared_mem=_v1_shared_bytes(T, d))
        return dqkv
    dheads = xp.ascontiguousarray(dcontext.reshape(B, T, num_heads, d).transpose(0, 2, 1, 3))
    dqkv_heads = xp.empty((3, *q.shape), dtype=q.dtype)  # (3, B, H, T, d)
    xp.matmul(probs.swapaxes(-1, -2), dheads, out=dqkv_heads[2])  # dV = P^T dout
    dprobs = xp.matmul(dheads, v.swapaxes(-1, -2))  # dP = dout V^T
    dscores = softmax_rows_backward(dprobs, probs, scale)  # dS, times the scale
    xp.matmul(dscores, k, out=dqkv_heads[0])  # dQ = dS K
    xp.matmul(dscores.swapaxes(-1, -2), q, out=dqkv_heads[1])  # dK = dS^T Q
    return dqkv_heads.transpose(1, 3, 0, 2, 4).reshape(B, T, 3 * D)  # one copy into qkv's layout
