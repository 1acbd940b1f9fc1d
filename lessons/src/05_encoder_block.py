# %% [markdown]
# # Lesson 5 — The encoder block
#
# **Goals.**
# 1. Derive LayerNorm's backward in stages, as CS231n derives batchnorm's: through the
#    normalised input, the variance, the mean, each stage checked; then simplify it to the compact
#    form the engine runs, and run a ViT on yours.
# 2. Know GELU's two forms and their derivatives.
# 3. Assemble a pre-norm block and see how residual connections carry the gradient.
# 4. Write the whole layer's backward yourself, from the ops: the MLP and GELU, the two residual
#    forks where gradients add, the packed q/k/v split and merge; checked node by node, then
#    trained, your layer in every layer of a ViT.
#
# One ViT layer (pre-norm, as in ViT and transformers):
#
# $$ h \leftarrow h + \operatorname{Attention}(\operatorname{LN}_1(h)), \qquad h \leftarrow h + \operatorname{MLP}(\operatorname{LN}_2(h)), \qquad
#    \operatorname{MLP}(u) = W_2\, \operatorname{GELU}(W_1 u + b_1) + b_2. $$
#
# ## LayerNorm, forward
#
# Per token (a row $x \in \mathbb{R}^D$):
#
# $$ \mu = \frac1D\sum_i x_i, \qquad \sigma^2 = \frac1D \sum_i (x_i-\mu)^2, \qquad
#    \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad y_i = \gamma_i \hat x_i + \beta_i. $$
#
# As a graph: $x \to \mu$, $(x, \mu) \to \sigma^2$, $(x, \mu, \sigma^2) \to \hat x \to y$. The backward walks it
# from the end, one node at a time; $\mu$ and $\sigma^2$ are single numbers per row that every $x_i$
# feeds, which is where the care goes.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit import ops
from minivit.gradcheck import check_model
from support import FAST, CallCounter, check, exercise, load_images, show_answers, use_mine, use_my_layer
from support.lesson05 import (check_encoder_layer_backward, check_layernorm_backward, check_layernorm_stages,
                              encoder_layer_forward)

rng = np.random.default_rng(0)

# %% [markdown]
# **Exercise 1, in stages.** Fill in `layernorm_backward_by_graph(dout, x, gamma, eps)` one stage at
# a time, top to bottom, and run the check after each: it checks the stages in order, says PASS
# for each one that is right, and stops at the first that is not (or is still `None`). The
# expected values of $\partial L/\partial\sigma^2$ and $\partial L/\partial\mu$ come from finite differences
# on the graph with $\mu$ and $\sigma^2$ as nodes of their own. Keep every per-row quantity as a
# column, shape `(..., 1)` (`keepdims=True`).
#
# <details><summary>Stage 1: dgamma, dbeta, dxhat</summary>
#
# $y = \gamma \hat x + \beta$ with $\gamma, \beta$ shared by every token: $\partial L/\partial \gamma = \sum_{\text{tokens}} g \odot \hat x$,
# $\partial L/\partial\beta = \sum_{\text{tokens}} g$ (sum over every axis but the last), and
# $\partial L/\partial\hat x = g \odot \gamma$.
# </details>
#
# <details><summary>Stage 2: dvar</summary>
#
# $\sigma^2$ reaches $L$ only through $\hat x_i = (x_i - \mu)(\sigma^2 + \epsilon)^{-1/2}$, every $i$ of the row:
# $\dfrac{\partial L}{\partial \sigma^2} = \sum_i \dfrac{\partial L}{\partial \hat x_i}\, (x_i - \mu) \cdot \left(-\tfrac12\right)(\sigma^2 + \epsilon)^{-3/2}$.
# </details>
#
# <details><summary>Stage 3: dmean</summary>
#
# $\mu$ reaches $L$ through every $\hat x_i$ (a factor $-(\sigma^2+\epsilon)^{-1/2}$ each) and through $\sigma^2$
# ($\partial\sigma^2/\partial\mu = \frac1D \sum_i -2(x_i - \mu)$, which is zero, but write it: it is zero only
# because $\mu$ is the mean). So $\dfrac{\partial L}{\partial \mu} = \sum_i -\dfrac{\partial L}{\partial \hat x_i} (\sigma^2+\epsilon)^{-1/2} + \dfrac{\partial L}{\partial\sigma^2} \cdot \frac1D \sum_i -2 (x_i - \mu)$.
# </details>
#
# <details><summary>Stage 4: dx</summary>
#
# $x_i$ reaches $L$ three ways: directly through $\hat x_i$, through $\sigma^2$ ($\partial \sigma^2/\partial x_i = \frac2D (x_i - \mu)$)
# and through $\mu$ ($\partial \mu / \partial x_i = \frac1D$). Add the three paths:
# $\dfrac{\partial L}{\partial x_i} = \dfrac{\partial L}{\partial \hat x_i} (\sigma^2+\epsilon)^{-1/2} + \dfrac{\partial L}{\partial\sigma^2} \dfrac{2 (x_i - \mu)}{D} + \dfrac{\partial L}{\partial \mu} \dfrac1D$.
# </details>

