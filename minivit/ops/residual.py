"""Residual connection: out = x + f(x).

The gradient of a sum is copied to both terms, so the upstream gradient
reaches x unchanged through the skip path, whatever f does: the reason deep
pre-norm transformers train.
"""

from __future__ import annotations


def residual_forward(skip, branch):
    return skip + branch, None


def residual_backward(dout, cache=None):
    """Returns (dskip, dbranch): both equal dout."""
    return dout, dout
