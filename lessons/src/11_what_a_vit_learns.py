# %% [markdown]
# # Lesson 11 — What a ViT learns
#
# **Goals.**
# 1. Look inside a properly trained ViT: its patch-embedding filters, its position embeddings, how
#    far each attention head looks, and where the CLS token draws its answer from.
# 2. Tell learned structure from what any network shows: every picture is drawn twice, for the
#    trained model and for **the same model before its first step** (its random initialisation,
#    same seed). Only what differs between the two was learned.
# 3. Write two of the analyses yourself: the principal components of the filters, and the mean
#    attention distance.
# 4. Compare with what the ViT paper found for ViT-L/16 trained on 300 M images (its Figure 7),
#    and reason about what is different for a small ViT trained for 8 epochs on CIFAR-10.
#
# The model is the README's CPU model, `--preset cifar-cpu` (32 px images cut into 4 x 4 patches
# of 8 px, 3 layers of 4 heads, width 128, an MLP of 256), trained for 8 epochs on all of CIFAR-10:
# four and a half minutes on a quiet two-core machine (8 x 45,000 images at 1,370 images/s on an
# Ice Lake Xeon, this notebook's build), longer on a busy one: a fixed number of
# epochs, not a time budget, so that every machine gets the same model. The first cell trains it
# once, into `runs/lesson-11/`, and reuses it on every later run (delete that folder to train
# again); an interrupted training continues where it stopped. To look into a model of your own instead, set
# `your_checkpoint` to its `checkpoint-last.npz`. Every figure here is also drawn, for one model,
# by `python -m minivit.visualize --checkpoint CKPT --data-dir DIR --out figures/`.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minivit
from support import FAST, RUNS, check_close, data_dir, exercise, load_images, no_grad, show_answers
from support.lesson11 import (check_attention_distance, check_principal_components, initial_model,
                              rollout_peak, similarity_by_distance, spectrum_summary, trained_checkpoint)
from minivit import augment, backend, visualize

your_checkpoint = None  # or the path of a minivit checkpoint (a run's checkpoint-last.npz) to look into
epochs = 1 if FAST else 8
tiny = ["--hidden-size", "32", "--num-hidden-layers", "2", "--num-attention-heads", "2", "--intermediate-size",
        "64", "--batch-size", "8", "--train-per-class", "5"] if FAST else []  # fast mode: a tiny run, same code
checkpoint = trained_checkpoint(RUNS / "lesson-11" / f"cifar-cpu-{epochs}-epochs{'-fast' if FAST else ''}",
                                data_dir(), epochs, tiny, yours=your_checkpoint, progress=False)
model = minivit.load_checkpoint(checkpoint)
meta = model.checkpoint_meta
initial = initial_model(model)  # the same architecture and seed, before the first step
print(f"{model.config.num_hidden_layers} layers, {model.config.num_attention_heads} heads, "
      f"{model.config.grid_size} x {model.config.grid_size} patches of {model.config.patch_size} px; trained "
      f"{meta['epoch']:.1f} epochs on {len(meta['class_names'])} classes")

test = load_images("test", image_size=model.config.image_size).select_classes(meta["class_names"])
mean, std = np.array(meta["mean"], dtype=np.float32), np.array(meta["std"], dtype=np.float32)


def normalised(images):
    return backend.to_numpy(augment.normalize(backend.asarray(images), mean, std))


def accuracy(model, images, labels, batch_size=500):
    correct = 0
    with no_grad():
        for start in range(0, len(images), batch_size):
            logits = model.eval().forward(backend.asarray(normalised(images[start:start + batch_size])))
            correct += int(np.sum(backend.to_numpy(logits).argmax(axis=1) == labels[start:start + batch_size]))
    return correct / len(images)


print(f"test accuracy on {len(test)} images: trained {accuracy(model, test.images, test.labels):.1%}, "
      f"at initialisation {accuracy(initial, test.images, test.labels):.1%} "
      f"(chance: {1 / len(meta['class_names']):.0%})")

chosen = np.random.default_rng(0).permutation(len(test))[:40 if FAST else 500]
images, labels = test.images[chosen], test.labels[chosen]
pixel_values = normalised(images)
models = {"trained": model, "at initialisation": initial}

