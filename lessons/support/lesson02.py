"""Lesson 2, the patch projection, forward and backward: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import numpy as np

from .diagnosis import NotYet, check_array, check_gradients, check_true
from .exercises import keep_engine_function, solution

# --- checks ---------------------------------------------------------------------------------------

def check_linear_backward(linear_backward) -> None:
    """linear_backward(dout, cache) with the engine's cache (x, weight, has_bias)."""
    from minivit import ops

    rng = np.random.default_rng(0)
    B, N, K, D = 3, 4, 6, 5
    inputs = {"x": rng.standard_normal((B, N, K)), "weight": rng.standard_normal((K, D)),
              "bias": rng.standard_normal(D)}
    sizes = {"the batch size B": B, "the number of patches N": N, "the number of rows B*N": B * N}
    check_gradients(ops.linear_forward, linear_backward, inputs,
                    "linear_backward against finite differences", grads=["dx", "dweight", "dbias"], sizes=sizes)
    # The classifier head calls the same function on 2-D input (B, D): an answer written for 3-D only
    # (an einsum over "bnk", a sum over axes (0, 1)) must fail here, not later inside the model.
    rows = {"x": rng.standard_normal((7, K)), "weight": rng.standard_normal((K, D)), "bias": rng.standard_normal(D)}
    what = "linear_backward on 2-D input x (B, K), as the classifier head calls it"
    try:
        check_gradients(ops.linear_forward, linear_backward, rows, what, grads=["dx", "dweight", "dbias"],
                        sizes={"the number of rows B": 7})
    except NotYet:
        raise
    except Exception as error:  # noqa: BLE001 (an answer written for 3-D arrays)
        raise NotYet(what, [f"your function raised {type(error).__name__}: {error}",
                            "it works on (B, N, K) but not on (B, K): flatten every leading axis with "
                            "x.reshape(-1, K) instead of naming them"]) from None
    out, cache = ops.linear_forward(inputs["x"], inputs["weight"], None)
    returned = linear_backward(np.ones_like(out), cache)
    dbias = returned[2] if isinstance(returned, tuple) and len(returned) == 3 else "?"
    check_true(dbias is None, "without a bias (has_bias False), dbias is None",
               yours=None if dbias is None else f"an array of shape {np.shape(dbias)}", expected=None,
               hint="The engine adds nothing to a parameter that does not exist: return None for dbias.")
    keep_engine_function(linear_backward, "linear_backward")


def check_col2im_by_loops(col2im_by_loops) -> None:
    from minivit import ops

    rng = np.random.default_rng(1)
    for shape, P, stride in (((2, 3, 8, 8), 4, 4), ((2, 3, 10, 10), 4, 2)):
        dcols = rng.standard_normal(ops.im2col(np.zeros(shape), P, stride).shape)
        expected = ops.col2im(dcols, shape, P, stride)
        copies = ops.col2im(np.ones_like(dcols), shape, P, stride)
        grid = (shape[2] - P) // stride + 1
        assigned = np.zeros(shape)  # the slip: = instead of +=
        for r in range(grid):
            for c in range(grid):
                window = (slice(None), slice(None), slice(r * stride, r * stride + P),
                          slice(c * stride, c * stride + P))
                assigned[window] = dcols[:, r * grid + c].reshape(shape[0], shape[1], P, P)
        yours = col2im_by_loops(dcols, shape, P, stride)
        check_array(yours, expected, f"col2im_by_loops, patch {P}, stride {stride}", "dx",
                    mistakes={"assigning each window (dx[...] = ...) instead of adding to it (+=)": assigned},
                    regions={"where patches overlap (pixels with more than one copy): each copy's gradient "
                             "must be added": copies > 1})


# --- solutions ------------------------------------------------------------------------------------

@solution
def linear_backward(dout, cache):
    x, weight, has_bias = cache
    D_in, D_out = weight.shape
    dx = dout @ weight.T  # (..., D_in)
    dweight = x.reshape(-1, D_in).T @ dout.reshape(-1, D_out)  # every row used the same W: sum over rows
    dbias = dout.reshape(-1, D_out).sum(axis=0) if has_bias else None
    return dx, dweight, dbias


@solution
def col2im_by_loops(dcols, image_shape, patch_size, stride):
    B, C, H, W = image_shape
    P = patch_size
    grid = (H - P) // stride + 1
    dx = np.zeros(image_shape)
    for r in range(grid):
        for c in range(grid):
            n = r * grid + c
            dx[:, :, r * stride:r * stride + P, c * stride:c * stride + P] += dcols[:, n].reshape(B, C, P, P)
    return dx


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""Because $b$ is added to every row, every patch of every image: the same parameter is used
    $B \cdot N$ times, and the gradient of a shared parameter is the sum of the gradients of its
    uses.""",
    r"""With patch 4 and stride 2 on 10×10 there are 4×4 patches. Pixels in the outer two rows and
    columns (rows and columns 0, 1, 8, 9) belong to one patch along that axis; the others to two.
    So the four 2×2 corner blocks have exactly one copy, and the 6×6 centre block (rows and
    columns 2 to 7) has four; the edges in between have two.""",
    r"""The sum grows with the batch: twice the images, about twice the gradient, so the step size
    would depend on the batch size. Averaging the loss over the batch divides it by $B$, which
    makes the gradient an average and the learning rate mean the same thing at any batch size.""",
]
