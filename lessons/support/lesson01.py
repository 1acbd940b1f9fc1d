"""Lesson 1, images to patches: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

from .diagnosis import check_array, distinct
from .exercises import solution

# --- checks ---------------------------------------------------------------------------------------

def check_patches_by_reshape(patches_by_reshape) -> None:
    from minivit import ops

    for shape, P in (((2, 3, 8, 8), 4), ((1, 2, 6, 6), 2)):
        x = distinct(shape)
        B, C, H, W = shape
        grid = x.reshape(B, C, H // P, P, W // P, P)
        mistakes = {
            "a reshape without the transpose (the numbers of one patch are not next to each other in memory)":
                x.reshape(B, (H // P) * (W // P), C * P * P),
            "the transpose (0, 2, 4, 3, 5, 1), channels last inside each patch (expected (C, P, P))":
                grid.transpose(0, 2, 4, 3, 5, 1).reshape(B, -1, C * P * P),
            "the transpose (0, 4, 2, 1, 3, 5), the grid walked column by column (expected row by row)":
                grid.transpose(0, 4, 2, 1, 3, 5).reshape(B, -1, C * P * P),
        }
        yours = patches_by_reshape(x.copy(), P)
        check_array(yours, ops.im2col(x, P), f"patches_by_reshape, {shape} images, patch {P}", "patches",
                    mistakes=mistakes, sizes={"the patch size P": P, "the channels C": C})


# --- solutions ------------------------------------------------------------------------------------

@solution
def patches_by_reshape(x, patch_size):
    B, C, H, W = x.shape
    P = patch_size
    grid = x.reshape(B, C, H // P, P, W // P, P)
    grid = grid.transpose(0, 2, 4, 1, 3, 5)  # (B, H/P, W/P, C, P, P)
    return grid.reshape(B, (H // P) * (W // P), C * P * P)


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""$224/16 = 14$, so $N = 14^2 = 196$ patches of $3 \cdot 16^2 = 768$ numbers. With $P = 8$:
    $28^2 = 784$ patches of $192$ numbers. Attention's cost grows with $N^2$: $784^2 / 196^2 = 16$
    times more per layer (the linear layers' cost grows only with $N$, 4 times).""",
    r"""The transpose returns a view with permuted strides: the six-axis array is no longer laid out
    in memory in the order the final reshape reads it (the numbers of one patch are not next to
    each other). A reshape can only give a view when the new shape can be expressed with strides
    over the same memory; here it cannot, so NumPy copies.""",
    r"""That the embeddings form a smooth 2-D map of position: that the embedding of a point between
    two grid cells is roughly the blend of theirs. Learned embeddings of a trained ViT are close to
    that (lesson 11 shows their similarity maps); interpolating them is what transformers'
    `interpolate_pos_encoding` and lesson 10 do.""",
]