# %%
@exercise
def layernorm_backward_by_graph(dout, x, gamma, eps):
    """Every stage of LayerNorm's backward over the last axis of x; a dict of arrays."""
    D = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)  # (..., 1)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)  # (..., 1)
    rstd = 1.0 / np.sqrt(var + eps)  # (..., 1)
    xhat = (x - mu) * rstd
    dgamma = None  # TODO stage 1
    dbeta = None  # TODO stage 1
    dxhat = None  # TODO stage 1
    dvar = None  # TODO stage 2, (..., 1)
    dmean = None  # TODO stage 3, (..., 1)
    dx = None  # TODO stage 4
    return {"dgamma": dgamma, "dbeta": dbeta, "dxhat": dxhat, "dvar": dvar, "dmean": dmean, "dx": dx}


# %%
check_layernorm_stages(layernorm_backward_by_graph)

# %% [markdown]
# **Exercise 2.** The engine's `layernorm_backward(dout, cache)` gets only `cache = (xhat, rstd, gamma)`
# from the forward (`rstd` $= (\sigma^2+\epsilon)^{-1/2}$, shape `(..., 1)`): not $x$, not $\mu$. Rewrite stage 4
# in those terms. The result is shorter than the graph, and it is what runs in a ViT.
#
# <details><summary>Hint 1: substitute</summary>
#
# Use $x_i - \mu = \hat x_i / r$ with $r$ = `rstd`, and $(\sigma^2 + \epsilon)^{-3/2} = r^3$. Write $\hat g = g \odot \gamma$.
# Stage 2 becomes $\partial L/\partial\sigma^2 = -\tfrac12 r^2 \sum_i \hat g_i \hat x_i$, and stage 3, $\partial L/\partial\mu = -r \sum_i \hat g_i$.
# </details>
#
# <details><summary>Hint 2: collect the terms</summary>
#
# Put the three paths over $r$: $\partial L/\partial x_i = r \big( \hat g_i - \tfrac1D \sum_j \hat g_j - \hat x_i\, \tfrac1D \sum_j \hat g_j \hat x_j \big)$,
# two means over the row. The first subtracted term is $\mu$'s share of the gradient, the second $\sigma^2$'s.
# </details>

# %%
@exercise
def layernorm_backward(dout, cache):
    """dout (..., D) -> (dx (..., D), dgamma (D,), dbeta (D,)); cache = (xhat, rstd, gamma)."""
    xhat, rstd, gamma = cache
    # TODO: about five lines
    raise NotImplementedError("Exercise 2: write layernorm_backward")


# %%
check_layernorm_backward(layernorm_backward)

