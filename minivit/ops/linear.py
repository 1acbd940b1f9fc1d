"""Linear layer: out = x @ W + b.

W is stored as (D_in, D_out), so the forward reads like the math. (PyTorch
stores the transpose, (D_out, D_in); ``minivit.convert`` transposes.)

Leading dimensions are folded into one, so every product is a single 2-D
matrix multiply (one BLAS / cuBLAS call), whatever the input's rank. The bias
is added by that same call (``backend.addmm``, as PyTorch's nn.Linear does),
not by a second pass over the output.
"""

from __future__ import annotations

from minivit import backend


def linear_forward(x, weight, bias=None):
    """x (..., D_in), weight (D_in, D_out), bias (D_out,) or None -> out (..., D_out)."""
    leading_shape = x.shape[:-1]
    x2d = x.reshape(-1, x.shape[-1])  # (M, D_in)
    if bias is None:
        out = x2d @ weight  # (M, D_out)
    else:
        out = backend.addmm(bias, x2d, weight)  # x2d @ weight + bias, the bias added inside the product
    cache = (x2d, weight, bias is not None, leading_shape)
    return out.reshape(*leading_shape, weight.shape[1]), cache


def linear_backward(dout, cache):
    """Returns (dx, dweight, dbias); dbias is None when the forward had no bias.

    out = x W + b  =>  dx = dout W^T,  dW = x^T dout,  db = sum of dout over rows.
    """
    x2d, weight, has_bias, leading_shape = cache
    dout2d = dout.reshape(-1, dout.shape[-1])  # (M, D_out)
    dx = (dout2d @ weight.T).reshape(*leading_shape, weight.shape[0])
    dweight = x2d.T @ dout2d  # (D_in, D_out)
    dbias = dout2d.sum(axis=0) if has_bias else None
    return dx, dweight, dbias
