# %% [markdown]
# # Lesson 11 — What a ViT learns
#
# **Goals.**
# 1. Look inside a model you trained: its patch-embedding filters, its position embeddings, how
#    far each attention head looks, and where the CLS token draws its answer from.
# 2. Write two of the analyses yourself: the principal components of the filters, and the mean
#    attention distance.
# 3. Compare with what the ViT paper found for ViT-L/16 trained on 300 M images (its Figure 7),
#    and reason about what is different for a small ViT trained for minutes on CIFAR.
#
# The model is the one you pretrained in lesson 10 (five CIFAR-10 classes). Every figure here is
# also drawn by `python -m minivit.visualize --checkpoint CKPT --data-dir DIR --out figures/`.

# %%
import os

import numpy as np
import matplotlib.pyplot as plt

import minivit
from support import FAST, RUNS, check_close, data_dir, exercise, load_images, no_grad, show_answers
from support.lesson11 import check_attention_distance, check_principal_components
from minivit import augment, backend, visualize

checkpoint = RUNS / "lesson-10" / "pretrain" / "checkpoint-last.npz"
data_classes = load_images("test", count=10).class_names
if not (checkpoint.is_file()
        and set(minivit.load_checkpoint(checkpoint).checkpoint_meta["class_names"]) <= set(data_classes)):
    # lesson 10 not run (or run on other data): a short pretraining of this lesson's own
    import shutil

    from minivit.train import TrainConfig, train

    checkpoint = RUNS / "lesson-11" / "pretrain" / "checkpoint-last.npz"
    shutil.rmtree(checkpoint.parent, ignore_errors=True)
    five = ["airplane", "automobile", "bird", "cat", "deer"]
    tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64) if FAST else {}
    train(TrainConfig(preset="cifar-tiny", model=tiny, data_dir=data_dir(), out=os.path.relpath(checkpoint.parent),
                      classes=five if set(five) <= set(data_classes) else list(data_classes),
                      time_budget=5 if FAST else 300, progress=False,
                      **(dict(epochs=2, batch_size=16) if FAST else {})))
model = minivit.load_checkpoint(checkpoint)
meta = model.checkpoint_meta
print(f"{model.config.num_hidden_layers} layers, {model.config.num_attention_heads} heads, "
      f"trained {meta['epoch']:.1f} epochs on {', '.join(meta['class_names'])}")

test = load_images("test", image_size=model.config.image_size).select_classes(meta["class_names"])
chosen = np.random.default_rng(0).permutation(len(test))[:40 if FAST else 500]
images, labels = test.images[chosen], test.labels[chosen]
mean, std = np.array(meta["mean"], dtype=np.float32), np.array(meta["std"], dtype=np.float32)
pixel_values = backend.to_numpy(augment.normalize(backend.asarray(images), mean, std))
figures = RUNS / "lesson-11"

# %% [markdown]
# ## 1. The patch-embedding filters
#
# The patch projection has D filters, each a (3, p, p) pattern of weights; a patch's embedding is
# its dot products with them. D = 192 filters of 48 numbers each are too many to read, so the paper
# shows their **principal components**: the directions, in the 48-dimensional space of filters,
# along which the filters differ most, in order, and the share of the filters' variance each
# explains.
#
# **Exercise 1.** Return the first `count` components, shaped (count, C, p, p), and their shares.
#
# <details><summary>Hint 1: what to decompose</summary>
#
# Flatten the filters into a $(D, C p^2)$ matrix $F$ and subtract the mean filter from every row:
# principal components describe the spread around the mean, not the mean itself.
# </details>
#
# <details><summary>Hint 2: the SVD</summary>
#
# `np.linalg.svd(F - F.mean(axis=0), full_matrices=False)` gives $U S V^\top$; the rows of $V^\top$ are the
# directions, in order of $S$. A direction's variance is proportional to $S_i^2$, so its share is
# $S_i^2 / \sum_j S_j^2$.
# </details>

# %%
@exercise
def principal_components(filters, count):
    # filters: (D, C, p, p). TODO: about six lines.
    raise NotImplementedError("Exercise 1: the principal components of the filters")