# %% [markdown]
# ## 1. The patch-embedding filters
#
# The patch projection has D filters, each a (3, p, p) pattern of weights; a patch's embedding is
# its dot products with them. Here D = 128 filters of 3 x 8 x 8 = 192 numbers each: too many to
# read, so the paper shows their **principal components**: the directions, in the space of
# filters, along which the filters differ most, in order, and the share of the filters' variance
# each explains.
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
check_close(our_shares, their_shares, "on the trained model: the explained shares equal minivit.visualize's", atol=1e-9)

# %% [markdown]
# The first components of both models, each drawn stretched to its own range (a component's sign
# and scale are arbitrary; the share above it says how much it counts), and then the whole
# spectrum: the share of every component, on a log scale.

# %%
def stretched(component):
    """(C, p, p) -> (p, p, 3) in [0, 1]."""
    return ((component - component.min()) / max(float(np.ptp(component)), 1e-12)).transpose(1, 2, 0)


count = 10
spectra = {}
fig, axes = plt.subplots(2, count, figsize=(1.25 * count, 3.3), squeeze=False)
for row, (name, which) in enumerate(models.items()):
    components, shares = visualize.filter_components(which, count)
    spectra[name] = visualize.filter_components(which, filters.shape[0])[1]  # every component's share
    for column in range(count):
        axes[row, column].imshow(stretched(components[column]), interpolation="nearest")
        axes[row, column].set_title(f"{shares[column]:.1%}", fontsize=8)
        axes[row, column].set_xticks([])
        axes[row, column].set_yticks([])
    axes[row, 0].set_ylabel(name, fontsize=9)
plt.suptitle("The first principal components of the patch-embedding filters (share of the variance)")
plt.show()

fig, axis = plt.subplots(figsize=(6, 3.4))
for name, shares in spectra.items():
    axis.plot(np.arange(1, len(shares) + 1), shares, marker=".", label=name)
axis.set_yscale("log")
axis.set_xlabel("principal component")
axis.set_ylabel("share of the filters' variance")
axis.grid(alpha=0.3)
axis.legend()
plt.show()
for name, shares in spectra.items():
    summary = spectrum_summary(shares)
    print(f"{name:>17}: the first 5 components hold {summary['first']:.1%} of the variance; "
          f"effective number of components {summary['effective']:.1f} (of {len(shares)})")

# %% [markdown]
# **What training put there.** At initialisation the spectrum is flat: the first 5 components hold
# 11.5% of the variance and the effective number of components is 77 of 128, as for any random
# matrix, and the components are noise. Trained, the first 5 hold 48.1% and the effective number
# is 15: the filters now vary along a few directions, and those are the ones the paper describes
# for ViT-L/16, smooth colour gradients (the first component, 14.3%, runs from one colour at the
# top of the patch to another at the bottom; the second, 12.3%, is another colour direction),
# then low-frequency light-dark patterns. None of this is in the initial weights.
#
# ## 2. Position embeddings
#
# Each tile is one patch position: the cosine similarity of its embedding with the embeddings of
# every position on the grid. Nobody told the model that the patches lie on a grid; if the tiles
# show a bright spot at their own place, fading with distance (and along its row and column), it
# learned the 2-D layout from the data. The right-hand plot averages the similarity of every two
# different positions by how far apart they are on the grid; $r$ is the correlation of similarity
# with distance over all pairs.

# %%
def mosaic(similarity):
    """(g, g, g, g) -> one picture: tile (i, j) is position (i, j)'s similarity with every position."""
    g = similarity.shape[0]
    canvas = np.full((g * (g + 1) - 1,) * 2, np.nan)  # a blank line between the tiles
    for i in range(g):
        for j in range(g):
            canvas[i * (g + 1):i * (g + 1) + g, j * (g + 1):j * (g + 1) + g] = similarity[i, j]
    return canvas


fig, axes = plt.subplots(1, 3, figsize=(14, 4.3), gridspec_kw={"width_ratios": [1, 1, 1.2]})
profiles = {}
for axis, (name, which) in zip(axes, models.items()):
    similarity = visualize.position_similarity(which)
    drawn = axis.imshow(mosaic(similarity), vmin=-1, vmax=1, cmap="viridis", interpolation="nearest")
    axis.set_title(f"{name}", fontsize=10)
    axis.axis("off")
    profiles[name] = similarity_by_distance(similarity)
