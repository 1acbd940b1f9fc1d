# %% [markdown]
# # Lesson 6 — The whole model
#
# **Goals.**
# 1. Count the parameters of a ViT, part by part, by formula and by the model.
# 2. Write the loss: softmax cross-entropy by log-sum-exp, with label smoothing, and its gradient.
# 3. Run the sanity checks that come before any training: initial loss near $\ln 10$, a
#    whole-model gradient check, and overfitting one batch, all of them on **your** functions from
#    lessons 2 to 5, inside the engine.
# 4. Show that minivit computes what transformers' ViT computes: the same logits and the same
#    gradient for every parameter, by name.
#
# The whole forward pass:
#
# $$ \text{pixels} \xrightarrow{\text{im2col},\,W_E} Z \xrightarrow{[c;\,\cdot] + E_{\text{pos}}} H^{(0)} \xrightarrow{L \text{ layers}} H^{(L)} \xrightarrow{\text{LN}} \xrightarrow{\text{CLS}} h_0 \xrightarrow{W_{\text{head}}} \text{logits} $$

# %%
import math

import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit import convert, dispatch, optim
from minivit.gradcheck import check_model, directional_check
from support import FAST, REPO, CallCounter, check, exercise, load_images, my_functions, no_grad, show_answers, use_mine
from support.lesson06 import check_cross_entropy_backward, check_cross_entropy_forward, check_parameters_per_layer

# %% [markdown]
# ## Parameters, part by part

# %%
model = minivit.ViTForImageClassification("cifar-tiny", seed=0)
parts = {}
for name, parameter in model.named_parameters():
    part = "encoder layer" if name.startswith("encoder") else name.split(".")[0] + (
        "." + name.split(".")[1] if name.startswith("embeddings") else "")
    parts[part] = parts.get(part, 0) + parameter.data.size
for part, count in parts.items():
    print(f"{part:32s} {count:>10,d}")
print(f"{'total':32s} {model.num_parameters():>10,d}")

# %% [markdown]
# **Exercise 1.** Write the number of parameters in *one* encoder layer as a formula of the hidden
# size $D$, the MLP size $M$ and whether q/k/v have biases. Count from the block's parts in lesson 5;
# the check compares with a real layer, and if you are off, says by which part.
#
# <details><summary>Hint: the parts</summary>
#
# Two LayerNorms (a gain and a bias of $D$ each); four $D \times D$ projections (query, key, value,
# output), with a bias of $D$ on the output projection and on q/k/v only when `qkv_bias`; the MLP's
# $D \times M$ and $M \times D$ matrices, and their biases of $M$ and $D$.
# </details>

# %%
@exercise
def parameters_per_layer(D, M, qkv_bias=True):
    # TODO: one expression
    raise NotImplementedError("Exercise 1: count the parameters of one layer")


# %%
check_parameters_per_layer(parameters_per_layer)
check(parameters_per_layer(192, 768) * model.config.num_hidden_layers == parts["encoder layer"],
      "the 6 layers of cifar-tiny", yours=f"{parameters_per_layer(192, 768) * 6:,d}",
      expected=f"{parts['encoder layer']:,d}")

# %% [markdown]
# ## Initial loss
#
# With small random weights the logits are near zero, the softmax is near uniform, and the loss
# should be near $-\ln(1/10) = \ln 10 \approx 2.303$. A very different number means a bug (or a
# bad initialisation) before any training. How near depends a little on the images (a handful of
# very similar images can all lean the same way), so the check asks what the number stands for:
# that each image's ten logits are close to each other, i.e. the prediction is close to uniform.

# %%
images = load_images("train", count=64 if FAST else 512)
mean, std = images.channel_stats()
pixels = ((images.images / 255.0 - mean[:, None, None]) / std[:, None, None]).astype("float32")
with no_grad():
    logits = model.eval().forward(pixels)
loss, _ = dispatch.cross_entropy_forward(logits, images.labels)  # the engine's: yours comes next
spread = float(logits.std(axis=1).mean())  # how much an image's ten logits differ, on average
print(f"initial loss {float(loss):.4f}, ln 10 = {math.log(10):.4f}; the logits' spread per image {spread:.3f}")
check(spread < 0.5, "the initial prediction is near uniform (each image's logits within about 0.5 of each "
      "other), so the loss is near ln 10", yours=f"spread {spread:.3f}, loss {float(loss):.4f}",
      expected=f"spread below 0.5 (uniform: 0), loss near {math.log(10):.4f}",
      hint="Far from uniform at initialisation: logits too large (lesson 7 shows what the init scale does).")

