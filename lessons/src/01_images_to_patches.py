# %% [markdown]
# # Lesson 1 — Images to patches
#
# **Goals.** By the end of this lesson you can
# 1. cut an image into a sequence of patches in three ways — a reshape/transpose, im2col, and a
#    convolution with kernel = stride = patch size — and show that they give the same tensor;
# 2. say which pixel of which patch lands where in that tensor;
# 3. explain why a ViT refuses an image of the wrong size.
#
# ## Where the images come from
#
# Every lesson uses **CIFAR-10** (Krizhevsky, 2009): 60,000 colour images of 32 × 32 pixels in ten
# classes (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck), 50,000 for
# training and 10,000 for testing, from <https://www.cs.toronto.edu/~kriz/cifar.html>.
# The lessons read it from the folder named by the environment variable **`MINIVIT_DATA_DIR`**:
# either the official python version (`cifar-10-batches-py`, or the folder holding it) or an image
# folder laid out as `DIR/train/<class>/*.png` (or `.jpg`) and `DIR/test/<class>/...`.
# Set it before you start Jupyter,
#
# ```bash
# export MINIVIT_DATA_DIR=/path/to/cifar10
# jupyter lab lessons/
# ```
#
# or in the first cell of a notebook, `import os; os.environ["MINIVIT_DATA_DIR"] = "/path/to/cifar10"`,
# before anything else runs. Without it, the lessons download CIFAR-10 (170 MB, checked against its
# MD5) into `data/` at the repository's root, once. The cell below says what it found; if it finds
# nothing, its error says how to set `MINIVIT_DATA_DIR`.
#
# `MINIVIT_FAST=1` makes every lesson run in seconds on tiny models (the test suite does that);
# `MINIVIT_SOLUTIONS=1` switches in the solutions of the exercises.
#
# **The outputs you see in the repository's notebooks were made with `MINIVIT_SOLUTIONS=1`**, on
# real CIFAR-10: every PASS, every "yours" and every run "on your functions" there is the
# solutions'. Run a notebook yourself and the exercises are yours: each stops at `NotImplementedError`
# until you write it, and the cells after it either run without it or say which exercise they wait for.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit import ops
from support import check_close, describe_data, exercise, load_images, show_answers
from support.lesson01 import check_patches_by_reshape

print(describe_data())
images = load_images("train", count=16)
print(f"{len(images)} training images drawn at random: {images.images.shape} {images.images.dtype}, "
      f"classes {', '.join(images.class_names)}")

# %% [markdown]
# ## From an image to a sequence
#
# A transformer works on a *sequence* of vectors. ViT's idea ("An Image is Worth 16x16 Words") is
# to make that sequence out of an image by cutting it into $P \times P$ patches and flattening each
# one. An image $x \in \mathbb{R}^{C \times H \times W}$ becomes
#
# $$ N = \frac{H}{P} \cdot \frac{W}{P} \text{ patches, each a vector of } C P^2 \text{ numbers.} $$
#
# For CIFAR-10 ($C=3$, $H=W=32$) with $P=4$: $N = 64$ patches of $48$ numbers.
#
# ## Looking at the patch grid
#
# Each CIFAR-10 image is 32×32 pixels. With a patch size of 4 the grid is 8×8; with 8, it is 4×4.

# %%
fig, axes = plt.subplots(2, 4, figsize=(10, 5))
for column in range(4):
    image = images.images[column].transpose(1, 2, 0)  # (H, W, C) for imshow
    for row, patch in enumerate([4, 8]):
        axis = axes[row, column]
        axis.imshow(image)
        for k in range(0, 33, patch):
            axis.axhline(k - 0.5, color="white", linewidth=0.8)
            axis.axvline(k - 0.5, color="white", linewidth=0.8)
        axis.set_title(f"{images.class_names[images.labels[column]]}, P={patch}", fontsize=9)
        axis.set_xticks([0, 31])
        axis.set_yticks([0, 31])
        axis.set_xlabel("x (pixels)", fontsize=8)
        axis.set_ylabel("y (pixels)", fontsize=8)