# %%
check_principal_components(principal_components)
filters = backend.to_numpy(model.embeddings.patch_embeddings.projection.weight.data).astype(np.float64)
ours, our_shares = principal_components(filters, 12)
theirs, their_shares = visualize.filter_components(model, 12)
check_close(our_shares, their_shares, "on your model: the explained shares equal minivit.visualize's", atol=1e-9)

# %%
from IPython.display import Image, display

components, shares = visualize.filter_components(model, 28)
display(Image(filename=str(visualize.draw_filter_components(components, shares, figures / "learned-filters.png"))))

# %% [markdown]
# Each component is drawn stretched to its own range (a component's sign and scale are arbitrary;
# the shares above each say how much it counts).
#
# In the paper the components look like plausible bases for small image patches: smooth colour
# blobs and low-frequency gradients first, then finer stripes. With 4 x 4 patches there is less
# room for structure; look for the colour-opponent components (one colour against another) and
# for how fast the shares fall.
#
# ## 2. Position embeddings
#
# Each tile is one patch position: the cosine similarity of its embedding with the embeddings of
# every position on the 8 x 8 grid. Nobody told the model that the patches lie on a grid; if the
# tiles show a bright spot at their own place, fading with distance (and along its row and
# column), it learned the 2-D layout from the data.

# %%
display(Image(filename=str(visualize.draw_position_similarity(visualize.position_similarity(model),
                                                              figures / "position-similarity.png"))))

# %% [markdown]
# ## 3. How far does each head look?
#
# For one head, a patch $i$ attends to patch $j$ with weight $a_{ij}$ (renormalised over the
# patches, leaving the CLS token out); with $d_{ij}$ the distance in pixels between the patches'
# centres, $\sum_j a_{ij} d_{ij}$ is how far that patch looks. Averaged over the patches and the
# images, it is the head's **mean attention distance** — the ViT's analogue of a CNN's receptive
# field, except that it is learned and differs from head to head.
#
# **Exercise 2.** From one layer's attention probabilities (B, H, T, T) and the (N, N) patch
# distances, return the (H,) mean distances.
#
# <details><summary>Hint</summary>
#
# Drop the CLS token's row and column (`probs[:, :, 1:, 1:]`), renormalise each row to sum to one
# over the patches, multiply by the distances and sum over the attended patch; then average over
# the images and the attending patches, keeping the heads.
# </details>

# %%
@exercise
def attention_distance(probs, distances):
    # TODO: about four lines.
    raise NotImplementedError("Exercise 2: the mean attention distance of every head")


# %%
check_attention_distance(attention_distance)
centres = visualize.patch_centres(model.config)
distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
with no_grad():
    model.eval().forward(backend.asarray(pixel_values[:40]))
maps = [backend.to_numpy(probs).astype(np.float64) for probs in model.attention_maps()]
ours = np.stack([attention_distance(probs, distances) for probs in maps])
check_close(ours, visualize.mean_attention_distance(model, pixel_values[:40]),
            "on your model: your distances equal minivit.visualize.mean_attention_distance", atol=1e-9)

# %%
per_head = visualize.mean_attention_distance(model, pixel_values)
uniform = visualize.uniform_attention_distance(model.config)
display(Image(filename=str(visualize.draw_attention_distance(per_head, figures / "attention-distance.png", uniform))))
print("mean distance per layer (pixels):", np.round(per_head.mean(axis=1), 2))
print("uniform attention would give:", round(uniform, 2))

# %% [markdown]
# In the paper (ViT-L/16, 224 px) some heads look across most of the image already in the first
# layer while others stay local, and the distances grow with depth. Compare your plot: are the
# early layers' heads as spread? A model that has seen few images tends to stay closer to the
# uniform value in some layers (it has not learned to look anywhere in particular): the
# dashed line is that uniform value.
#
# ## 4. Attention rollout
#
# Where does the CLS token, whose final state is classified, get its information from? One
# layer's attention says where it looks in that layer; but through the residual connections
# each token also keeps itself. **Attention rollout** (Abnar & Zuidema 2020) averages each
# layer's heads, mixes in the identity for the residual, $\tilde A_l = \tfrac12 I + \tfrac12 \bar A_l$,
# and multiplies through the layers: $R = \tilde A_L \cdots \tilde A_1$. The CLS row of $R$ over the
# patches is a map of what the answer draws on: shares that add up (with the CLS token's own) to 1.
#
# The maps below are drawn on one scale for every image, from 0: each patch's share of what the
# patches give, times the number of patches $N$, so 1 means "as much as uniform attention would
# give". (`minivit.visualize`'s figure stretches each map to its own range, which shows where a map
# peaks but would paint a nearly uniform map as strongly as a peaked one.)

