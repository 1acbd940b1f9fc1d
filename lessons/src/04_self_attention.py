# %% [markdown]
# # Lesson 4 — Self-attention
#
# **Goals.**
# 1. Write scaled dot-product attention and derive its backward.
# 2. Derive the softmax's Jacobian-vector product, without forming the Jacobian.
# 3. Split a hidden vector into heads and merge them back; check everything; look at attention maps.
#
# For one head, with $Q, K, V \in \mathbb{R}^{T \times d}$:
#
# $$ S = \frac{Q K^\top}{\sqrt{d}}, \qquad P = \operatorname{softmax}_{\text{rows}}(S), \qquad O = P V. $$
#
# $P_{ij}$ is how much token $i$ attends to token $j$; each row of $P$ sums to one. The
# $1/\sqrt d$ keeps the scores' variance near 1 when $Q$ and $K$ have unit-variance entries, so the
# softmax does not saturate.
#
# ## The softmax backward
#
# For one row, $y = \operatorname{softmax}(s)$ has Jacobian $\partial y_i / \partial s_j = y_i(\delta_{ij} - y_j)$. For an upstream
# gradient $g = \partial L/\partial y$:
#
# $$ \frac{\partial L}{\partial s_j} = \sum_i g_i\, y_i (\delta_{ij} - y_j) = y_j \Big(g_j - \sum_i g_i y_i\Big). $$
#
# One dot product per row instead of a $T \times T$ matrix per row.
#
# ## The attention backward
#
# From $O = PV$: $\partial L/\partial V = P^\top G$ and $\partial L/\partial P = G V^\top$. Through the softmax to $\partial L/\partial S$, then from
# $S = QK^\top/\sqrt d$: $\partial L/\partial Q = (\partial L/\partial S) K / \sqrt d$ and $\partial L/\partial K = (\partial L/\partial S)^\top Q / \sqrt d$.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit import ops
from minivit.gradcheck import check_op
from lesson_support import check, exercise, load_images

rng = np.random.default_rng(0)

# %% [markdown]
# **Exercise 1.** The softmax backward, from the formula above.

# %%
@exercise
def softmax_backward(dprobs, probs):
    """Both (..., T); the softmax was over the last axis."""
    # TODO: one line
    raise NotImplementedError("Exercise 1: write softmax_backward")


# %%
def softmax_forward(scores):
    probs, _ = ops.softmax_forward(scores)
    return probs, probs

report = check_op(softmax_forward, softmax_backward, {"scores": rng.standard_normal((2, 3, 5))})
print(report)
check(report.max_rel_error < 1e-6, "softmax backward (expect about 1e-11)")

# %% [markdown]
# **Exercise 2.** The backward of scaled dot-product attention (no dropout). Use your softmax backward.

# %%
def attention_forward(q, k, v):
    scale = 1.0 / np.sqrt(q.shape[-1])
    probs, _ = ops.softmax_forward(q @ k.swapaxes(-1, -2) * scale)
    return probs @ v, (q, k, v, probs, scale)


@exercise
def attention_backward(dout, cache):
    """Returns (dq, dk, dv), each (B, H, T, d)."""
    q, k, v, probs, scale = cache
    # TODO: five or six lines, in the order of the derivation above
    raise NotImplementedError("Exercise 2: write attention_backward")


# %%
inputs = {name: rng.standard_normal((2, 2, 5, 4)) for name in ("q", "k", "v")}
report = check_op(attention_forward, attention_backward, inputs)
print(report)
check(report.max_rel_error < 1e-6, "attention backward (expect about 1e-9)")

# %% [markdown]
# ## Heads
#
# With $H$ heads, the $D$ features of each token are split into $H$ groups of $d = D/H$; each group
# attends on its own, and the results are concatenated and mixed by an output projection $W_O$.
# In array terms: `(B, T, D) -> (B, T, H, d) -> (B, H, T, d)` and back.

# %%
x = rng.standard_normal((2, 5, 6))
heads = ops.split_heads(x, 3)
print("split:", x.shape, "->", heads.shape)
check(np.array_equal(ops.merge_heads(heads), x), "merge_heads undoes split_heads")
check(np.array_equal(heads[:, 1], x[:, :, 2:4]), "head 1 sees features 2 and 3")

# %% [markdown]
# The engine's `multi_head_attention_forward` runs the query, key and value projections as one
# matrix product (their weights side by side), splits heads, attends, merges, projects. Its
# gradient check, over every weight:

# %%
D = 6
weights = {}
for name in ("q", "k", "v", "o"):
    weights[f"{name}_weight"] = rng.standard_normal((D, D)) * 0.5
    weights[f"{name}_bias"] = rng.standard_normal(D)
report = check_op(lambda x, *w: ops.multi_head_attention_forward(x, *w, num_heads=3),
                  ops.multi_head_attention_backward, {"x": rng.standard_normal((2, 5, D)), **weights})
print(report)

# %% [markdown]
# ## Attention maps
#
# Each layer's attention probabilities are kept after a forward (`model.attention_maps()`). Here is
# where the CLS token looks, per head, in an *untrained* `cifar-tiny` model. Lesson 10 shows the
# same for a trained one.

# %%
images = load_images("test", count=2)
model = minivit.ViTForImageClassification("cifar-tiny", seed=0).eval()
pixels = (images.images.astype("float32") / 255 - 0.5) / 0.25
model.forward(pixels)
maps = model.attention_maps()  # one (B, H, T, T) array per layer
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
axes[0].imshow(images.images[0].transpose(1, 2, 0))
axes[0].set_title(images.class_names[images.labels[0]])
for head in range(3):
    axes[head + 1].imshow(maps[-1][0, head, 0, 1:].reshape(8, 8), cmap="inferno")
    axes[head + 1].set_title(f"last layer, head {head}")
for axis in axes:
    axis.axis("off")
plt.show()
print("row sums of P:", maps[0][0, 0].sum(axis=-1)[:4])

# %% [markdown]
# ## Questions
#
# 1. Attention costs $O(T^2 d)$ per head. For `cifar-tiny`, compare $T^2 d$ with the $T D^2$ of a
#    linear layer. Which dominates, and when would it flip?
# 2. Why is the softmax's backward cheaper than its Jacobian? How much memory would the Jacobians of
#    one `cifar-tiny` layer take in float32?
# 3. If every score in a row grows by the same constant, what happens to $P$? What does that say
#    about the gradient of the key projection's *bias*? (The gradient checks in `tests/` meet it.)
