# %% [markdown]
# # Lesson 10 — Pretrain, then finetune
#
# **Goals.**
# 1. Know what changes between a pretrained ViT and the one you finetune: the head, and the
#    position embeddings when the resolution changes.
# 2. Write the bicubic resize of the position-embedding grid yourself, and see that it is what
#    transformers' `interpolate_pos_encoding` computes.
# 3. Write layer-wise learning-rate decay.
# 4. Pretrain on five CIFAR-10 classes, finetune on the other five from 100 images per class at a
#    higher resolution, and compare with training the same model from scratch.
#
# The ViT recipe is *pretrain on many labelled images, then finetune on the task you care about*.
# What carries over is everything below the head: the patch embedding, the position embeddings,
# the encoder. The ViT paper finetunes at a **higher resolution** than it pretrains, which helps
# accuracy: the patch size stays, so the patch grid grows, and the learned position table no
# longer fits. The paper's answer is to resize the table as an image, by 2-D interpolation.

# %%
import json
import os
import shutil

import matplotlib.pyplot as plt
import numpy as np

from support import FAST, RUNS, check, check_close, data_dir, exercise, load_images, show_answers
from support.lesson10 import check_layer_decay_scale, check_resize_matrix
from minivit import backend, finetune, ops
from minivit.train import TrainConfig, train

PRETRAIN_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
NEW_CLASSES = ["dog", "frog", "horse", "ship", "truck"]
class_names = load_images("train", count=10).class_names
if not set(PRETRAIN_CLASSES + NEW_CLASSES) <= set(class_names):  # another data set: split its classes in two
    half = len(class_names) // 2
    PRETRAIN_CLASSES, NEW_CLASSES = ((class_names[:half], class_names[half:]) if len(class_names) >= 4
                                     else (class_names, class_names))
run_root = RUNS / "lesson-10"
out = lambda name: os.path.relpath(run_root / name)  # noqa: E731 (run folders relative to here: short printed paths)
shutil.rmtree(run_root, ignore_errors=True)
# fast mode (the tests): a tiny model and a few seconds of everything
tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64) if FAST else {}

# %% [markdown]
# ## 1. Pretrain
#
# The first half: `cifar-tiny` on the five classes airplane, automobile, bird, cat and deer, all
# of their 25,000 training images, at 32 px (an 8 x 8 grid of 4-pixel patches). Five minutes here;
# `benchmarks/finetune_demo.py` pretrains for fifteen.

# %%
pretrain = TrainConfig(preset="cifar-tiny", model=tiny, data_dir=data_dir(), out=out("pretrain"),
                       classes=PRETRAIN_CLASSES, time_budget=5 if FAST else 300, progress=False,
                       **(dict(epochs=2, batch_size=16) if FAST else {}))
summary = train(pretrain)
print(json.dumps({key: summary[key] for key in ("step", "val_accuracy", "elapsed")}))
pretrained_checkpoint = run_root / "pretrain" / "checkpoint-last.npz"

# %% [markdown]
# ## 2. A new head
#
# The pretrained classifier maps features to airplane ... deer. For dog ... truck it is
# meaningless, so it goes, and a new (D, 5) layer takes its place. The ViT paper initialises
# it to **zero**: the first logits are all zero (a uniform prediction), and the first gradients
# reach the head alone — the pretrained features are not shaken by a random head's noise.
#
# `minivit.finetune.finetune_model` loads any pretrained source (a minivit checkpoint, a
# transformers folder or hub name, a Google `.npz`, a timm state dict) and applies the changes.

# %%
model = finetune.finetune_model(pretrained_checkpoint, num_labels=len(NEW_CLASSES), new_head=True)
head = backend.to_numpy(model.classifier.weight.data)
print("new head:", head.shape, "all zero:", not head.any())
check(not head.any() and head.shape[1] == len(NEW_CLASSES), "a zero-initialised head for the new classes",
      yours=f"shape {head.shape}, largest |weight| {np.abs(head).max():.1g}",
      expected=f"shape ({head.shape[0]}, {len(NEW_CLASSES)}), all 0")

# %% [markdown]
# ## 3. Position embeddings at another resolution
#
# At 48 px the grid is 12 x 12. The 64 learned patch positions are read as a D-channel 8 x 8
# image and resized **bicubically** to 12 x 12; the CLS position has no place on the grid and is
# kept apart. Bicubic resizing is separable: along each axis, output pixel $i$ sits at source
# coordinate
#
# $$ x = (i + 0.5)\,\frac{n_{\text{in}}}{n_{\text{out}}} - 0.5 \qquad \text{(``align\_corners=False'')} $$
#
# and mixes the four source pixels $\lfloor x \rfloor - 1, \dots, \lfloor x \rfloor + 2$ (indices
# clamped to the border) with the cubic-convolution weights of $t = x - \lfloor x \rfloor$
# (Keys' kernel with $a = -0.75$, PyTorch's choice; `minivit.ops.interpolate.cubic_weights(t)`
# gives the four). So the resize of one axis is a matrix $R$ of shape $(n_\text{out}, n_\text{in})$,
# and the grid resize is $R_h\, G\, R_w^\top$ per channel; its backward multiplies by the
# transposes.
#
# **Exercise 1.** Build $R$.
#
# <details><summary>Hint: one row of R</summary>
#
# Row $i$ has (at most) four non-zero entries: the weights `cubic_weights(t)` at the columns
# $\lfloor x \rfloor - 1, \dots, \lfloor x \rfloor + 2$, each clamped to $0 \dots n_{in} - 1$. Near a border two
# clamped columns coincide: add (`+=`), do not overwrite.
# </details>

