# %% [markdown]
# # Lesson 4 — Self-attention
#
# **Goals.**
# 1. Write multi-head attention's forward: split the heads, scaled dot-product attention in the
#    engine's form (with its cache and dropout), merge, project.
# 2. Derive the softmax's Jacobian and its Jacobian-vector product, without forming the Jacobian.
# 3. Derive and write attention's backward; run a ViT on your forward and backward.
# 4. Look at attention maps, on a scale that shows what is there and nothing else.
#
# For one head, with queries, keys and values $Q, K, V \in \mathbb{R}^{T \times d}$ (one row per token):
#
# $$ S = \frac{Q K^\top}{\sqrt{d}}, \qquad P = \operatorname{softmax}_{\text{rows}}(S), \qquad O = P V. $$
#
# $P_{ij}$ is how much token $i$ attends to token $j$; each row of $P$ sums to one. The
# $1/\sqrt d$ keeps the scores' variance near 1 when $Q$ and $K$ have unit-variance entries
# ($S_{ij}$ is a sum of $d$ products), so the softmax does not saturate.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit.ops import AttentionCache  # noqa: F401 (what your attention_forward returns)
from minivit.gradcheck import check_model
from support import CallCounter, check, exercise, load_images, no_grad, show_answers, use_mine
from support.lesson04 import (check_attention_backward, check_attention_forward, check_multi_head_attention,
                              check_softmax_backward, check_softmax_jacobian, check_split_heads)

rng = np.random.default_rng(0)

# %% [markdown]
# ## Multi-head attention, forward
#
# With $H$ heads, the $D$ features of each token are split into $H$ groups of $d = D/H$; each
# group attends on its own, and the results are concatenated and mixed by an output projection:
#
# $$ \operatorname{MHA}(x) = \big[\, O_1, \dots, O_H \,\big]\, W_O + b_O, \qquad
#    O_h = \operatorname{softmax}\!\Big(\frac{Q_h K_h^\top}{\sqrt d}\Big) V_h, \qquad
#    Q = x W_Q + b_Q \ \text{(likewise } K, V\text{)}, $$
#
# with $Q_h$ the columns $h d \dots (h+1) d - 1$ of $Q$. In arrays, all heads and images at once:
# `(B, T, D) -> (B, H, T, d)`, attention on the last two axes, then back to `(B, T, D)`.
#
# **Exercise 1a.** `split_heads(x, num_heads)`: `(B, T, D) -> (B, H, T, d)`, head $h$ seeing features
# $h d \dots (h+1) d - 1$ of every token.
#
# <details><summary>Hint</summary>
#
# Split the feature axis into $(H, d)$ with a reshape (it keeps each token's features together),
# then move the head axis in front of the token axis with a transpose. A reshape straight to
# $(B, H, T, d)$ would deal one token's features out to several heads.
# </details>

# %%
@exercise
def split_heads(x, num_heads):
    """(B, T, D) -> (B, H, T, D/H)."""
    # TODO: two lines
    raise NotImplementedError("Exercise 1a: write split_heads")


# %%
check_split_heads(split_heads)

# %% [markdown]
# **Exercise 1b.** `attention_forward(q, k, v, dropout_p, rng, training)`: the engine's scaled
# dot-product attention over `(B, H, T, d)` arrays. It returns the output and the cache the
# backward needs, `AttentionCache(q, k, v, scale, probs, dropout_mask)` — `probs` before dropout
# (plots show it), and the mask that `ops.dropout_forward(probs, dropout_p, rng, training)` returns
# (`None` when there is no dropout). Attention dropout zeroes some of the probabilities in training.
#
# <details><summary>Hint 1: the scores</summary>
#
# `q @ k.swapaxes(-1, -2)` multiplies the last two axes of every (image, head): $(T, d)(d, T) = (T, T)$.
# Scale by $1/\sqrt{d}$ with $d$ = `q.shape[-1]`.
# </details>
#
# <details><summary>Hint 2: the rest</summary>
#
# `probs, _ = ops.softmax_forward(scores, -1)` (over the keys, the last axis);
# `dropped, mask = ops.dropout_forward(probs, dropout_p, rng, training)`; the output is `dropped @ v`.
# </details>

# %%
@exercise
def attention_forward(q, k, v, dropout_p=0.0, rng=None, training=False):
    """q, k, v (B, H, T, d) -> (out (B, H, T, d), AttentionCache)."""
    # TODO: about six lines
    raise NotImplementedError("Exercise 1b: write attention_forward")


# %%
check_attention_forward(attention_forward)

# %% [markdown]
# **Exercise 1c.** The whole layer, `multi_head_attention(x, q_weight, q_bias, ..., o_bias, num_heads)`
# -> `(B, T, D)`, from your `split_heads` and `attention_forward`. Weights are stored (in, out), so a
# projection is `x @ weight + bias`.
#
# <details><summary>Hint</summary>
#
# Project, split each of $Q, K, V$ into heads, attend, merge the heads back (the inverse of
# `split_heads`: transpose, then reshape to $(B, T, D)$), and apply the output projection.
# </details>

