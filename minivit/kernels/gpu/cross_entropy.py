"""Cross-entropy on the GPU: replaces ops.cross_entropy_forward / cross_entropy_backward, one launch each
(cross_entropy.cu) instead of the reference's ~12 / ~3; the loss stays on the device."""

from __future__ import annotations

import numpy as np

from minivit import backend, ops
from minivit.kernels.gpu.launch import BLOCK, contiguous, grid, supported, typed
from minivit.kernels.registry import replaces


def _forward_stand_in(logits, labels, soft_targets, use_labels, log_probs, q, loss, B, K, smoothing):
    # The kernel receives the labels or the soft targets, as use_labels says.
    targets = labels if use_labels else soft_targets
    value, (reference_log_probs, reference_q) = ops.cross_entropy_forward(logits, targets, float(smoothing))
    log_probs[...] = reference_log_probs
    q[...] = reference_q
    loss[...] = value


def _backward_stand_in(log_probs, q, dlogits, n, scale):
    # The kernel receives dloss / B (scale), the reference dloss.
    dlogits[...] = ops.cross_entropy_backward(float(scale) * log_probs.shape[0], (log_probs, q))


CROSS_ENTROPY_FORWARD = typed("cross_entropy.cu", "cross_entropy_forward", _forward_stand_in)
CROSS_ENTROPY_BACKWARD = typed("cross_entropy.cu", "cross_entropy_backward", _backward_stand_in)


@replaces("cross_entropy_forward")
def cross_entropy_forward(logits, targets, label_smoothing: float = 0.0):
    """Replaces ops.cross_entropy_forward: one kernel (cross_entropy.cu); the loss stays on the device."""
    xp = backend.xp
    labels_given = targets.ndim == 1 and xp.issubdtype(targets.dtype, xp.integer)
    soft_given = targets.ndim == 2 and targets.shape == logits.shape
    if (not (labels_given or soft_given) or not supported(logits) or logits.ndim != 2
            or not 0.0 <= label_smoothing < 1.0 or targets.shape[0] != logits.shape[0]):
        return ops.cross_entropy_forward(logits, targets, label_smoothing)  # which explains what is wrong
    B, K = logits.shape
    logits = contiguous(logits)
    labels = contiguous(targets.astype(xp.int64, copy=False)) if labels_given else logits  # (else: not read)
    soft = contiguous(targets.astype(logits.dtype, copy=False)) if soft_given else logits
    log_probs, q = xp.empty_like(logits), xp.empty_like(logits)
    loss = xp.empty(1, dtype=logits.dtype)
    CROSS_ENTROPY_FORWARD[logits.dtype](1, (logits, labels, soft, np.int32(labels_given), log_probs, q, loss,
                                            np.int32(B), np.int32(K), np.float64(label_smoothing)),
                                        shared_mem=BLOCK * 8)
    return loss.reshape(()), (log_probs, q)


@replaces("cross_entropy_backward")
def cross_entropy_backward(dloss, cache):
    """Replaces ops.cross_entropy_backward: one kernel; ``dloss`` a number."""
    log_probs, q = cache
    if not isinstance(dloss, (int, float)) or not supported(log_probs, q):
        return ops.cross_entropy_backward(dloss, cache)
    dlogits = backend.xp.empty_like(log_probs)
    CROSS_ENTROPY_BACKWARD[log_probs.dtype](grid(log_probs.size), (log_probs, q, dlogits, np.int64(log_probs.size),
                                                                   np.float64(dloss / log_probs.shape[0])))
    return dlogits