# %% [markdown]
# The two subtracted terms remove the components of $\hat g$ along the directions LayerNorm
# cannot change: a shift of all features (the mean), and a rescaling of $\hat x$ (the variance).
#
# Your backward inside the engine: every LayerNorm of a small ViT (two per layer, and the final one)
# runs on it in a whole-model gradient check.

# %%
config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=12, num_labels=3, initializer_range=0.5)
counter = CallCounter({"layernorm_backward": layernorm_backward})
with use_mine(**counter.functions):
    report = check_model(minivit.ViTForImageClassification(config, dtype="float64").eval(),
                         rng.standard_normal((2, 3, 8, 8)))
check(report.max_rel_error < 1e-6 and counter.calls["layernorm_backward"] > 0,
      f"a 2-layer ViT's gradients through your layernorm_backward ({counter})",
      yours=f"{report.max_rel_error:.1e}", expected="below 1e-6")

# %% [markdown]
# ## GELU
#
# $\operatorname{GELU}(x) = x\,\Phi(x)$ with $\Phi$ the standard normal CDF: the input, weighted by how likely a
# standard normal is to be below it. Its derivative is $\Phi(x) + x\,\phi(x)$. transformers' `"gelu"` is this
# exact form (via erf); `"gelu_new"` approximates $\Phi$ with a tanh. The engine has both.

# %%
x = np.linspace(-4, 4, 401)
exact, exact_cache = ops.gelu_forward(x, "none")
approx, approx_cache = ops.gelu_forward(x, "tanh")
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
left.plot(x, exact, label="gelu (erf)")
left.plot(x, np.maximum(x, 0), "--", label="relu", alpha=0.6)
left.set_xlabel("x")
left.set_ylabel("activation")
left.legend()
left.set_title("GELU")
right.plot(x, ops.gelu_backward(np.ones_like(x), exact_cache), label="d gelu / dx")
right.plot(x, 1e3 * (approx - exact), label="1000 x (tanh form - exact)")
right.set_xlabel("x")
right.set_ylabel("value")
right.legend()
right.set_title("derivative, and the tanh form's error")
plt.show()
print(f"largest difference between the two forms: {np.abs(approx - exact).max():.2e}")

# %% [markdown]
# ## Residuals carry the gradient
#
# $h_{\text{out}} = h + f(h)$ has $\partial h_{\text{out}} / \partial h = I + \partial f/\partial h$: the identity term passes the gradient
# through unchanged, however small $\partial f/\partial h$ is. Below, the gradient that reaches the input of each
# layer of a 12-layer encoder, with the residuals, and with a plain stack $h \leftarrow f(h)$ made of the
# same layers.

# %%
config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=32, num_hidden_layers=4 if FAST else 12,
                           num_attention_heads=4, intermediate_size=64, num_labels=10)
model = minivit.ViTForImageClassification(config, dtype="float64").eval()
layers = model.encoder.layers
h0 = rng.standard_normal((4, 5, 32))

def gradient_norms(with_residuals):
    inputs, h = [], h0
    for layer in layers:
        inputs.append(h)
        if with_residuals:
            h = layer.forward(h)
        else:  # the same branches, without the skip paths
            h = layer.attention.forward(layer.layernorm_before.forward(h))
            h = layer.mlp.forward(layer.layernorm_after.forward(h))
    grad, norms = np.ones_like(h), []
    for layer in reversed(layers):
        if with_residuals:
            grad = layer.backward(grad)
        else:
            grad = layer.layernorm_after.backward(layer.mlp.backward(grad))
            grad = layer.layernorm_before.backward(layer.attention.backward(grad))
        norms.append(np.linalg.norm(grad))
    return norms[::-1]

plt.semilogy(gradient_norms(True), "o-", label="pre-norm with residuals")
plt.semilogy(gradient_norms(False), "s-", label="no residuals")
plt.xlabel("layer")
plt.ylabel("|dL/d input of layer| (log scale)")
plt.title("the gradient reaching each layer's input")
plt.legend()
plt.show()