fig.colorbar(drawn, ax=list(axes[:2]), shrink=0.8, label="cosine similarity")
for name, (apart, means, correlation) in profiles.items():
    axes[2].plot(apart, means, marker="o", label=f"{name} (r = {correlation:.2f})")
axes[2].axhline(0, color="gray", linewidth=0.8)
axes[2].set_xlabel("distance between two positions (patches)")
axes[2].set_ylabel("mean cosine similarity")
axes[2].legend(fontsize=8)
plt.suptitle("Position embedding similarity: each tile is one position against all")
plt.show()
for name, (apart, means, correlation) in profiles.items():
    print(f"{name:>17}: neighbours {means[0]:+.2f}, farthest apart {means[-1]:+.2f}; "
          f"correlation with distance {correlation:+.2f}")

# %% [markdown]
# **What training put there.** At initialisation every tile is a single bright square at its own
# place on noise: neighbours are as alike as positions far apart (+0.03 against +0.04, correlation
# with distance +0.06). Trained, neighbouring positions have a mean similarity of +0.38, positions
# farthest apart -0.01, and the correlation with distance is -0.25: the tiles show bright bands
# along their own row (and, fainter, their column), so the embedding has learned which row and which
# column a patch is in (the peak at distance 3 is two positions at the two ends of one row or
# column, +0.26).
# The model learned the 2-D layout from the images alone, on a grid of only 4 x 4.
#
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
            "on the trained model: your distances equal minivit.visualize.mean_attention_distance", atol=1e-9)

# %%
uniform = visualize.uniform_attention_distance(model.config)
per_head = {name: visualize.mean_attention_distance(which, pixel_values) for name, which in models.items()}
layers, heads = per_head["trained"].shape
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for axis, (name, per_layer) in zip(axes, per_head.items()):
    for head in range(heads):
        axis.scatter(np.arange(1, layers + 1), per_layer[:, head], s=22, label=f"head {head + 1}")
    axis.axhline(uniform, color="gray", linestyle="--", linewidth=1, label="uniform attention")
    axis.set_xticks(np.arange(1, layers + 1))
    axis.set_xlabel("layer")
    axis.set_title(name, fontsize=10)
    axis.grid(alpha=0.3)
axes[0].set_ylabel("mean attention distance (pixels)")
axes[0].set_ylim(0, 1.15 * max(uniform, *(float(d.max()) for d in per_head.values())))
axes[1].legend(fontsize=7)
plt.suptitle(f"How far each head looks, on {len(pixel_values)} test images")
plt.show()
print(f"uniform attention: {uniform:.2f} px")
for name, per_layer in per_head.items():
    print(f"{name:>17}: " + "; ".join(f"layer {layer + 1} {row.min():.1f} to {row.max():.1f}"
                                      for layer, row in enumerate(per_layer)) + " px (the heads' range)")

# %% [markdown]
# **What training put there.** At initialisation every head of every layer looks 16.0 to
# 16.1 px far, the 16.06 px of uniform attention: the queries and keys are too small to prefer any
# patch. Trained, the heads spread: all four heads of layer 1 look nearer than uniform (14.2 to
# 15.2 px), layer 2 ranges from 14.5 px to one head a little beyond uniform (16.5 px), and layer 3
# holds the most local head (13.8 px) beside heads near uniform (up to 16.1 px). Compare the paper
# (ViT-L/16, 224 px): there some heads look across most of the image already in the first layer
# while others stay local, and the distances grow with depth. Here the spread is smaller, on a
# 4 x 4 grid where the nearest other patch is 8 px away and the farthest 34 px, and after 8
# epochs instead of a pretraining on 300 M images; but local and wider heads are there, and the
# random network has none.
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
# The maps below are drawn on one scale for every image and both models, from 0: each patch's
# share of what the patches give, times the number of patches $N$, so 1 means "as much as uniform
# attention would give". (`minivit.visualize`'s figure stretches each map to its own range, which
# shows where a map peaks but would paint a nearly uniform map as strongly as a peaked one.)

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
N = model.config.grid_size**2
relative = {}
for name, which in models.items():
    shares = rollout_shares(which, pixel_values[shown])
    relative[name] = shares / shares.sum(axis=(1, 2), keepdims=True) * N  # 1: uniform over the patches
