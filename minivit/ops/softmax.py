"""Softmax over one axis, and its Jacobian-vector product.

    y_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x))

The Jacobian is dy_i/dx_j = y_i (delta_ij - y_j), so for an upstream gradient dy

    dx_j = sum_i dy_i y_i (delta_ij - y_j) = y_j (dy_j - sum_i dy_i y_i)

which never forms the N x N Jacobian.

Cache: (probs, axis).
"""

from __future__ import annotations

from minivit import backend


def softmax_forward(x, axis: int = -1):
    """Softmax over ``axis``: every slice along it sums to 1."""
    xp = backend.xp
    shifted = x - x.max(axis=axis, keepdims=True)  # exp cannot overflow; the result is the same
    exps = xp.exp(shifted)
    probs = exps / exps.sum(axis=axis, keepdims=True)
    return probs, (probs, axis)


def softmax_backward(dprobs, cache):
    """dx = y * (dy - sum(dy * y)) along the softmax's axis."""
    probs, axis = cache
    return probs * (dprobs - (dprobs * probs).sum(axis=axis, keepdims=True))
