# %% [markdown]
# # Lesson 1 — Images to patches
#
# **Goals.** By the end of this lesson you can
# 1. cut an image into a sequence of patches in three ways — a reshape/transpose, im2col, and a
#    convolution with kernel = stride = patch size — and show that they give the same tensor;
# 2. say which pixel of which patch lands where in that tensor;
# 3. explain why a ViT refuses an image of the wrong size.
#
# A transformer works on a *sequence* of vectors. ViT's idea ("An Image is Worth 16x16 Words") is
# to make that sequence out of an image by cutting it into $P \times P$ patches and flattening each
# one. An image $x \in \mathbb{R}^{C \times H \times W}$ becomes
#
# $$ N = \frac{H}{P} \cdot \frac{W}{P} \text{ patches, each a vector of } C P^2 \text{ numbers.} $$
#
# For CIFAR-10 ($C=3$, $H=W=32$) with $P=4$: $N = 64$ patches of $48$ numbers.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit import ops
from lesson_support import check, check_close, exercise, load_images

images = load_images("train", count=16)
print(images.images.shape, images.images.dtype, images.class_names[:3])

# %% [markdown]
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
        axis.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Way 1: reshape and transpose
#
# When patches tile the image, cutting them out needs no copying of individual pixels, only a new
# view of the same numbers. Split the height $H$ into $(H/P, P)$ and the width into $(W/P, P)$:
#
# $$ (B, C, H, W) \to (B, C, \tfrac{H}{P}, P, \tfrac{W}{P}, P) \to (B, \tfrac{H}{P}, \tfrac{W}{P}, C, P, P) \to (B, N, C P^2). $$
#
# The order of the last three axes, $(C, P, P)$, is the order in which a `Conv2d` weight of shape
# $(D, C, P, P)$ flattens; the patches run row by row over the grid.
#
# **Exercise 1.** Write `patches_by_reshape(x, patch_size)` with one `reshape`, one `transpose` and
# one more `reshape`.

# %%
@exercise
def patches_by_reshape(x, patch_size):
    """(B, C, H, W) -> (B, N, C*P*P), patches in row-major order over the grid."""
    B, C, H, W = x.shape
    P = patch_size
    # TODO: your code here (3 lines)
    raise NotImplementedError("Exercise 1: write patches_by_reshape")


# %%
x = images.images[:4].astype(np.float64)
ours = patches_by_reshape(x, 4)
check(ours.shape == (4, 64, 48), "shape (B, N, C*P*P) = (4, 64, 48)", f"got {ours.shape}")
check_close(ours[0, 0], x[0, :, :4, :4].reshape(-1), "patch 0 is the top-left 4x4 block, channels first")
check_close(ours[0, 9], x[0, :, 4:8, 4:8].reshape(-1), "patch 9 is row 1, column 1 of the grid")

# %% [markdown]
# ## Way 2: im2col
#
# `minivit.ops.im2col` is the engine's version. For tiling patches it does exactly the reshape
# above; for a stride smaller than the patch (overlapping patches, lesson 2) it gathers each
# offset $(i, j)$ inside the patch as one strided slice of the image.

# %%
check_close(ops.im2col(x, 4), patches_by_reshape(x, 4), "im2col equals the reshape")
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
