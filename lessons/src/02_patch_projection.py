# %% [markdown]
# # Lesson 2 — The patch projection, forward and backward
#
# **Goals.**
# 1. Derive the gradient of a linear projection $Y = XW + b$ with respect to $X$, $W$ and $b$.
# 2. Push the gradient of the patches back onto the image with col2im, and see why col2im must
#    *add* when patches overlap.
# 3. Check a backward pass yourself with finite differences.
#
# ## Forward
#
# With the patch rows $X \in \mathbb{R}^{N \times K}$ ($K = C P^2$) from im2col, the projection is
#
# $$ Y = X W + \mathbf{1} b^\top, \qquad W \in \mathbb{R}^{K \times D},\ b \in \mathbb{R}^{D}. $$
#
# ## Backward
#
# Given $G = \partial L / \partial Y$ (same shape as $Y$), each $Y_{nd} = \sum_k X_{nk} W_{kd} + b_d$ gives
#
# $$ \frac{\partial L}{\partial W_{kd}} = \sum_n X_{nk} G_{nd} \;\Rightarrow\; \frac{\partial L}{\partial W} = X^\top G, \qquad
#    \frac{\partial L}{\partial X} = G W^\top, \qquad \frac{\partial L}{\partial b} = \sum_n G_{n\cdot}. $$
#
# A check on shapes: $X^\top G$ is $(K \times N)(N \times D) = K \times D$, the shape of $W$. Good.

# %%
import numpy as np
import matplotlib.pyplot as plt

from minivit import ops
from minivit.gradcheck import check_op
from lesson_support import check, check_close, exercise

# %% [markdown]
# **Exercise 1.** Write the backward of the projection. The cache holds what the forward saw.

# %%
def projection_forward(patches, weight, bias):
    """patches (B, N, K), weight (K, D), bias (D,) -> (B, N, D)."""
    out = patches @ weight + bias
    return out, (patches, weight)


@exercise
def projection_backward(dout, cache):
    """dout (B, N, D) -> (dpatches (B, N, K), dweight (K, D), dbias (D,))."""
    patches, weight = cache
    # TODO: three lines. Treat the batch and patch axes together as the rows of X.
    raise NotImplementedError("Exercise 1: write projection_backward")


# %%
rng = np.random.default_rng(0)
inputs = {"patches": rng.standard_normal((2, 6, 12)), "weight": rng.standard_normal((12, 5)),
          "bias": rng.standard_normal(5)}
report = check_op(projection_forward, projection_backward, inputs)
print(report)
check(report.max_rel_error < 1e-6, "projection backward matches finite differences (expect about 1e-10)",
      "the largest relative error is printed above")

# %% [markdown]
# ## From patch gradients back to pixels: col2im
#
# im2col only *moves* numbers: every entry of the patch matrix is a copy of one pixel. So the
# gradient of a pixel is the sum of the gradients of all its copies. With stride $S = P$ every
# pixel has exactly one copy and col2im is the inverse reshape. With $S < P$ patches overlap, a
# pixel can have up to $(P/S)^2$ copies, and col2im must **add** them.
#
# Formally, im2col is a linear map $x \mapsto A x$ with a 0/1 matrix $A$; its backward is
# $A^\top$, and $A^\top$ sums over copies. A clean test: $\langle A x, y \rangle = \langle x, A^\top y\rangle$ for all $x, y$.

# %%
x = rng.standard_normal((1, 1, 8, 8))
for stride in (4, 2):
    cols = ops.im2col(x, 4, stride)
    y = rng.standard_normal(cols.shape)
    lhs, rhs = np.sum(cols * y), np.sum(x * ops.col2im(y, x.shape, 4, stride))
    print(f"stride {stride}: {cols.shape[1]} patches, <im2col(x), y> = {lhs:.6f}, <x, col2im(y)> = {rhs:.6f}")

copies = ops.col2im(np.ones_like(ops.im2col(x, 4, 2)), x.shape, 4, 2)[0, 0]
plt.figure(figsize=(3.5, 3))
plt.imshow(copies, cmap="viridis")
plt.colorbar(label="copies of the pixel")
plt.title("patch 4, stride 2: how often\neach pixel is used")
plt.show()

# %% [markdown]
# **Exercise 2.** Write col2im for a general stride with loops over the patch grid: for each patch
# $(r, c)$, add its gradient back onto the window it came from.

# %%
@exercise
def col2im_by_loops(dcols, image_shape, patch_size, stride):
    """dcols (B, N, C*P*P) -> dx (B, C, H, W), adding where patches overlap."""
    B, C, H, W = image_shape
    P = patch_size
    grid = (H - P) // stride + 1
    dx = np.zeros(image_shape)
    # TODO: loop over the grid rows r and columns c; patch index n = r * grid + c.
    raise NotImplementedError("Exercise 2: write col2im_by_loops")


# %%
x = rng.standard_normal((2, 3, 10, 10))
dcols = rng.standard_normal(ops.im2col(x, 4, 2).shape)
check_close(col2im_by_loops(dcols, x.shape, 4, 2), ops.col2im(dcols, x.shape, 4, 2),
            "col2im by loops equals the engine's col2im (stride 2, overlapping)", atol=1e-12)
report = check_op(lambda x: (ops.im2col(x, 4, 2), x.shape),
                  lambda d, shape: col2im_by_loops(d, shape, 4, 2), {"x": x})
check(report.max_rel_error < 1e-6, "im2col's gradient through your col2im checks out (expect about 1e-11)")

# %% [markdown]
# ## The whole patch embedding
#
# The engine's `PatchEmbeddings` chains the two: im2col, then the projection. Its gradient check:

# %%
import minivit
from minivit.gradcheck import check_gradients

config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=6, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=8, num_labels=3, initializer_range=0.5)
patch_embeddings = minivit.ViTForImageClassification(config, dtype="float64").embeddings.patch_embeddings
pixels = rng.standard_normal((2, 3, 8, 8))
dout = rng.standard_normal((2, 4, 6))
patch_embeddings.zero_grad()
patch_embeddings.forward(pixels)
dpixels = patch_embeddings.backward(dout)

def f():
    y = patch_embeddings.forward(pixels)
    patch_embeddings._cache = None
    return np.sum(y * dout)

params = dict(patch_embeddings.named_parameters())
report = check_gradients(f, {**{n: p.data for n, p in params.items()}, "pixels": pixels},
                         {**{n: p.grad.copy() for n, p in params.items()}, "pixels": dpixels})
print(report)

# %% [markdown]
# ## Questions
#
# 1. Why is $\partial L/\partial b$ a sum over patches *and* over the batch?
# 2. With patch 4 and stride 2 on a 10×10 image, which pixels have exactly one copy? Which have four?
# 3. The matrix product $X^\top G$ sums over $B \cdot N$ rows. What does that mean for the gradient
#    of $W$ as the batch grows, and why do we average the loss over the batch?
