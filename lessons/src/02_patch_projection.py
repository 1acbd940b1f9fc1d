# %% [markdown]
# # Lesson 2 — The patch projection, forward and backward
#
# **Goals.**
# 1. Derive the gradient of a linear projection $Y = XW + b$ with respect to $X$, $W$ and $b$, and
#    write it as the engine's `linear_backward`.
# 2. Run the engine on your backward: every linear layer of a ViT, checked against finite differences.
# 3. Push the gradient of the patches back onto the image with col2im, and see why col2im must
#    *add* when patches overlap.
#
# ## Forward
#
# With the patch rows $X \in \mathbb{R}^{M \times K}$ ($K = C P^2$; the $M = B \cdot N$ rows are every
# patch of every image) from im2col, the projection is
#
# $$ Y = X W + \mathbf{1} b^\top, \qquad W \in \mathbb{R}^{K \times D},\ b \in \mathbb{R}^{D},
#    \qquad Y_{md} = \sum_k X_{mk} W_{kd} + b_d. $$
#
# The engine's pair is `minivit.ops.linear_forward(x, weight, bias)` and
# `linear_backward(dout, cache)`; the forward keeps `cache = (x, weight, has_bias)`, with `x` as
# it came in, `(B, N, K)` here: all leading axes are rows.
#
# ## Backward: your derivation
#
# You are given $G = \partial L / \partial Y$, the same shape as $Y$. Find $\partial L/\partial W$,
# $\partial L/\partial X$ and $\partial L/\partial b$ from the index form above, then write each as one
# matrix expression. Check the shapes as you go: a gradient has the shape of what it is the gradient of.
#
# <details><summary>Hint 1: the chain rule, one element</summary>
#
# $L$ depends on $W_{kd}$ through every $Y_{md}$ (every row $m$, the same column $d$):
# $\dfrac{\partial L}{\partial W_{kd}} = \sum_m \dfrac{\partial L}{\partial Y_{md}} \dfrac{\partial Y_{md}}{\partial W_{kd}} = \sum_m G_{md} X_{mk}$.
# </details>
#
# <details><summary>Hint 2: as matrices</summary>
#
# $\sum_m X_{mk} G_{md}$ is the $(k, d)$ entry of $X^\top G$: $(K \times M)(M \times D) = K \times D$, the shape
# of $W$. In the same way $\partial L/\partial X_{mk} = \sum_d G_{md} W_{kd}$, the $(m, k)$ entry of
# $G W^\top$; and $b_d$ is used by every row, so $\partial L/\partial b_d = \sum_m G_{md}$.
# </details>
#
# <details><summary>Hint 3: the engine's layout</summary>
#
# `x` arrives as $(B, N, K)$ and `dout` as $(B, N, D)$. `dout @ weight.T` works on any leading axes.
# For $X^\top G$ the rows must be one axis: `x.reshape(-1, K)` and `dout.reshape(-1, D)`. Without that,
# `x.swapaxes(-1, -2) @ dout` gives one $K \times D$ matrix *per image*, and the sum over the batch is missing.
# When `has_bias` is False, return `None` for the bias's gradient.
# </details>

# %%
import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit import ops
from minivit.gradcheck import check_model, check_op
from support import CallCounter, check, exercise, show_answers, use_mine
from support.lesson02 import check_col2im_by_loops, check_linear_backward

# %% [markdown]
# **Exercise 1.** Write `linear_backward(dout, cache)`, the engine's signature and cache.

# %%
@exercise
def linear_backward(dout, cache):
    """dout (..., D_out) -> (dx (..., D_in), dweight (D_in, D_out), dbias (D_out,) or None)."""
    x, weight, has_bias = cache
    # TODO: about five lines
    raise NotImplementedError("Exercise 1: write linear_backward")


# %% [markdown]
# The check runs your backward against **finite differences** (CS231n's `eval_numerical_gradient`):
# each input element is nudged up and down, and the change of $\sum Y \odot G$ is measured. It
# compares each gradient's shape first, then its values, and when they differ says what the
# difference looks like. A correct backward in float64 gives relative errors around $10^{-10}$.

# %%
check_linear_backward(linear_backward)

# %% [markdown]
# ## Your backward, inside the engine
#
# `use_mine(linear_backward=...)` (`minivit.dispatch.use_mine`) puts your function into the engine
# wherever it computes a linear layer's gradient: the patch projection, the query, key, value and
# output projections of every attention layer, both MLP layers and the classifier. Below, a small
# ViT's gradient check over every parameter, running on your code. (When your exercise passed,
# it was also kept in `lessons/mine/`: lesson 6 puts it back into the engine with the others.)

