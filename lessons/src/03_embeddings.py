# %% [markdown]
# # Lesson 3 — Embeddings: the CLS token and position embeddings
#
# **Goals.**
# 1. Prepend a learned CLS token and see why its gradient is a *sum* over the batch.
# 2. Add learned position embeddings and see why their gradient also sums over the batch.
# 3. Know what embedding dropout does in training and in evaluation.
#
# After the patch projection we have $Z \in \mathbb{R}^{B \times N \times D}$. ViT then builds
#
# $$ H^{(0)} = \big[\, c;\ Z \,\big] + E_{\text{pos}}, \qquad c \in \mathbb{R}^{1 \times 1 \times D},\ E_{\text{pos}} \in \mathbb{R}^{1 \times (N+1) \times D}. $$
#
# The CLS token $c$ is one vector shared by every image; after the encoder, its final state is
# what the classifier reads. Position embeddings tell the model *where* each patch was: attention
# itself treats its input as a set, and would give the same answer for shuffled patches.
#
# ## The backward of a shared parameter
#
# $c$ is copied $B$ times (once per image). A copy's backward is a sum: if $c$ appears in
# $B$ places, $\partial L/\partial c = \sum_b \partial L / \partial H^{(0)}_{b,0}$. The same holds for
# $E_{\text{pos}}$, broadcast over the batch: $\partial L / \partial E_{\text{pos}} = \sum_b \partial L/\partial H^{(0)}_b$.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit import ops
from minivit.gradcheck import check_model
from support import CallCounter, check, exercise, show_answers, use_mine
from support.lesson03 import check_cls_concat_backward

rng = np.random.default_rng(0)

# %% [markdown]
# **Exercise 1.** Write the backward of the CLS concatenation, `cls_concat_backward(dout, batch_size)`
# (the engine's signature: the forward's cache is the batch size). It must split the gradient into
# the part that belongs to the patches and the part that belongs to the (single, shared) CLS token.
#
# <details><summary>Hint 1: which rows are whose</summary>
#
# The forward put the CLS token at position 0 of every sequence and the $N$ patches at positions
# $1 \dots N$. The gradient of the output splits along that axis the same way.
# </details>
#
# <details><summary>Hint 2: one parameter, B copies</summary>
#
# `dout[:, :1]` is $(B, 1, D)$: one gradient per copy of the token. The token itself is $(1, 1, D)$:
# add the copies' gradients over the batch, keeping the axis (`keepdims=True`).
# </details>

# %%
def cls_concat_forward(patch_embeddings, cls_token):
    B, N, D = patch_embeddings.shape
    out = np.concatenate([np.broadcast_to(cls_token, (B, 1, D)), patch_embeddings], axis=1)
    return out, B


@exercise
def cls_concat_backward(dout, batch_size):
    """dout (B, N+1, D) -> (dpatch_embeddings (B, N, D), dcls_token (1, 1, D))."""
    # TODO: two lines
    raise NotImplementedError("Exercise 1: write cls_concat_backward")


# %%
check_cls_concat_backward(cls_concat_backward)

# %% [markdown]
# Your backward in the engine: a small ViT's gradient check, every parameter, with the engine's
# `cls_concat_backward` replaced by yours.

# %%
config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=6, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=8, num_labels=3, initializer_range=0.5)
tiny = minivit.ViTForImageClassification(config, dtype="float64").eval()
counter = CallCounter({"cls_concat_backward": cls_concat_backward})
with use_mine(**counter.functions):
    report = check_model(tiny, rng.standard_normal((3, 3, 8, 8)))
cls_error = next(c for c in report.checks if c.name == "embeddings.cls_token").max_rel_error
check(report.max_rel_error < 1e-6 and counter.calls["cls_concat_backward"] > 0,
      f"every gradient of a ViT through your cls_concat_backward ({counter})",
      yours=f"{report.max_rel_error:.1e} (the CLS token's: {cls_error:.1e})", expected="below 1e-6")