# %%
@exercise
def multi_head_attention(x, q_weight, q_bias, k_weight, k_bias, v_weight, v_bias, o_weight, o_bias, num_heads):
    """x (B, T, D) -> (B, T, D)."""
    # TODO: about seven lines
    raise NotImplementedError("Exercise 1c: write multi_head_attention")


# %%
check_multi_head_attention(multi_head_attention)

# %% [markdown]
# ## The softmax backward: your derivation
#
# For one row $s \in \mathbb{R}^T$, $y = \operatorname{softmax}(s)$, $y_i = e^{s_i} / \sum_k e^{s_k}$.
#
# **Exercise 2a (a checkpoint).** Derive the Jacobian $J_{ij} = \partial y_i / \partial s_j$ and write
# `softmax_jacobian(probs)`: the $(T, T)$ matrix for one row, from $y$ alone. The check compares it
# with finite differences.
#
# <details><summary>Hint 1: the quotient rule</summary>
#
# Write $y_i = e^{s_i} / Z$ with $Z = \sum_k e^{s_k}$, so $\partial Z / \partial s_j = e^{s_j}$. Then
# $\dfrac{\partial y_i}{\partial s_j} = \dfrac{\delta_{ij} e^{s_i}}{Z} - \dfrac{e^{s_i} e^{s_j}}{Z^2}$.
# </details>
#
# <details><summary>Hint 2: in terms of y</summary>
#
# Both terms are products of $y$'s: $J_{ij} = y_i \delta_{ij} - y_i y_j$, i.e. $J = \operatorname{diag}(y) - y y^\top$.
# </details>

# %%
@exercise
def softmax_jacobian(probs):
    """probs (T,): one row of softmax outputs -> J (T, T), J[i, j] = d probs_i / d scores_j."""
    # TODO: one line
    raise NotImplementedError("Exercise 2a: write softmax_jacobian")


# %%
check_softmax_jacobian(softmax_jacobian)

# %% [markdown]
# **Exercise 2b.** The backward, `softmax_backward(dprobs, cache)`, in the engine's form: the cache
# is `(probs, axis)` and the softmax ran over `axis` (the engine uses the last). For an upstream
# gradient $g = \partial L/\partial y$ per row, $\partial L/\partial s_j = \sum_i g_i J_{ij}$: find a form
# that never builds $J$ (one $T \times T$ matrix per row is far too much memory; question 2).
#
# <details><summary>Hint 1: multiply out</summary>
#
# $\sum_i g_i J_{ij} = \sum_i g_i y_i \delta_{ij} - \sum_i g_i y_i y_j$. The first sum has one
# non-zero term; in the second, $y_j$ does not depend on $i$.
# </details>
#
# <details><summary>Hint 2: the result, in arrays</summary>
#
# $\partial L/\partial s_j = y_j \big(g_j - \sum_i g_i y_i\big)$: one dot product per row,
# `(dprobs * probs).sum(axis=axis, keepdims=True)`.
# </details>

# %%
@exercise
def softmax_backward(dprobs, cache):
    """dprobs (..., T) -> dscores (..., T); cache = (probs, axis)."""
    probs, axis = cache
    # TODO: one line
    raise NotImplementedError("Exercise 2b: write softmax_backward")


# %%
check_softmax_backward(softmax_backward)

# %% [markdown]
# ## The attention backward: your derivation
#
# Given $G = \partial L/\partial O$, work back through the forward's steps, last first:
# $O = P' V$ (with $P'$ = dropout of $P$), $P = \operatorname{softmax}(S)$, $S = Q K^\top \cdot \text{scale}$.
#
# **Exercise 3.** `attention_backward(dout, cache)` -> `(dq, dk, dv)`, the engine's signature, with
# `cache` the `AttentionCache` of your forward. Use your `softmax_backward`.
#
# <details><summary>Hint 1: through O = P'V</summary>
#
# Exactly lesson 2's product rule: $\partial L/\partial V = P'^\top G$ and $\partial L/\partial P' = G V^\top$
# (batched over images and heads: `.swapaxes(-1, -2)` for the transposes).
# </details>
#
# <details><summary>Hint 2: through dropout and the softmax</summary>
#
# Dropout multiplied by the mask (already scaled by $1/(1-p)$), so its backward multiplies by the mask
# again (`ops.dropout_backward`, or `* mask` when it is not None). Then your `softmax_backward` with the
# cache `(probs, -1)`.
# </details>
#
# <details><summary>Hint 3: through S = Q K^T scale</summary>
#
# $S_{ij} = \text{scale} \cdot q_i \cdot k_j$: $\partial L/\partial Q = \text{scale}\, (\partial L/\partial S)\, K$ and
# $\partial L/\partial K = \text{scale}\, (\partial L/\partial S)^\top Q$ (key $j$ appears in column $j$ of $S$).
# </details>

