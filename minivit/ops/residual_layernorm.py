"""A residual connection followed by the next LayerNorm, at inference:

    hidden = skip + branch          (the residual stream, passed on)
    normed = LayerNorm(hidden)      (what the next sub-layer reads)

In a pre-norm transformer every residual add is followed by a LayerNorm: the block's own
``layernorm_after``, the next block's ``layernorm_before``, or the model's final one.
Inference only (no cache, no backward): what the model runs inside ``no_grad`` in eval mode.
This reference is exactly ``residual_forward`` then ``layernorm_forward``; it exists as an
operation of its own so that a fast kernel can do both in one pass over the rows.
"""

from __future__ import annotations

from minivit.ops.layernorm import layernorm_forward
from minivit.ops.residual import residual_forward


def residual_layernorm_inference(skip, branch, gamma, beta, eps: float = 1e-12):
    """skip, branch (..., D), gamma, beta (D,) -> (hidden, normed), both (..., D)."""
    hidden, _ = residual_forward(skip, branch)
    normed, _ = layernorm_forward(hidden, gamma, beta, eps)
    return hidden, normed