# %% [markdown]
# ## The loss, written by you
#
# Everything above the logits is yours already; the loss is the last piece. With $K$ classes, a
# label $y$ and label smoothing $\varepsilon$, the target distribution is
# $q = (1 - \varepsilon)\,\text{onehot}(y) + \varepsilon / K$ (every class gets $\varepsilon/K$, the
# true one included: PyTorch's `label_smoothing`), and the loss of a batch is the mean over its $B$
# images of the cross-entropy between $q$ and the softmax of the logits $z$:
#
# $$ L = -\frac{1}{B} \sum_b \sum_k q_{bk} \log p_{bk}, \qquad \log p_{bk} = z_{bk} - \log \sum_j e^{z_{bj}}. $$
#
# **Log-sum-exp.** A confident model's logits reach the hundreds, and $e^{710}$ overflows float64.
# $\log \sum_j e^{z_j} = m + \log \sum_j e^{z_j - m}$ for any $m$; with $m = \max_j z_j$ the largest
# exponent is $e^0 = 1$ and nothing overflows.
#
# **The gradient.** $\partial L / \partial z_{bk} = (p_{bk} - q_{bk}) / B$: with $\sum_k q_{bk} = 1$,
# the derivative of $-\sum_k q_k (z_k - \log \sum_j e^{z_j})$ is $-q_k + p_k$; the $1/B$ is the mean's.
# The softmax's Jacobian of lesson 4 and the log cancel into this one subtraction.
#
# **Exercise 2.** Write `cross_entropy_forward(logits, targets, label_smoothing=0.0)`: `logits`
# $(B, K)$, `targets` the labels $(B,)$; return `(loss, cache)` with the engine's cache
# `(log_probs, q)`, both $(B, K)$. **Exercise 3.** Write `cross_entropy_backward(dloss, cache)`:
# the gradient of `dloss * L` with respect to the logits. Both go into the engine with your other
# functions below: the overfitting and lesson 8's training run on them.
#
# <details><summary>Hint 1: the target distribution</summary>
#
# `np.eye(K)[targets]` is the one-hot matrix $(B, K)$; then `(1 - eps) * onehot + eps / K`.
# </details>
# <details><summary>Hint 2: log-sum-exp in NumPy</summary>
#
# `shifted = logits - logits.max(axis=1, keepdims=True)`, then
# `log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))`.
# </details>
# <details><summary>Hint 3: the backward</summary>
#
# `np.exp(log_probs)` is $p$; return `(p - q) * dloss / B`.
# </details>

# %%
@exercise
def cross_entropy_forward(logits, targets, label_smoothing=0.0):
    # TODO: log-sum-exp, the smoothed targets q, the mean loss; return (loss, (log_probs, q))
    raise NotImplementedError("Exercise 2: write the cross-entropy loss")


@exercise
def cross_entropy_backward(dloss, cache):
    # TODO: (p - q) * dloss / B
    raise NotImplementedError("Exercise 3: write the loss's backward")


# %%
check_cross_entropy_forward(cross_entropy_forward)
check_cross_entropy_backward(cross_entropy_backward)

# %% [markdown]
# ## Your functions, inside the engine
#
# Each engine operation you wrote in lessons 2 to 5 was kept in `lessons/mine/` when its check
# passed. `my_functions()` reads them back, and `use_mine(...)` puts them all into the engine at
# once: the linear layers' backward, the CLS token's, the softmax's, attention forward and backward,
# LayerNorm's backward and the loss. The rest of this lesson's checks run on them (the loss in the
# overfitting, which calls `minivit.dispatch`'s `cross_entropy_forward`: yours while `use_mine` is on). (With
# `MINIVIT_SOLUTIONS=1` these are the solutions; an exercise that has not passed yet runs the
# engine's reference, and the line below says which. Your `attention_backward` calls your
# `softmax_backward` itself, so the engine's count of the latter stays 0 while your attention runs.
# A kept function is read back with `np`, `math`, `backend`, `ops` and the engine's operations at
# hand; a helper function of your own from another cell is not kept, so keep each exercise
# self-contained.)

# %%
mine = CallCounter(my_functions())

# %% [markdown]
# ## A whole-model gradient check
#
# In float64, every parameter of a small model against finite differences (`minivit.gradcheck`),
# and then the cheap version for a larger one: derivatives along random directions.

# %%
tiny = minivit.ViTForImageClassification(
    minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=12, num_labels=3, initializer_range=0.5), dtype="float64").eval()
larger = minivit.ViTForImageClassification(
    minivit.ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2 if FAST else 4,
                      num_attention_heads=4, intermediate_size=64, num_labels=10), dtype="float64").eval()