# %%
@exercise
def attention_backward(dout, cache):
    """dout (B, H, T, d) -> (dq, dk, dv), each (B, H, T, d)."""
    q, k, v, scale, probs, dropout_mask = cache
    # TODO: six to eight lines, in the order of the hints
    raise NotImplementedError("Exercise 3: write attention_backward")


# %%
check_attention_backward(attention_backward)

# %% [markdown]
# ## Your attention, inside a ViT
#
# `use_mine` puts your `softmax_backward`, `attention_forward` and `attention_backward` into the
# engine. A ViT's attention layers (their q/k/v projections as one matrix product, then the heads)
# then run on them: a small model's gradient check over every parameter, and the logits of
# `cifar-tiny` against the engine's own.

# %%
yours = CallCounter({"softmax_backward": softmax_backward, "attention_forward": attention_forward,
                     "attention_backward": attention_backward})
config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=12, num_labels=3, initializer_range=0.5)
with use_mine(**yours.functions):
    report = check_model(minivit.ViTForImageClassification(config, dtype="float64").eval(),
                         rng.standard_normal((2, 3, 8, 8)))
print(f"the engine called: {yours} (your attention_backward calls your softmax_backward itself)")
check(report.max_rel_error < 1e-6 and yours.calls["attention_forward"] > 0 and yours.calls["attention_backward"] > 0,
      "a 2-layer ViT on your attention, every parameter (expect about 1e-9)", yours=f"{report.max_rel_error:.1e}",
      expected="below 1e-6, with your attention_forward and attention_backward called")

images = load_images("test", count=2)
pixels = ((images.images.astype("float32") / 255 - 0.5) / 0.25).astype("float32")
model = minivit.ViTForImageClassification("cifar-tiny", seed=0).eval()
with no_grad():
    reference_logits = model.forward(pixels)
    with use_mine(attention_forward=attention_forward):
        your_logits = model.forward(pixels)
check(np.allclose(your_logits, reference_logits, atol=1e-5), "cifar-tiny's logits with your attention_forward",
      yours=np.round(your_logits[0, :3], 5), expected=np.round(reference_logits[0, :3], 5))

# %% [markdown]
# ## Attention maps
#
# Each layer's attention probabilities are kept after a forward (`model.attention_maps()`). Here is
# where the CLS token looks, per head, in an *untrained* `cifar-tiny` model. A colour scale
# stretched to each map's own minimum and maximum would paint the tiny random differences of a
# nearly uniform map as structure; so every map below shares one fixed scale, from 0 to four times
# the uniform weight $1/T$. An untrained model's maps look as uniform as they are. Lesson 11 draws
# them for a trained model.

# %%
maps = model.attention_maps()  # one (B, H, T, T) array per layer
T = maps[-1].shape[-1]
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
axes[0].imshow(images.images[0].transpose(1, 2, 0))
axes[0].set_title(images.class_names[images.labels[0]])
axes[0].axis("off")
for head in range(3):
    shown = axes[head + 1].imshow(maps[-1][0, head, 0, 1:].reshape(8, 8), cmap="inferno", vmin=0, vmax=4 / T)
    axes[head + 1].set_title(f"head {head}", fontsize=9)
    axes[head + 1].set_xlabel("grid column")
axes[1].set_ylabel("grid row")
colorbar = fig.colorbar(shown, ax=axes[1:], label="attention probability", shrink=0.85)
colorbar.set_ticks([0, 1 / T, 2 / T, 4 / T], labels=["0", "1/T (uniform)", "2/T", "4/T"])
plt.suptitle("untrained cifar-tiny, last layer: how much the CLS token attends to each patch")
plt.show()
cls_row = maps[-1][0, :, 0]
print(f"CLS row of the last layer: probabilities from {cls_row.min():.4f} to {cls_row.max():.4f}; "
      f"uniform is 1/T = {1 / T:.4f}; each row sums to {cls_row.sum(axis=-1).round(6)}")

# %% [markdown]
# ## Questions
#
# 1. Attention costs $O(T^2 d)$ per head. For `cifar-tiny`, compare $T^2 d$ with the $T D^2$ of a
#    linear layer. Which dominates, and when would it flip?
# 2. Why is the softmax's backward cheaper than its Jacobian? How much memory would the Jacobians of
#    one `cifar-tiny` layer take in float32, at batch 128?
# 3. If every score in a row grows by the same constant, what happens to $P$? What does that say
#    about the gradient of the key projection's *bias*? (The gradient checks in `tests/` meet it.)

# %%
show_answers(4)

# %% [markdown]
# ## What you built
#
# - Multi-head attention's forward: `split_heads`, `attention_forward` (with the engine's cache and
#   dropout) and the whole layer, equal to the engine's.
# - The softmax's Jacobian, and from it the backward that never builds it: $y \odot (g - \langle g, y\rangle)$.
# - `attention_backward`, derived step by step; with your softmax backward it ran a ViT's gradient
#   check inside the engine, and your forward gave `cifar-tiny` the engine's logits.
# - Attention maps on a fixed scale: an untrained model attends almost uniformly.
#
# Next, lesson 5: LayerNorm's backward, derived in stages, and the encoder block.
