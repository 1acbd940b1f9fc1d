"""The MLP's first half at inference: GELU(x @ W + b), a linear layer then its activation.

Inference only (no cache, no backward): what the model runs inside ``no_grad`` in eval mode,
where nothing is kept for a backward. Training runs ``linear_forward`` and ``gelu_forward``
one after the other and keeps both caches. This reference is exactly that composition; it
exists as an operation of its own so that a fast kernel can do both in one pass over the
product (``minivit/kernels/cpu.py``: the bias and the GELU applied while the rows are in cache).
"""

from __future__ import annotations

from minivit.ops.gelu import gelu_forward
from minivit.ops.linear import linear_forward


def linear_gelu_inference(x, weight, bias=None, approximate: str = "none"):
    """x (..., D_in), weight (D_in, D_out), bias (D_out,) or None -> GELU(x W + b) (..., D_out)."""
    hidden, _ = linear_forward(x, weight, bias)
    activated, _ = gelu_forward(hidden, approximate)
    return activated
