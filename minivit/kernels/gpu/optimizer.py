"""The optimizer's updates and float16 training's pieces on the GPU, over the whole flat parameter buffer
(optimizer.cu): replaces ops.adamw_update, sgd_update (one launch each instead of ~11 / ~6),
clip_by_norm (three launches; the norm and the scale never leave the device), unscale_gradients and
update_loss_scale (one launch each)."""

from __future__ import annotations

import math

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import BLOCK, CudaKernel, grid, supported, typed
from minivit.kernels.registry import replaces

# --- stand-ins: each kernel's outputs computed by the reference (the simulated GPU runs these) ------------


def _per_element(array, value, per_element):
    return array if per_element else float(value)


def _skip(skip, has_skip):
    return skip if has_skip else None


def _adamw_stand_in(data, grad, exp_avg, exp_avg_sq, lr_scale, lr_scale_value, lr_scale_per_element, decay,
                    decay_value, decay_per_element, lr, beta1, beta2, eps, step, skip, has_skip, n):
    ops.adamw_update(data, grad, exp_avg, exp_avg_sq, float(lr),
                     _per_element(lr_scale, lr_scale_value, lr_scale_per_element),
                     _per_element(decay, decay_value, decay_per_element), float(beta1), float(beta2), float(eps),
                     int(step), _skip(skip, has_skip))


def _sgd_stand_in(data, grad, momentum_buffer, lr_scale, lr_scale_value, lr_scale_per_element, decay, decay_value,
                  decay_per_element, lr, momentum, nesterov, first_step, skip, has_skip, n):
    # The kernel is told whether this is the first step, all the reference asks of its step.
    ops.sgd_update(data, grad, momentum_buffer, float(lr),
                   _per_element(lr_scale, lr_scale_value, lr_scale_per_element),
                   _per_element(decay, decay_value, decay_per_element), float(momentum), bool(nesterov),
                   1 if first_step else 2, _skip(skip, has_skip))


def _unscale_stand_in(grad, scale, out, found_inf, n):
    ops.unscale_gradients(grad, scale, out, found_inf)


