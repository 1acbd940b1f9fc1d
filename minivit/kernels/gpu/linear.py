"""The linear layer's backward on the GPU: replaces ops.linear_backward. The products are cuBLAS's (the
reference's own ``@``, dx only when asked); the bias gradient is column_sums.py's two-pass sum over the
rows instead of CuPy's generic ``sum(axis=0)`` (6 to 24 blocks, thousands of rows a thread). No CUDA
source of its own."""

from __future__ import annotations

from minivit import ops
from minivit.kernels.gpu.column_sums import column_sums
from minivit.kernels.gpu.launch import WITH_HALF, supported
from minivit.kernels.registry import replaces


@replaces("linear_backward")
def linear_backward(dout, cache, input_grad: bool = True):
    """Replaces ops.linear_backward: the same two products (dx only with ``input_grad``), and the bias
    gradient in two launches of column_sums.cu."""
    x, weight, has_bias = cache
    if not (has_bias and supported(dout, dtypes=WITH_HALF)):
        return ops.linear_backward(dout, cache, input_grad)
    D_in, D_out = weight.shape
    x_rows = x.reshape(-1, D_in)  # (M, D_in)
    dout_rows = dout.reshape(-1, D_out)  # (M, D_out)
    dx = (dout_rows @ weight.T).reshape(*dout.shape[:-1], D_in) if input_grad else None
    dweight = x_rows.T @ dout_rows  # (D_in, D_out)
    return dx, dweight, column_sums(dout_rows)