top = max(2.0, *(float(maps.max()) for maps in relative.values()))  # one scale for all maps
fig, axes = plt.subplots(3, len(shown), figsize=(1.6 * len(shown) + 1.5, 5.4), squeeze=False)
for column, index in enumerate(shown):
    axes[0, column].imshow(images[index].transpose(1, 2, 0))
    axes[0, column].set_title(meta["class_names"][labels[index]], fontsize=9)
    for row, name in enumerate(relative, start=1):
        drawn = axes[row, column].imshow(relative[name][column], cmap="inferno", vmin=0, vmax=top)
for row, name in enumerate(["image", *relative]):
    axes[row, 0].set_ylabel(name, fontsize=9)
for axis in axes.ravel():
    axis.set_xticks([])
    axis.set_yticks([])
fig.colorbar(drawn, ax=axes[1:, :], label="share of the patches' part x N\n(1 = uniform)", shrink=0.9)
plt.suptitle("Attention rollout: where the CLS token's answer comes from, through all layers")
plt.show()

shares = rollout_shares(model, pixel_values[shown])
stretched_maps = (shares - shares.min(axis=(1, 2), keepdims=True)) / np.ptp(shares, axis=(1, 2), keepdims=True)
check_close(stretched_maps, visualize.attention_rollout(model, pixel_values[shown]),
            "your rollout, stretched per map, equals minivit.visualize.attention_rollout", atol=1e-5)
for name, which in models.items():
    shares = rollout_shares(which, pixel_values)
    peaks = rollout_peak(shares)
    print(f"{name:>17}: largest patch share x N, median over {len(peaks)} images {np.median(peaks):.2f} "
          f"(10% of images above {np.quantile(peaks, 0.9):.2f}); the patches give "
          f"{shares.sum(axis=(1, 2)).mean():.0%} of the CLS token's input, the CLS token itself the rest")

# %% [markdown]
# **What training put there.** At initialisation every map is flat: the largest patch share is
# 1.01 times uniform (median over 500 test images; 1.02 for the top 10%). Trained, the median
# largest share is 1.70 times uniform, above 2.13 for one image in ten: the CLS token draws
# unevenly on the patches; in several of the images above the brightest patches lie on the
# object (the cat's head, the dog, the truck), in others beside it (the bird). The patches give 84%
# of the CLS token's input (82% at initialisation), the CLS token itself the rest.
#
# %% [markdown]
# ## Questions
#
# 1. Rollout treats all heads alike and ignores the MLPs and the values' magnitudes. Which of
#    its maps here would you trust, and what would tell you a map is misleading?
# 2. Set `epochs = 2` (a new cache folder is made for it) and run the lesson again. Which of the
#    pictures is already far from the initialisation after 2 epochs, and which changes most
#    between 2 and 8?
# 3. Lesson 10 pretrained a model at 32 px and finetuned it at 48 px. Set `your_checkpoint` to
#    `RUNS / "lesson-10" / "finetune" / "checkpoint-last.npz"` and look at its position similarity:
#    is the grid structure still there after the bicubic resize and finetuning?
# 4. Why does the paper report that ViTs need more data than CNNs, in terms of these pictures?
#    (Hint: what does a convolution get for free that section 2 shows the ViT had to learn?)

# %%
show_answers(11)

# %% [markdown]
# ## What you built
#
# - `principal_components` of the patch-embedding filters and `attention_distance` per head, each
#   equal to `minivit.visualize`'s, and the ViT paper's Figure 7 drawn for a trained model.
# - Attention rollout, on a scale where a uniform map looks uniform.
# - A baseline beside every picture: the same network before its first step, so that what is
#   read off a picture is what training put there, not what any random network shows.
#
# From pixels to patches, every forward and backward written and checked, running inside the
# engine, trained, moved to a GPU, finetuned and looked into. One lesson is left, lesson 12: the
# same training on several processes at once, data parallelism and the ring all-reduce.