plt.suptitle("the patch grid: 8 x 8 patches of 4 pixels (top), 4 x 4 of 8 (bottom)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Way 1: reshape and transpose
#
# When patches tile the image, cutting them out needs no copying of individual pixels, only a new
# way to index the same numbers. Two orders matter, because the patch embedding (lesson 2) and
# transformers' `Conv2d` weights rely on them:
#
# * the patches run **row by row over the grid**: patch $n = r \cdot \frac{W}{P} + c$ is the one in
#   grid row $r$, grid column $c$;
# * inside a patch the numbers run **channel first, then row, then column**, $(C, P, P)$: the order in
#   which a `Conv2d` weight of shape $(D, C, P, P)$ flattens.
#
# **Exercise 1.** Write `patches_by_reshape(x, patch_size)` with one `reshape`, one `transpose` and
# one more `reshape`. Work out the intermediate shapes first; open the hints one at a time if you
# are stuck.
#
# <details><summary>Hint 1: what the first reshape does</summary>
#
# A reshape can split an axis into two without moving any number: the height $H$ is really
# $(H/P, P)$, "which patch row" and "which pixel row inside the patch". Split the width likewise.
# </details>
#
# <details><summary>Hint 2: which axes must end up next to each other</summary>
#
# The last reshape can only merge axes that are adjacent and in the right order. You want
# (batch, grid row, grid column) in front, to become $(B, N)$, and (channel, pixel row, pixel column)
# behind, to become $C P^2$. A transpose reorders the six axes.
# </details>
#
# <details><summary>Hint 3: the shapes</summary>
#
# $(B, C, H, W) \to (B, C, \tfrac{H}{P}, P, \tfrac{W}{P}, P) \xrightarrow{\text{transpose}(0, 2, 4, 1, 3, 5)}
# (B, \tfrac{H}{P}, \tfrac{W}{P}, C, P, P) \to (B, N, C P^2)$.
# </details>

# %%
@exercise
def patches_by_reshape(x, patch_size):
    """(B, C, H, W) -> (B, N, C*P*P), patches in row-major order over the grid."""
    B, C, H, W = x.shape
    P = patch_size
    # TODO: your code here (3 lines)
    raise NotImplementedError("Exercise 1: write patches_by_reshape")


# %%
x = images.images[:4].astype(np.float64)  # four CIFAR images, for this cell and the ones below
check_patches_by_reshape(patches_by_reshape)
ours = patches_by_reshape(x, 4)
check_close(ours[0, 9], x[0, :, 4:8, 4:8].reshape(-1), "on a CIFAR image: patch 9 is grid row 1, column 1")

# %% [markdown]
# ## Way 2: im2col
#
# `minivit.ops.im2col` is the engine's version. For tiling patches it does exactly the reshape
# above; for a stride smaller than the patch (overlapping patches, lesson 2) it gathers each
# offset $(i, j)$ inside the patch as one strided slice of the image.

# %%
try:
    check_close(ops.im2col(x, 4), patches_by_reshape(x, 4), "im2col equals your reshape")
except NotImplementedError:
    print("This comparison waits for Exercise 1 (patches_by_reshape); the rest of the lesson runs without it.")
check_close(ops.im2col(x, 4, stride=4), ops.im2col(x, 4), "stride = patch size is the default")

# %% [markdown]
# ## Way 3: a convolution with kernel = stride = patch size
#
# ViT's patch embedding multiplies every patch vector by one matrix $W \in \mathbb{R}^{C P^2 \times D}$.
# A convolution with $D$ filters of size $C \times P \times P$ and stride $P$ computes exactly those
# dot products, one per grid cell:
#
# $$ \text{conv}(x)_{d, r, c} = \sum_{k, i, j} w_{d,k,i,j}\, x_{k,\, rP + i,\, cP + j} = \big(\text{patch}_{r,c} \cdot \text{vec}(w_d)\big). $$
#
# Below, a convolution written as plain loops, against im2col followed by one matrix product.

# %%
rng = np.random.default_rng(0)
D, P = 5, 4
conv_weight = rng.standard_normal((D, 3, P, P))

def convolution_by_loops(image, weight, stride):
    D, C, P, _ = weight.shape
    rows = (image.shape[1] - P) // stride + 1
    out = np.zeros((D, rows, rows))
    for r in range(rows):
        for c in range(rows):
            window = image[:, r * stride:r * stride + P, c * stride:c * stride + P]
            out[:, r, c] = np.tensordot(weight, window, axes=3)
    return out

by_conv = convolution_by_loops(x[0], conv_weight, stride=P).reshape(D, -1).T  # (N, D), row-major grid
by_matmul = ops.im2col(x[:1], P)[0] @ conv_weight.reshape(D, -1).T
check_close(by_matmul, by_conv, "im2col @ W equals the convolution", atol=1e-9)

# %% [markdown]
# The engine keeps the projection weight in the convolution's layout, `(D, C, P, P)`, under the
# name transformers uses, `embeddings.patch_embeddings.projection.weight`.

# %%
model = minivit.ViTForImageClassification("cifar-tiny")
print({name: p.shape for name, p in model.named_parameters() if "patch" in name})

# %% [markdown]
# ## Why the model refuses an image of the wrong size
#
# The patch count fixes the length of the learned position-embedding table: for `cifar-tiny`,
# $64$ patches plus the CLS token, $65$ rows. A 40×40 image would make $100$ patches, and there is
# no position embedding for patches 65 to 100. The model says so, in transformers' words:

# %%
try:
    model.forward(np.zeros((1, 3, 40, 40), dtype="float32"))
except ValueError as error:
    print("ValueError:", error)
try:
    model.forward(np.zeros((1, 1, 32, 32), dtype="float32"))
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# ## Questions
#
# 1. For ImageNet's 224×224 images and $P=16$, how many patches are there, and how long is each
#    patch vector? What about $P=8$? How does the cost of attention, which grows with $N^2$, change?
# 2. `patches_by_reshape` returns a *copy* after the final reshape even though the first reshape is
#    a view. Why? (Hint: what does `transpose` do to the strides?)
# 3. A model trained at 32×32 could still take 40×40 images if we *interpolated* its position
#    embeddings to a 10×10 grid. What would that assume about what the embeddings encode?

# %%
show_answers(1)

# %% [markdown]
# ## What you built
#
# - `patches_by_reshape`: an image batch $(B, C, H, W)$ as a sequence of patch vectors $(B, N, C P^2)$,
#   with no loop, equal to the engine's `im2col`.
# - The proof that "patchify, then one matrix" is a convolution with kernel = stride = $P$: the
#   reason ViT's patch embedding is a `Conv2d` in transformers and a matrix product here.
# - Why the patch count, and so the image size, is fixed by the position-embedding table
#   (lesson 10 resizes that table to finetune at a higher resolution).
#
# Next, lesson 2: the patch projection's backward, which runs inside the engine once it passes.