def _update_loss_scale_stand_in(scale, growth_tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    ops.update_loss_scale(scale, growth_tracker, found_inf, float(growth_factor), float(backoff_factor),
                          int(growth_interval))


# Clipping is three kernels: the blocks' sums of squares, then the norm and the factor, then the scaling.
def _squares_by_block_stand_in(g, block_sums, n):
    # The reference's norm (with an infinite max_norm nothing is scaled, and g is a copy), squared, in
    # block 0; the other blocks add nothing.
    block_sums[...] = 0.0
    block_sums[0] = ops.clip_by_norm(g.astype(block_sums.dtype), math.inf) ** 2


def _norm_and_scale_stand_in(block_sums, blocks, max_norm, norm, scale):
    # The kernel's contract: the norm, and the factor ops.clip_by_norm scales by (its expression).
    norm[...] = backend.xp.sqrt(block_sums.sum())
    scale[...] = backend.xp.minimum(1.0, float(max_norm) / (norm + 1e-6))


def _scale_by_stand_in(g, scale, n):
    g *= scale[0]  # the reference's in-place scaling, by the factor the previous kernel left on the device


ADAMW_UPDATE = typed("optimizer.cu", "adamw_update", _adamw_stand_in)
SGD_UPDATE = typed("optimizer.cu", "sgd_update", _sgd_stand_in)
SQUARES_BY_BLOCK = typed("optimizer.cu", "squares_by_block", _squares_by_block_stand_in)
NORM_AND_SCALE = typed("optimizer.cu", "norm_and_scale", _norm_and_scale_stand_in)
SCALE_BY = typed("optimizer.cu", "scale_by", _scale_by_stand_in)
UNSCALE_GRADIENTS = CudaKernel("optimizer.cu", "unscale_gradients_f16", _unscale_stand_in)
UPDATE_LOSS_SCALE = CudaKernel("optimizer.cu", "update_loss_scale", _update_loss_scale_stand_in)


# --- the kernels' arguments -------------------------------------------------------------------------------


def _rate_and_decay(data, lr_scale, weight_decay) -> tuple:
    """Kernel arguments for a per-element array or one number, for the rate scale and the decay."""
    def one(value):
        if backend.is_array(value):
            return value, np.float64(0.0), np.int32(1)
        return data, np.float64(value), np.int32(0)  # the array argument is not read

    return (*one(lr_scale), *one(weight_decay))


def _updatable(*arrays) -> bool:
    return supported(*arrays) and all(a.flags.c_contiguous and a.shape == arrays[0].shape for a in arrays)


def _skip_arguments(data, skip) -> tuple:
    if skip is None:
        return data, np.int32(0)  # (not read)
    return skip.astype(backend.xp.float32, copy=False), np.int32(1)


# --- the fast functions -----------------------------------------------------------------------------------


@replaces("adamw_update")
def adamw_update(data, grad, exp_avg, exp_avg_sq, lr, lr_scale, weight_decay, beta1, beta2, eps, step,
                 skip=None):
    """Replaces ops.adamw_update: one kernel over the whole (flat) buffer (optimizer.cu)."""
    per_element = [a for a in (lr_scale, weight_decay) if backend.is_array(a)]
    if not _updatable(data, grad, exp_avg, exp_avg_sq, *per_element):
        return ops.adamw_update(data, grad, exp_avg, exp_avg_sq, lr, lr_scale, weight_decay, beta1, beta2, eps,
                                step, skip)
    ADAMW_UPDATE[data.dtype](grid(data.size), (data, grad, exp_avg, exp_avg_sq,
                                               *_rate_and_decay(data, lr_scale, weight_decay),
                                               np.float64(lr), np.float64(beta1), np.float64(beta2), np.float64(eps),
                                               np.int64(step), *_skip_arguments(data, skip), np.int64(data.size)))


@replaces("sgd_update")
def sgd_update(data, grad, momentum_buffer, lr, lr_scale, weight_decay, momentum, nesterov, step, skip=None):
    """Replaces ops.sgd_update: one kernel over the whole (flat) buffer (optimizer.cu)."""
    per_element = [a for a in (lr_scale, weight_decay) if backend.is_array(a)]
    if not _updatable(data, grad, momentum_buffer, *per_element):
        return ops.sgd_update(data, grad, momentum_buffer, lr, lr_scale, weight_decay, momentum, nesterov, step,
                              skip)
    SGD_UPDATE[data.dtype](grid(data.size), (data, grad, momentum_buffer,
                                             *_rate_and_decay(data, lr_scale, weight_decay), np.float64(lr),
                                             np.float64(momentum), np.int32(nesterov), np.int32(step == 1),
                                             *_skip_arguments(data, skip), np.int64(data.size)))


@replaces("unscale_gradients")
def unscale_gradients(grad, scale, out, found_inf) -> None:
    """Replaces ops.unscale_gradients (float16 gradients into float32): one kernel (optimizer.cu)."""
    xp = backend.xp
    if (grad.dtype != xp.float16 or out.dtype != xp.float32 or scale.dtype != xp.float32
            or found_inf.dtype != xp.float32 or not (grad.flags.c_contiguous and out.flags.c_contiguous)):
        return ops.unscale_gradients(grad, scale, out, found_inf)
    UNSCALE_GRADIENTS(grid(grad.size), (grad, scale, out, found_inf, np.int64(grad.size)))


@replaces("update_loss_scale")
def update_loss_scale(scale, growth_tracker, found_inf, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                      growth_interval: int = 2000) -> None:
    """Replaces ops.update_loss_scale: one thread of one kernel (optimizer.cu)."""
    xp = backend.xp
    if scale.dtype != xp.float32 or growth_tracker.dtype != xp.int32 or found_inf.dtype != xp.float32:
        return ops.update_loss_scale(scale, growth_tracker, found_inf, growth_factor, backoff_factor,
                                     growth_interval)
    UPDATE_LOSS_SCALE(1, (scale, growth_tracker, found_inf, np.float64(growth_factor), np.float64(backoff_factor),
                          np.int32(growth_interval)), block=1)


@replaces("clip_by_norm")
def clip_by_norm(grad, max_norm: float):
    """Replaces ops.clip_by_norm: three kernels, the norm and the scale never leave the device."""
    if not _updatable(grad):
        return ops.clip_by_norm(grad, max_norm)
    xp = backend.xp
    blocks = grid(grad.size)
    block_sums = xp.empty(blocks, dtype=xp.float64)
    norm, scale = xp.empty(1, dtype=grad.dtype), xp.empty(1, dtype=grad.dtype)
    SQUARES_BY_BLOCK[grad.dtype](blocks, (grad, block_sums, np.int64(grad.size)), shared_mem=BLOCK * 8)
    NORM_AND_SCALE[grad.dtype](1, (block_sums, np.int32(blocks), np.float64(max_norm), norm, scale),
                               shared_mem=BLOCK * 8)
    SCALE_BY[grad.dtype](blocks, (grad, scale, np.int64(grad.size)))
    return norm.reshape(())
