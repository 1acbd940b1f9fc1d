"""Linear layer: out = x @ W + b.

W is stored as (D_in, D_out), so the forward reads like the math. (PyTorch
stores the transpose, (D_out, D_in); ``minivit.convert`` transposes.)

Cache: (x, weight, has_bias).
"""

from __future__ import annotations


def linear_forward(x, weight, bias=None):
    """x (..., D_in), weight (D_in, D_out), bias (D_out,) or None -> out (..., D_out)."""
    D_in, D_out = weight.shape
    x_rows = x.reshape(-1, D_in)  # (M, D_in): every leading axis is rows, each row times W
    out = x_rows @ weight  # (M, D_out)
    if bias is not None:
        out = out + bias  # broadcast over the rows
    return out.reshape(*x.shape[:-1], D_out), (x, weight, bias is not None)


def linear_backward(dout, cache, input_grad: bool = True):
    """Returns (dx, dweight, dbias); dbias is None when the forward had no bias, dx None when
    ``input_grad`` is False (nothing needs it: the patch projection's input is the image).

    out = x W + b, row by row, so:
        dx = dout W^T
        dW = sum over rows of x^T dout   (every row used the same W)
        db = sum over rows of dout       (every row used the same b)
    """
    x, weight, has_bias = cache
    D_in, D_out = weight.shape
    x_rows = x.reshape(-1, D_in)  # (M, D_in): all leading axes are rows
    dout_rows = dout.reshape(-1, D_out)  # (M, D_out)
    dx = (dout_rows @ weight.T).reshape(*dout.shape[:-1], D_in) if input_grad else None  # (..., D_in)
    dweight = x_rows.T @ dout_rows  # (D_in, D_out)
    dbias = dout_rows.sum(axis=0) if has_bias else None
    return dx, dweight, dbias