with use_mine(**mine.functions):
    report = check_model(tiny, np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    error = directional_check(larger, np.random.default_rng(1).standard_normal((2, 3, 16, 16)), num_directions=3)
print(f"worst tensor: {report.worst}")
print(f"the engine called: {mine}")
check(report.max_rel_error < 1e-5, "whole model, every parameter, on your functions (expect about 1e-9)",
      yours=f"{report.max_rel_error:.1e}", expected="below 1e-5")
check(error < 1e-6, f"directional derivatives of a {larger.num_parameters():,d}-parameter model",
      yours=f"{error:.1e}", expected="below 1e-6")

# %% [markdown]
# ## Overfitting one batch
#
# A model that cannot drive the loss to zero on 16 images, with labels it can memorise, has a bug
# in its backward pass or in the optimizer step. The loop below trains on one batch **until it
# classifies all 16 correctly**, or until a cap of steps, and the check asks for 100%: how many
# steps that takes depends on the images (real photographs take longer than generated noise), a
# pass does not. It runs on your functions too. (Fast mode trains a smaller model than `cifar-tiny`.)

# %%
batch_x, batch_y = pixels[:16], images.labels[:16]
overfit_config = (minivit.ViTConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=128, num_labels=10)
                  if FAST else "cifar-tiny")
overfit = minivit.ViTForImageClassification(overfit_config, seed=1)
optimizer = optim.AdamW(overfit.named_parameters(), lr=1e-3, weight_decay=0.0)
max_steps, losses, accuracy = 300, [], 0.0
with use_mine(**mine.functions):
    for step in range(1, max_steps + 1):
        overfit.train()
        optimizer.zero_grad()
        loss, cache = dispatch.cross_entropy_forward(overfit.forward(batch_x), batch_y)  # yours, inside use_mine
        overfit.backward(dispatch.cross_entropy_backward(1.0, cache))
        optimizer.step()
        losses.append(float(loss))
        if step % 5 == 0:
            with no_grad():
                accuracy = float((overfit.eval().forward(batch_x).argmax(axis=1) == batch_y).mean())
            if accuracy == 1.0:
                break
plt.semilogy(range(1, len(losses) + 1), losses)
plt.xlabel("step")
plt.ylabel("training loss on one batch (log scale)")
plt.title(f"overfitting 16 images: {accuracy:.0%} after {len(losses)} steps")
plt.show()
check(accuracy == 1.0, f"100% on the memorised batch (final loss {losses[-1]:.4f}, {len(losses)} steps)",
      yours=f"{accuracy:.1%}", expected="100.0%",
      hint=f"Not memorised in {max_steps} steps: a backward or optimizer bug, or a learning rate far off.")

# %% [markdown]
# ## Parity with transformers' ViT
#
# `minivit.convert.to_hf` gives a state dict that transformers' `ViTForImageClassification` loads
# (linear weights transposed, names mapped). The same input then gives the same logits, and the
# same upstream gradient gives the same gradient for every parameter. Where torch is not installed
# this uses the golden file that `tests/golden/make_golden.py` saved from PyTorch.

# %%
import sys
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm inside transformers, without ipywidgets
sys.path.insert(0, str(REPO / "tests"))
from hf_reference import PARITY_CONFIGS, reference_run, unflatten  # noqa: E402

name = "four-heads"
try:
    reference = reference_run(PARITY_CONFIGS[name])
    source = "live PyTorch"
except ImportError:
    reference = unflatten(np.load(REPO / "tests" / "golden" / f"parity-{name}.npz"))
    source = "golden file"
ours = minivit.ViTForImageClassification(minivit.ViTConfig(**PARITY_CONFIGS[name]), dtype="float64").eval()
ours.load_state_dict(convert.from_hf(reference["weights"]))
logits = ours.forward(reference["pixel_values"])
ours.backward(reference["dlogits"])
our_grads = convert.to_hf({n: p.grad for n, p in ours.named_parameters()})
differences = {n: float(np.abs(our_grads[n] - reference["grads"][n]).max()) for n in reference["grads"]}
print(f"against {source}: logits differ by at most {np.abs(logits - reference['logits']).max():.1e}")
for n in list(differences)[:5]:
    print(f"  {n:55s} {differences[n]:.1e}")
print(f"  ... {len(differences)} tensors, the largest difference {max(differences.values()):.1e}")
check(max(differences.values()) < 1e-9 and sorted(our_grads) == sorted(reference["grads"]),
      "every gradient matches transformers' by name (float64)")

# %% [markdown]
# ## Questions
#
# 1. Which part of `cifar-tiny` holds most of its parameters? Which holds most of its compute?
# 2. If the initial loss were 4.6, what would you suspect first?
# 3. The parity check compares gradients for a fixed upstream gradient `dlogits`, not for a loss.
#    Why is that enough to check the backward of the whole network?

# %%
show_answers(6)

# %% [markdown]
# ## What you built
#
# - The parameter count of a layer, by formula, checked against the model part by part.
# - The loss: softmax cross-entropy by log-sum-exp, label smoothing, and its gradient $(p - q)/B$.
# - The sanity checks that come before training, each passed on **your** functions inside the
#   engine: the initial loss, a whole-model gradient check, memorising a batch.
# - The proof that minivit computes what transformers' ViT computes, gradient by gradient.
#
# Next, lesson 7: how the initialisation sets the initial loss and the activations, and the
# optimizer, AdamW, derived and written by you.