# %%
def rollout_shares(model, pixel_values, keep_residual=0.5):
    """(B, g, g): the CLS token's share of each patch, through every layer (attention rollout)."""
    with no_grad():
        model.eval().forward(backend.asarray(pixel_values))
    maps = [backend.to_numpy(probs).astype(np.float64) for probs in model.attention_maps()]
    B, _, T, _ = maps[0].shape
    rollout = np.broadcast_to(np.eye(T), (B, T, T))
    for probs in maps:
        rollout = (keep_residual * np.eye(T) + (1 - keep_residual) * probs.mean(axis=1)) @ rollout
    g = model.config.grid_size
    return rollout[:, 0, 1:].reshape(B, g, g)


shown = [int(np.flatnonzero(labels == label)[0]) for label in range(len(meta["class_names"]))
         if np.any(labels == label)]
shares = rollout_shares(model, pixel_values[shown])
N = model.config.grid_size**2
relative = shares / shares.sum(axis=(1, 2), keepdims=True) * N  # 1: uniform over the patches
top = max(2.0, float(relative.max()))  # one scale for all maps
fig, axes = plt.subplots(2, len(shown), figsize=(2.2 * len(shown) + 1, 4.6), squeeze=False)
for column, index in enumerate(shown):
    axes[0, column].imshow(images[index].transpose(1, 2, 0))
    axes[0, column].set_title(meta["class_names"][labels[index]], fontsize=9)
    axes[0, column].axis("off")
    drawn = axes[1, column].imshow(relative[column], cmap="inferno", vmin=0, vmax=top)
    axes[1, column].set_xlabel("grid column", fontsize=8)
axes[1, 0].set_ylabel("grid row", fontsize=8)
fig.colorbar(drawn, ax=axes[1, :], label="share of the patches' part x N\n(1 = uniform)", shrink=0.9)
plt.suptitle("Attention rollout: where the CLS token's answer comes from, through all layers")
plt.show()
stretched = (shares - shares.min(axis=(1, 2), keepdims=True)) / np.ptp(shares, axis=(1, 2), keepdims=True)
check_close(stretched, visualize.attention_rollout(model, pixel_values[shown]),
            "your rollout, stretched per map, equals minivit.visualize.attention_rollout", atol=1e-5)
print("largest share x N per image:", np.round(relative.max(axis=(1, 2)), 2),
      f"(the patches give {shares.sum(axis=(1, 2)).mean():.0%} of the CLS token's input; the CLS token itself the rest)")

# %% [markdown]
# ## Questions
#
# 1. Rollout treats all heads alike and ignores the MLPs and the values' magnitudes. Which of
#    its maps here would you trust, and what would tell you a map is misleading?
# 2. Retrain for longer (or take the 15-minute pretraining of `benchmarks/finetune_demo.py`) and
#    redraw. Which of the four pictures changes most with more training?
# 3. The position similarity of a model trained at 32 px and finetuned at 48 px (lesson 10): is
#    the grid structure still there after the bicubic resize and finetuning?
# 4. Why does the paper report that ViTs need more data than CNNs, in terms of these pictures?
#    (Hint: what does a convolution get for free that section 2 shows the ViT had to learn?)

# %%
show_answers(11)

# %% [markdown]
# ## What you built
#
# - `principal_components` of the patch-embedding filters and `attention_distance` per head, each
#   equal to `minivit.visualize`'s, and the ViT paper's Figure 7 drawn for your own model.
# - Attention rollout, on a scale where a uniform map looks uniform.
# - A reading of what a small ViT learns in minutes, against what ViT-L/16 learns from 300 M images.
#
# From pixels to patches, every forward and backward written and checked, running inside the
# engine, trained, moved to a GPU, finetuned and looked into. One lesson is left, lesson 12: the
# same training on several processes at once, data parallelism and the ring all-reduce.