# %% [markdown]
# The engine's pair is `minivit.ops.cls_concat_forward` / `cls_concat_backward`; the position add is
# `position_add_forward` / `position_add_backward`. Both gradients sum over the batch:

# %%
dout = rng.standard_normal((3, 5, 4))
_, dposition = ops.position_add_backward(dout)
check(np.allclose(dposition, dout.sum(axis=0, keepdims=True)), "d position embeddings = sum over the batch",
      yours=f"shape {dposition.shape}", expected="shape (1, 5, 4), the sum of the 3 images' gradients")

# %% [markdown]
# ## What position embeddings look like
#
# At initialisation they are random (truncated normal, std 0.02), so neighbouring patches are no
# more alike than distant ones. Below: the cosine similarity of each patch's position embedding to
# every other, laid out on the 8×8 grid, for four patches. Lesson 11 draws
# the same picture for a trained model, where a 2-D structure appears.

# %%
model = minivit.ViTForImageClassification("cifar-tiny", seed=0)
positions = model.embeddings.position_embeddings.data[0, 1:]  # (64, D), without the CLS position
unit = positions / np.linalg.norm(positions, axis=1, keepdims=True)
similarity = unit @ unit.T
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
for axis, patch in zip(axes, [0, 7, 27, 63]):
    image = axis.imshow(similarity[patch].reshape(8, 8), cmap="viridis", vmin=-1, vmax=1)
    axis.set_title(f"patch {patch} (row {patch // 8}, column {patch % 8})", fontsize=9)
    axis.set_xlabel("grid column")
axes[0].set_ylabel("grid row")
fig.colorbar(image, ax=axes, label="cosine similarity", shrink=0.8)
plt.suptitle("cosine similarity of position embeddings at initialisation (each patch is 1 with itself)")
plt.show()

# %% [markdown]
# ## Embedding dropout
#
# transformers applies dropout (probability `hidden_dropout_prob`) to $H^{(0)}$. Inverted dropout
# zeroes each element with probability $p$ and scales the survivors by $1/(1-p)$, so the expected
# value is unchanged and evaluation needs no correction. In `eval()` mode it is the identity.

# %%
config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=8, num_labels=3, hidden_dropout_prob=0.5)
embeddings = minivit.ViTForImageClassification(config).embeddings
pixels = rng.standard_normal((2, 3, 8, 8)).astype("float32")
embeddings.train()
trained = embeddings.forward(pixels)
embeddings.eval()
evaluated = embeddings.forward(pixels)
print(f"training: {np.mean(trained == 0):.0%} zeros; evaluation: {np.mean(evaluated == 0):.0%} zeros")
check(np.allclose(trained[trained != 0], 2 * evaluated[trained != 0], rtol=1e-5),
      "survivors are scaled by 1/(1-p) = 2", yours=f"{np.median(trained[trained != 0] / evaluated[trained != 0]):.4f}",
      expected=2)

# %% [markdown]
# ## Questions
#
# 1. If you shuffled the patches of every image *and* their position embeddings the same way,
#    would the logits change? What if you shuffled only the patches?
# 2. Why does a learning-rate schedule usually exclude the CLS token and position embeddings from
#    weight decay (see `minivit.optim.no_weight_decay`)?
# 3. With mean pooling (`ViTConfig(pooling="mean")`) instead of the CLS token, which parameter
#    becomes useless, and what would its gradient be?

# %%
show_answers(3)

# %% [markdown]
# ## What you built
#
# - `cls_concat_backward`: the gradient of a shared parameter is the sum of its copies' gradients,
#   and it ran inside the engine for a whole ViT's gradient check.
# - The same rule for the position embeddings (a sum over the batch), and inverted dropout, which
#   needs no correction at evaluation time.
#
# Next, lesson 4: self-attention, forward and backward, yours inside the engine.