# %%
config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=6, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=8, num_labels=3, initializer_range=0.5)
tiny = minivit.ViTForImageClassification(config, dtype="float64").eval()
rng = np.random.default_rng(0)
counter = CallCounter({"linear_backward": linear_backward})
with use_mine(**counter.functions):
    report = check_model(tiny, rng.standard_normal((2, 3, 8, 8)))
print(f"your linear_backward ran {counter.calls['linear_backward']} times; worst tensor: {report.worst}")
check(report.max_rel_error < 1e-6 and counter.calls["linear_backward"] > 0,
      "a whole ViT's gradients, through your linear_backward, match finite differences (expect about 1e-9)",
      yours=f"{report.max_rel_error:.1e}", expected="below 1e-6")

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
plt.figure(figsize=(3.8, 3.2))
plt.imshow(copies, cmap="viridis", vmin=0, vmax=4)
plt.colorbar(label="copies of the pixel", ticks=range(5))
plt.xlabel("x (pixels)")
plt.ylabel("y (pixels)")
plt.title("patch 4, stride 2: how often\neach pixel is used")
plt.show()

# %% [markdown]
# **Exercise 2.** Write col2im for a general stride with loops over the patch grid: for each patch
# $(r, c)$, put its gradient back onto the window it came from.
#
# <details><summary>Hint: where patch (r, c) came from</summary>
#
# Patch $n = r \cdot \text{grid} + c$ covers rows $rS \dots rS + P - 1$ and columns $cS \dots cS + P - 1$
# of every channel. `dcols[:, n]` holds its $C P^2$ gradients in the order $(C, P, P)$. Several patches
# cover the same pixel when $S < P$: every copy's gradient must be added, not written over.
# </details>

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
check_col2im_by_loops(col2im_by_loops)
x = rng.standard_normal((2, 3, 10, 10))
report = check_op(lambda x: (ops.im2col(x, 4, 2), x.shape),
                  lambda d, shape: col2im_by_loops(d, shape, 4, 2), {"x": x})
check(report.max_rel_error < 1e-6, "im2col's gradient through your col2im checks out (expect about 1e-11)",
      yours=f"{report.max_rel_error:.1e}", expected="below 1e-6")

# %% [markdown]
# ## The whole patch embedding
#
# The engine's `PatchEmbeddings` chains the two: im2col, then the projection (with the engine's
# col2im and your `linear_backward`). Its gradient check, image included:

# %%
from minivit.gradcheck import check_gradients

patch_embeddings = tiny.embeddings.patch_embeddings
pixels = rng.standard_normal((2, 3, 8, 8))
dout = rng.standard_normal((2, 4, 6))

def f():
    y = patch_embeddings.forward(pixels)
    patch_embeddings._cache = None
    return np.sum(y * dout)

with use_mine(linear_backward=linear_backward):
    patch_embeddings.zero_grad()
    patch_embeddings.forward(pixels)
    dpixels = patch_embeddings.backward(dout)
    params = dict(patch_embeddings.named_parameters())
    report = check_gradients(f, {**{n: p.data for n, p in params.items()}, "pixels": pixels},
                             {**{n: p.grad.copy() for n, p in params.items()}, "pixels": dpixels})
print(report)
check(report.max_rel_error < 1e-6, "patch embedding: weight, bias and pixels (expect about 1e-10)",
      yours=f"{report.max_rel_error:.1e}", expected="below 1e-6")

# %% [markdown]
# ## Questions
#
# 1. Why is $\partial L/\partial b$ a sum over patches *and* over the batch?
# 2. With patch 4 and stride 2 on a 10×10 image, which pixels have exactly one copy? Which have four?
# 3. The matrix product $X^\top G$ sums over $B \cdot N$ rows. What does that mean for the gradient
#    of $W$ as the batch grows, and why do we average the loss over the batch?

# %%
show_answers(2)

# %% [markdown]
# ## What you built
#
# - `linear_backward`, derived from the index form and written in the engine's signature: it now
#   computes the gradients of every linear layer of a ViT (the check above ran a whole model on it).
# - `col2im_by_loops`, the backward of cutting patches, which adds where patches overlap.
# - The habit the rest of the course relies on: a backward is right when finite differences say so,
#   and its shapes are the shapes of what it differentiates.
#
# Next, lesson 3: the CLS token and the position embeddings, whose gradients are sums over the batch.