# %% [markdown]
# With the skip paths, the gradient that reaches each layer's input is the same size at every
# depth: the identity term hands it down unchanged, and the branches only add to it. Without
# them, the gradient at layer $\ell$ is the product of all the Jacobians above it, so its size is
# whatever that product happens to be: in this run it wanders from layer to layer and falls by
# more than an order of magnitude at the first layer. In a deeper or less carefully normalised
# stack such products vanish or explode.
#
# ## The whole layer, by hand
#
# Every piece of the layer has a backward now: yours (lessons 2 to 5) or the engine's. The layer's
# backward is their composition, walked from the output to the input, and three places take care:
#
# - **The forks.** $h = x + A(\operatorname{LN}_1(x))$ uses $x$ twice: on the skip path and through the
#   branch. A variable used twice gets the **sum** of the gradients from both uses (the chain rule
#   over every path), so $\partial L/\partial x = \partial L/\partial h + (\text{the branch's gradient})$,
#   and the same at $\text{out} = h + \operatorname{MLP}(\operatorname{LN}_2(h))$.
# - **The packed projection.** q, k and v come from one matrix product, $x W_{qkv} + b_{qkv}$ with
#   $W_{qkv}$ of shape $(D, 3D)$, then three slices of $D$ columns, each split into heads. Going back:
#   merge each head gradient to $(B, T, D)$ and put the three side by side in the same order, q, k, v,
#   into one $(B, T, 3D)$ gradient for the one `linear_backward`.
# - **The heads.** `merge_heads` (the forward, before the output projection) is undone by
#   `split_heads` on the way back, and each `split_heads` by a `merge_heads`.
#
# The forward below is the engine's layer (without dropout), written with the ops; its cache holds
# each op's cache by node name. Read it, then walk it backwards.

# %%
import inspect

print(inspect.getsource(encoder_layer_forward))

# %% [markdown]
# **Exercise 3.** Write `encoder_layer_backward(dout, cache)`: return a dict with the gradient at
# every node, in the order the gradient reaches them: `dfc2_weight`, `dfc2_bias`, `dgelu_out`,
# `dfc1_out`, `dfc1_weight`, `dfc1_bias`, `dln2_out`, `dln2_gamma`, `dln2_beta`, `dh`, `do_weight`,
# `do_bias`, `dcontext` (the heads' output, $(B, H, T, d)$), `dq`, `dk`, `dv`, `dqkv` $(B, T, 3D)$,
# `dqkv_weight`, `dqkv_bias`, `dln1_out`, `dln1_gamma`, `dln1_beta`, `dx`. Use the ops' backwards
# (`ops.linear_backward`, `ops.gelu_backward`, `ops.layernorm_backward`, `ops.attention_backward`,
# or your own). The check walks the nodes in that order and stops at the first that is off, naming
# what it looks like; a node left as `None` is "not written yet", so you can write it a few nodes at
# a time.
#
# <details><summary>Hint 1: the MLP branch</summary>
#
# `g["dgelu_out"], g["dfc2_weight"], g["dfc2_bias"] = ops.linear_backward(dout, cache["fc2"])`, then
# `ops.gelu_backward` with `cache["gelu"]`, then `ops.linear_backward` with `cache["fc1"]`, then
# `ops.layernorm_backward` with `cache["ln2"]`.
# </details>
# <details><summary>Hint 2: the forks</summary>
#
# `g["dh"] = dout + (LN2's dx)`; `g["dx"] = g["dh"] + (LN1's dx)`.
# </details>
# <details><summary>Hint 3: q, k, v</summary>
#
# `g["dcontext"] = ops.split_heads(dmerged, cache["num_heads"])`; after `ops.attention_backward`,
# `g["dqkv"] = np.concatenate([ops.merge_heads(g[n]) for n in ("dq", "dk", "dv")], axis=-1)`.
# </details>

# %%
@exercise
def encoder_layer_backward(dout, cache):
    g = {}
    # TODO: the MLP branch, the second fork, the attention branch (q, k, v), the first fork
    raise NotImplementedError("Exercise 3: write the encoder layer's backward")


