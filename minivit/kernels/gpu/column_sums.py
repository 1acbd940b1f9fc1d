"""Sums over the rows of a (rows, D) matrix, column by column, in two passes (column_sums.cu).

    column_sums(rows_matrix)      (rows, D) -> (D,): the linear layer's bias gradient (linear.py)
    finish(partial, dtype)        (parts, D) partial sums -> (D,): LayerNorm's second pass (layernorm.py)

Why: CuPy's generic ``sum(axis=0)`` over 33,280 rows of 192 gets 6 blocks, each thread walking
2,080 rows one load after another (``minivit.sim.launches.reduction`` reproduces its rule); on a
GPU with 132 SMs that is most of the bias gradients' time. Here pass one runs (D / 32) x parts
blocks, 64 rows a thread, and pass two adds the parts (a few dozen rows).
"""

from __future__ import annotations

import numpy as np

from minivit import backend
from minivit.kernels.gpu.launch import WITH_HALF, compute, contiguous, typed

COLUMN_BLOCK = (32, 8)  # column_sums.cu: 32 columns, 8 row lanes
ROWS_PER_PART = 8 * 64  # pass one: 64 rows per thread


def accumulator(dtype):
    """What partial sums are kept in: float32 for float16 storage, else the storage dtype."""
    return backend.xp.float32 if dtype == np.float16 else dtype


def _partial_sums_stand_in(rows_matrix, partial, rows, D, rows_per_part):
    # the reference's bias gradient (ops/linear.py: dout_rows.sum(axis=0)), part by part
    rows_per_part = int(rows_per_part)
    for part in range(partial.shape[0]):
        partial[part] = compute(rows_matrix[part * rows_per_part:(part + 1) * rows_per_part]).sum(axis=0)


def _finish_stand_in(partial, out, parts, D):
    out[...] = partial.sum(axis=0)


COLUMN_PARTIAL_SUMS = typed("column_sums.cu", "column_partial_sums", _partial_sums_stand_in, WITH_HALF)
COLUMN_SUMS_FINISH = typed("column_sums.cu", "column_sums_finish", _finish_stand_in, WITH_HALF)


def finish(partial, dtype):
    """(parts, D) partial sums (in ``accumulator(dtype)``) -> their (D,) sum, stored as ``dtype``: one launch."""
    parts, D = partial.shape
    out = backend.xp.empty(D, dtype=dtype)
    COLUMN_SUMS_FINISH[np.dtype(dtype)](-(-D // 32), (partial, out, np.int32(parts), np.int32(D)), block=COLUMN_BLOCK)
    return out


def column_sums(rows_matrix):
    """(rows, D) -> (D,): the sum over the rows in two launches (float16, float32, float64)."""
    xp = backend.xp
    rows, D = rows_matrix.shape
    rows_matrix = contiguous(rows_matrix)
    parts = max(1, -(-rows // ROWS_PER_PART))
    partial = xp.empty((parts, D), dtype=accumulator(rows_matrix.dtype))
    COLUMN_PARTIAL_SUMS[rows_matrix.dtype](-(-D // 32) * parts, (rows_matrix, partial, np.int32(rows), np.int32(D),
                                                                 np.int32(ROWS_PER_PART)), block=COLUMN_BLOCK)
    return finish(partial, rows_matrix.dtype)
