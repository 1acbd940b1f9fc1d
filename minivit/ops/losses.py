"""Softmax cross-entropy with label smoothing, averaged over the batch.

With K classes and smoothing eps, the target distribution for label y is

    q = (1 - eps) * onehot(y) + eps / K

(PyTorch's ``label_smoothing``), and the loss is -mean_b sum_k q_bk log softmax(z_b)_k.
Targets may also be given as probabilities (B, K), as mixup and cutmix make them.
A label outside [0, K) makes the loss NaN (a wrong label must not train silently).
"""

from __future__ import annotations

from minivit import backend


def _target_distribution(targets, num_classes: int, dtype, label_smoothing: float):
    xp = backend.xp
    if targets.ndim == 1:
        if not xp.issubdtype(targets.dtype, xp.integer):
            raise TypeError(f"Integer class labels expected; got dtype {targets.dtype}.")
        q = xp.zeros((targets.shape[0], num_classes), dtype=dtype)
        q[xp.arange(targets.shape[0]), xp.clip(targets, 0, num_classes - 1)] = 1.0
        # A label outside [0, K) would silently train some other class (-1 indexes the last one):
        # its row becomes NaN instead, so the loss is NaN and training stops loudly (no host read here).
        valid = (targets >= 0) & (targets < num_classes)
        q = q * xp.where(valid, 1.0, float("nan")).astype(dtype)[:, None]
    elif targets.ndim == 2 and targets.shape[1] == num_classes:
        q = targets.astype(dtype, copy=False)
    else:
        raise ValueError(
            f"targets must be class labels (B,) or probabilities (B, {num_classes}); "
            f"got shape {targets.shape}."
        )
    if label_smoothing:
        q = (1.0 - label_smoothing) * q + label_smoothing / num_classes
    return q


def cross_entropy_forward(logits, targets, label_smoothing: float = 0.0):
    """logits (B, K), targets (B,) int or (B, K) probabilities -> (scalar loss, cache)."""
    xp = backend.xp
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}.")
    B, K = logits.shape
    q = _target_distribution(targets, K, logits.dtype, label_smoothing)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))  # (B, K)
    loss = -(q * log_probs).sum() / B
    return loss, (log_probs, q)


def cross_entropy_backward(dloss, cache):
    """d loss / d logits = (softmax(logits) - q) / B, times the upstream scalar dloss."""
    xp = backend.xp
    log_probs, q = cache
    return (xp.exp(log_probs) - q) * (dloss / log_probs.shape[0])