# %%
check_encoder_layer_backward(encoder_layer_backward)

# %% [markdown]
# **Your layer, trained.** Below, two copies of the same small ViT (float64, no dropout, the same
# initial weights) train on the same CIFAR-10 batches: one on the engine's layers, one with every
# encoder layer running the forward above and **your** backward (`use_my_layer` puts them in, and
# adds your parameter gradients to the model's, so AdamW trains on them). If your backward is
# right, the two loss curves are the same curve, to rounding.

# %%
train_images = load_images("train", count=256 if FAST else 2048, seed=5)
mean, std = train_images.channel_stats()
train_pixels = (train_images.images / 255.0 - mean[:, None, None]) / std[:, None, None]  # float64
layer_config = minivit.ViTConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=64, num_labels=10,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
steps, batch = (5, 32) if FAST else (60, 32)


def train_curve(with_my_layer):
    import contextlib

    from minivit import dispatch, optim

    model = minivit.ViTForImageClassification(layer_config, seed=3, dtype="float64").train()
    optimizer = optim.AdamW(model.named_parameters(), lr=1e-3)
    order = np.random.default_rng(6).permutation(len(train_pixels))
    plugged = (use_my_layer(model, encoder_layer_forward, encoder_layer_backward) if with_my_layer
               else contextlib.nullcontext())
    losses = []
    with plugged:
        for step in range(steps):
            chosen = order[(step * batch) % len(order):][:batch]
            optimizer.zero_grad()
            loss, cache = dispatch.cross_entropy_forward(model.forward(train_pixels[chosen]), train_images.labels[chosen])
            model.backward(dispatch.cross_entropy_backward(1.0, cache))
            optimizer.step()
            losses.append(float(loss))
    return np.array(losses)


engine_losses = train_curve(False)
try:
    your_losses = train_curve(True)
except NotImplementedError:
    your_losses = None
    print("This cell waits for Exercise 3 (encoder_layer_backward): the engine's curve is drawn alone.")
plt.plot(engine_losses, linewidth=4, alpha=0.35, label="the engine's layers")
if your_losses is not None:
    plt.plot(your_losses, "--", label="your layer's backward")
plt.xlabel("step")
plt.ylabel("training loss")
plt.title(f"a 2-layer ViT, {steps} steps of {batch} CIFAR-10 images")
plt.legend()
plt.show()
if your_losses is not None:
    difference = float(np.max(np.abs(your_losses - engine_losses)))
    print(f"loss after {steps} steps: engine {engine_losses[-1]:.6f}, yours {your_losses[-1]:.6f}")
    check(difference < 1e-8, "your layer trains exactly as the engine's (float64)",
          yours=f"largest difference {difference:.1e}", expected="below 1e-8")

# %% [markdown]
# ## Questions
#
# 1. Why is $\partial L/\partial x$ of LayerNorm orthogonal to the all-ones vector? Check it numerically.
# 2. In a *post*-norm block, $h \leftarrow \operatorname{LN}(h + f(h))$, the gradient to $h$ passes through a LayerNorm at every
#    layer. How does that change the argument about residuals?
# 3. With `initializer_range` = 0.02, what do the attention and MLP branches output at initialisation,
#    roughly, compared with $h$? What does that mean for the first steps of training?

# %%
show_answers(5)

# %% [markdown]
# ## What you built
#
# - LayerNorm's backward twice: stage by stage through the graph (each stage checked, as CS231n
#   checks batchnorm), then the compact form the engine runs. Yours ran a ViT's gradient check.
# - GELU's exact and tanh forms and their derivative.
# - The evidence that residual connections hand the gradient down unchanged, where a plain stack
#   multiplies Jacobians.
# - A whole encoder layer's backward, composed by you from the ops (two forks that add gradients,
#   the packed q/k/v split and merged back), checked node by node, and trained in a ViT.
#
# Next, lesson 6: the whole model, its sanity checks, and all your functions in it at once.