# %%
from minivit.ops.interpolate import cubic_weights  # noqa: F401 (for Exercise 1)


@exercise
def resize_matrix(in_size, out_size):
    # TODO: about eight lines. For each output index i: the source coordinate x, its floor,
    # t = x - floor, and the four weights added at the clamped indices floor-1 ... floor+2.
    raise NotImplementedError("Exercise 1: build the bicubic resize matrix")


# %%
check_resize_matrix(resize_matrix)

# %% [markdown]
# Is this really what transformers does? Its `interpolate_pos_encoding` calls
# `torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`. Where PyTorch is
# installed, compare on a random 8 x 8 x D grid:

# %%
rng = np.random.default_rng(0)
grid = rng.standard_normal((8, 8, 6))
ours = np.einsum("ia,jb,abd->ijd", resize_matrix(8, 12), resize_matrix(8, 12), grid)
try:
    import torch

    theirs = torch.nn.functional.interpolate(torch.tensor(grid).permute(2, 0, 1)[None], size=(12, 12),
                                             mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    check_close(ours, theirs, "R_h G R_w^T equals PyTorch's bicubic interpolate", atol=1e-12)
except ImportError:
    print("PyTorch is not installed here: tests/test_parity_hf.py makes this comparison in the test suite.")

# %% [markdown]
# What the resize does to a learned table: each tile is one position embedding's cosine
# similarity with all the others (the ViT paper's Figure 7, centre, for a single patch). The
# pretrained model has learned that neighbours are alike; the resized table keeps that, on
# the finer grid.

# %%
pretrained_model = finetune.finetune_model(pretrained_checkpoint, new_head=False)
table = backend.to_numpy(pretrained_model.embeddings.position_embeddings.data).astype(np.float64)
g = pretrained_model.config.grid_size
resized, _ = ops.interpolate_position_forward(backend.asarray(table), (g, g), (12, 12))
resized = backend.to_numpy(resized)


def similarity_to(table, row, column, side):
    patches = table[0, 1:] / np.linalg.norm(table[0, 1:], axis=1, keepdims=True)
    return (patches @ patches[row * side + column]).reshape(side, side)


fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
axes[0].imshow(similarity_to(table, g // 2, g // 3, g), vmin=-1, vmax=1)
axes[0].set_title(f"pretrained, {g}x{g}: patch ({g // 2}, {g // 3})", fontsize=9)
shown = axes[1].imshow(similarity_to(resized, 6, 4, 12), vmin=-1, vmax=1)
axes[1].set_title("resized to 12x12: patch (6, 4)", fontsize=9)
for axis in axes:
    axis.set_xlabel("grid column")
axes[0].set_ylabel("grid row")
fig.colorbar(shown, ax=axes, label="cosine similarity", shrink=0.85)
plt.show()

# %% [markdown]
# ## 4. What trains, and how fast
#
# Two finetuning knobs. **Freezing** keeps parameters fixed (`--freeze backbone` trains the head
# alone: a *linear probe*). **Layer-wise learning-rate decay** (BEiT, MAE) lets every layer move,
# but the early, general ones less: with decay $\gamma$ and $L$ layers, the embeddings (layer 0)
# learn at $\gamma^{L+1}$ times the rate, encoder layer $l$ (counting from 1) at $\gamma^{L+1-l}$,
# and the final LayerNorm and head at the full rate.
#
# **Exercise 2.** Write the scale of one parameter, by its name.
#
# <details><summary>Hint</summary>
#
# Find the parameter's layer from its name: 0 for `embeddings.*`, $i + 1$ for `encoder.layers.i.*`,
# $L + 1$ for everything after the encoder; the scale is $\gamma^{L + 1 - \text{layer}}$.
# </details>

# %%
@exercise
def layer_decay_scale(name, num_layers, decay):
    # TODO: about six lines. Names look like "embeddings.cls_token",
    # "encoder.layers.3.mlp.fc1.weight", "layernorm.weight", "classifier.bias".
    raise NotImplementedError("Exercise 2: the learning-rate scale of one parameter")


# %%
check_layer_decay_scale(layer_decay_scale)
names = [name for name, _ in model.named_parameters()]
engine = finetune.layer_decay_scales(names, model.config.num_hidden_layers, 0.75)
print({name: round(engine[name], 3) for name in names if name.endswith("fc1.weight") or "classifier" in name})

# %% [markdown]
# ## 5. Finetune on 100 images per class, against training from scratch
#
# The new task: dog, frog, horse, ship and truck, with **100 labelled training images per
# class**, at **48 px**. Two runs with the same model, images, recipe
# (`minivit.finetune.FINETUNE_RECIPE`: AdamW, peak rate 5e-4, 3 warmup epochs, batch 64) and
# epochs; one starts from the pretrained weights, one from random ones. From the command line
# the first is
#
# ```bash
# python -m minivit.finetune --init-from runs/lesson-10/pretrain/checkpoint-last.npz --data-dir DIR \
#     --classes dog,frog,horse,ship,truck --train-per-class 100 --image-size 48
# ```

# %%
common = dict(preset="cifar-tiny", data_dir=data_dir(), classes=NEW_CLASSES, progress=False,
              train_per_class=5 if FAST else 100, val_fraction=0.02 if not FAST else 0.1,
              epochs=2 if FAST else 10, batch_size=8 if FAST else 64, lr=5e-4, min_lr=1e-6, warmup_epochs=1 if FAST else 3)
finetuned = train(TrainConfig(**common, model={"image_size": 48}, init_from=str(pretrained_checkpoint),
                              out=out("finetune")))
scratch = train(TrainConfig(**common, model={**tiny, "image_size": 48}, out=out("scratch")))

curves = {}
for name in ("finetune", "scratch"):
    rows = [json.loads(line) for line in (run_root / name / "metrics.jsonl").read_text().splitlines()]
    curves[name] = [row["val_accuracy"] for row in rows]
    plt.plot(range(1, len(rows) + 1), [100 * v for v in curves[name]], marker="o",
             label="finetuned" if name == "finetune" else "from scratch")
plt.xlabel("epoch")
plt.ylabel("validation accuracy (%)")
plt.title("dog, frog, horse, ship, truck from 100 images each, at 48 px")
plt.legend()
plt.show()
print({name: round(curve[-1], 4) for name, curve in curves.items()})
check(FAST or curves["finetune"][-1] > curves["scratch"][-1],
      "the pretrained start beats random weights on 500 images",
      yours=f"finetuned {curves['finetune'][-1]:.1%}, from scratch {curves['scratch'][-1]:.1%}",
      expected="finetuned above from scratch" if not FAST else "anything, in fast mode")

# %% [markdown]
# The measured comparison, with longer pretraining (15 minutes), 30 epochs and the 5,000 test
# images, is in the README and `benchmarks/results/finetune-demo.md`
# (`python benchmarks/finetune_demo.py --data-dir DIR`).
#
# ## 6. Real pretrained ViTs, in and out
#
# The same loader reads checkpoints made elsewhere; the tests check each against transformers'
# logits (`tests/test_pretrained.py`):
#
# ```python
# from minivit import convert
# model = convert.load_hf_pretrained("google/vit-base-patch16-224")   # hub (huggingface_hub, network)
# model = convert.load_hf_pretrained("path/to/save_pretrained/folder") # a local transformers folder
# model = convert.load_pretrained("ViT-B_16.npz")                      # Google's original .npz
# model = convert.load_pretrained("vit_small.safetensors", num_attention_heads=6)  # timm
# convert.save_hf_pretrained(model, "export/")  # ViTForImageClassification.from_pretrained("export/")
# ```
#
# ViT-B/16 is 86 M parameters: it runs in minivit on a CPU (slowly), and finetunes on a GPU.
#
# ## Questions
#
# 1. Why is the new head zero-initialised and not drawn like the other weights? What would a
#    random head do to the first gradient steps of the encoder?
# 2. Finetune at 32 px instead of 48 (`--image-size 32`). Is the gain from pretraining the same?
#    What did the higher resolution cost per step, and why more than (12/8)^2 = 2.25 times?
# 3. Try `--freeze backbone` (a linear probe) and `--layer-decay 0.65`. Which is best with 100
#    images per class, and why might that change with 5,000?
# 4. The position table could instead be resized with nearest-neighbour or bilinear
#    interpolation. Write `resize_matrix` for bilinear and compare the finetuned accuracies.

# %%
show_answers(10)

# %% [markdown]
# ## What you built
#
# - A pretrained model made ready for a new task: a zero-initialised head, and its position table
#   resized bicubically with `resize_matrix`, equal to PyTorch's (and transformers') interpolation.
# - `layer_decay_scale`, the per-layer learning rates of finetuning.
# - A measured comparison of finetuning against training from scratch on 500 images.
#
# Next, lesson 11: what a ViT trained on all of CIFAR-10 has learned, against the same network at
# initialisation.
