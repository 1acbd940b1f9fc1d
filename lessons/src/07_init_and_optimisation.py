# %% [markdown]
# # Lesson 7 — Initialisation and optimisation
#
# **Goals.**
# 1. See what the initialisation scale does before any training: to the initial loss, to the size
#    of the activations layer after layer, and to attention; derive the scale that keeps a linear
#    layer's output as large as its input.
# 2. Derive Adam's bias correction, write AdamW's update yourself, and train a ViT with it.
# 3. Find a learning rate with a sweep, and read its plot.
# 4. Write your own gradient checker and training step, and watch a run from inside: activation
#    scales, gradient norms and update-to-weight ratios, layer by layer.
#
# A training run is decided twice before its first step: by where the weights start, and by how
# each step will move them. This lesson looks at both, on CIFAR-10 images.

# %%
import math

import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit import optim
from minivit.ops import cross_entropy_backward, cross_entropy_forward, pool_forward
from support import FAST, check, exercise, load_images, no_grad, show_answers
from support.lesson07 import (check_adamw_step, check_bias_correction, check_init_std, check_numerical_gradient,
                              check_train_step)

images = load_images("train", count=64 if FAST else 256)
mean, std = images.channel_stats()
pixels = ((images.images / 255.0 - mean[:, None, None]) / std[:, None, None]).astype("float32")
labels = images.labels
# fast mode (the tests) uses a narrow model; the full lesson, cifar-tiny
base = (minivit.ViTConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                          intermediate_size=128, num_labels=10) if FAST else minivit.preset("cifar-tiny"))
print(f"{len(images)} training images; the model: hidden size {base.hidden_size}, {base.num_hidden_layers} layers")

# %% [markdown]
# ## 1. The initial loss and the activations, against the initialisation scale
#
# Every weight matrix of minivit (and of transformers' ViT) starts as draws from a normal
# distribution with standard deviation `initializer_range`, 0.02 by default; biases start at 0 and
# LayerNorm gains at 1. Below, the same model with four scales, on the same images, before any
# training. For each layer: the standard deviation of the residual stream $h$, and the entropy of
# the attention rows relative to uniform attention (1: every token attended equally; 0: one
# token only).

# %%
scales = [0.002, 0.02, 0.2, 1.0]
initial_loss, stream_std, attention_entropy, logit_spread = {}, {}, {}, {}
for scale in scales:
    model = minivit.ViTForImageClassification(base.replace(initializer_range=scale), seed=0).eval()
    with no_grad():  # the model's forward, written out to look at every layer
        h = model.embeddings.forward(pixels)  # (B, T, D)
        stds, entropies = [float(h.std())], []
        for layer in model.encoder.layers:
            h = layer.forward(h)
            stds.append(float(h.std()))
            probs = layer.attention.attention_probs.astype(np.float64)  # (B, H, T, T)
            entropy = -(probs * np.log(probs + 1e-30)).sum(axis=-1).mean()
            entropies.append(float(entropy / math.log(probs.shape[-1])))
        pooled, _ = pool_forward(model.layernorm.forward(h), model.config.pooling)
        logits = model.classifier.forward(pooled)
    loss, _ = cross_entropy_forward(logits, labels)
    initial_loss[scale], stream_std[scale], attention_entropy[scale] = float(loss), stds, entropies
    logit_spread[scale] = float(logits.std(axis=1).mean())  # how much an image's ten logits differ
    print(f"initializer_range {scale:<6}: initial loss {float(loss):7.3f}, logits' spread {logit_spread[scale]:8.3f}, "
          f"residual stream std {stds[0]:.3f} -> {stds[-1]:.3f}")

fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.4))
left.plot(scales, [initial_loss[s] for s in scales], "o-")
left.axhline(math.log(10), color="gray", linestyle="--", label="ln 10 (uniform prediction)")
left.set_xscale("log")
left.set_xlabel("initializer_range (log scale)")
left.set_ylabel("initial loss")
left.legend(fontsize=8)
for scale in scales:
    middle.semilogy(range(len(stream_std[scale])), stream_std[scale], "o-", label=f"{scale}")
    right.plot(range(1, len(attention_entropy[scale]) + 1), attention_entropy[scale], "o-", label=f"{scale}")
middle.set_xlabel("layer (0: the embeddings)")
middle.set_ylabel("std of h (log scale)")
middle.legend(title="initializer_range", fontsize=8)
right.set_xlabel("layer")
right.set_ylabel("attention entropy / ln T")
right.set_ylim(0, 1.05)
right.legend(title="initializer_range", fontsize=8)
plt.tight_layout()
plt.show()
check(logit_spread[0.02] < 0.5, "at the default scale 0.02 the prediction is near uniform: loss near ln 10",
      yours=f"logits' spread per image {logit_spread[0.02]:.3f}, loss {initial_loss[0.02]:.4f}",
      expected=f"spread below 0.5 (uniform: 0), loss near {math.log(10):.4f}")
check(initial_loss[1.0] > math.log(10) + 1, "at scale 1 the model starts confidently wrong: loss far above ln 10",
      yours=round(initial_loss[1.0], 3), expected=f"> {math.log(10) + 1:.3f}")

# %% [markdown]
# What the plots say: at small scales every logit is near zero, the prediction is uniform and the
# loss is $\ln 10$; attention is uniform too (entropy near 1), because the queries and keys are
# near zero. At scale 1 the logits are large, the model is confidently wrong about most images,
# the loss is far above $\ln 10$, and the attention rows collapse onto a few tokens: the softmax is
# saturated, and a saturated softmax passes almost no gradient. The residual stream stays near the
# embeddings' size at small scales (the branches add little), and grows layer after layer at large
# ones.
#
# ## How large should a weight be?
#
# Take one linear layer $y = x W$ with $n$ inputs (its *fan-in*), inputs $x_i$ of variance
# $\sigma_x^2$ and weights $w_{ij}$ of standard deviation $\sigma_w$, all independent with mean 0.
#
# **Exercise 1.** Derive the $\sigma_w$ for which $\operatorname{Var}(y_j) = \operatorname{Var}(x_i)$, and write
# `init_std(fan_in)`.
#
# <details><summary>Hint 1: the variance of a sum</summary>
#
# $y_j = \sum_{i=1}^n x_i w_{ij}$ is a sum of $n$ independent terms, so its variance is the sum of their
# variances.
# </details>
#
# <details><summary>Hint 2: the variance of a product</summary>
#
# For independent, zero-mean $x$ and $w$: $\operatorname{Var}(x w) = E[x^2] E[w^2] = \sigma_x^2 \sigma_w^2$. So
# $\operatorname{Var}(y_j) = n\, \sigma_x^2 \sigma_w^2$; solve for $\sigma_w$ (a standard deviation, not a variance).
# </details>

# %%
@exercise
def init_std(fan_in):
    """The weights' standard deviation that keeps Var(x W) = Var(x) for a layer with fan_in inputs."""
    # TODO: one line
    raise NotImplementedError("Exercise 1: write init_std")


# %%
check_init_std(init_std)

# %% [markdown]
# Twenty linear layers of width 256, without anything between them: with your scale the
# activations keep their size; twice it, they grow by $2^{20}$; half of it, they vanish; and 0.02
# (ViT's) shrinks them by about $0.32$ per layer.

# %%
rng = np.random.default_rng(0)
width, depth = 256, 20
x = rng.standard_normal((512, width))
fig, axis = plt.subplots(figsize=(6.4, 3.4))
for label, sigma in [(f"init_std(256) = {init_std(width):.4f}", init_std(width)),
                     ("2 x init_std", 2 * init_std(width)), ("init_std / 2", init_std(width) / 2), ("0.02", 0.02)]:
    h, sizes = x, [x.std()]
    for _ in range(depth):
        h = h @ (rng.standard_normal((width, width)) * sigma)
        sizes.append(h.std())
    axis.semilogy(range(depth + 1), sizes, "o-", markersize=3, label=label)
axis.set_xlabel("linear layer")
axis.set_ylabel("std of the activations (log scale)")
axis.set_title("a deep linear stack: only one scale keeps the signal's size")
axis.legend(fontsize=8)
plt.show()

# %% [markdown]
# A ViT gets away with 0.02 because of how its blocks are built: every branch starts with a
# LayerNorm (so its input has unit size, whatever came before) and adds its output to the residual
# stream instead of replacing it. Small branches at the start make the network close to the
# identity, which trains stably; the measured residual stream above shows it.
#
# ## 2. AdamW
#
# Plain gradient descent moves every parameter by $\eta g$. Adam (Kingma & Ba, 2015) keeps two
# running averages per parameter, of the gradient and of its square,
#
# $$ m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \qquad m_0 = v_0 = 0, $$
#
# and steps by $m / \sqrt{v}$: a direction smoothed over about $1/(1-\beta_1) = 10$ steps, scaled
# per parameter so that every parameter moves about $\eta$ per step whatever the size of its
# gradient. But the averages start at zero. In the first steps $m_t$ and $v_t$ are far smaller than
# the gradients they average: with $\beta_2 = 0.999$, $v_1$ is a thousandth of $g_1^2$.
#
# **Exercise 2a.** Suppose every $g_t$ has the same expectation $E[g]$. Derive $E[m_t]$ as a multiple
# of $E[g]$, and write `bias_correction(step, beta)`, that multiple (the correction divides by it).
#
# <details><summary>Hint 1: unroll the recursion</summary>
#
# $m_t = (1-\beta) \big(g_t + \beta g_{t-1} + \beta^2 g_{t-2} + \dots + \beta^{t-1} g_1\big) = (1 - \beta) \sum_{i=1}^{t} \beta^{t-i} g_i$.
# </details>
#
# <details><summary>Hint 2: a geometric sum</summary>
#
# Take expectations: $E[m_t] = (1-\beta) \sum_{k=0}^{t-1} \beta^k\, E[g]$, and $\sum_{k=0}^{t-1} \beta^k = \dfrac{1 - \beta^t}{1 - \beta}$.
# </details>

# %%
@exercise
def bias_correction(step, beta):
    """E[m_t] / E[g] for an exponential average with factor beta started at zero; step counts from 1."""
    # TODO: one line
    raise NotImplementedError("Exercise 2a: write bias_correction")


# %%
check_bias_correction(bias_correction)

# %% [markdown]
# With a constant gradient the corrected average $\hat m_t = m_t / (1 - \beta_1^t)$ is exactly that
# gradient from the very first step, while $m_t$ creeps up to it:

# %%
g, beta1, m = 1.0, 0.9, 0.0
raw, corrected = [], []
for t in range(1, 41):
    m = beta1 * m + (1 - beta1) * g
    raw.append(m)
    corrected.append(m / bias_correction(t, beta1))
plt.figure(figsize=(6.4, 3))
plt.plot(range(1, 41), raw, "o-", markersize=3, label="$m_t$ (started at 0)")
plt.plot(range(1, 41), corrected, "s-", markersize=3, label="$m_t / (1 - \\beta_1^t)$")
plt.axhline(g, color="gray", linestyle="--", label="the gradient")
plt.xlabel("step t")
plt.ylabel("average of a constant gradient 1")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# **Exercise 2b.** Write AdamW's update for one parameter,
# `adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)`,
# returning the new `(param, exp_avg, exp_avg_sq)`. The check runs six steps against
# `minivit.optim.AdamW` (which does what `torch.optim.AdamW` does). The pieces:
#
# * the two averages above, then $\hat m = m / (1-\beta_1^t)$ and $\hat v = v / (1-\beta_2^t)$;
# * the step $\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)$;
# * **decoupled** weight decay (Loshchilov & Hutter, 2019): before the step, $\theta \leftarrow \theta (1 - \eta \lambda)$.
#   Adam with "L2" adds $\lambda \theta$ to the gradient instead, which Adam's division by $\sqrt{\hat v}$ then
#   distorts (question 3). The caller passes `weight_decay=0` for parameters that are not decayed
#   (biases, LayerNorm, the CLS token, position embeddings).
#
# <details><summary>Hint: what the first step does</summary>
#
# At $t = 1$: $\hat m = g$ and $\hat v = g^2$, so the step is $\eta\, g / (|g| + \epsilon) \approx \eta \operatorname{sign}(g)$:
# every parameter moves by about the learning rate. If yours does not, look at the corrections.
# </details>

# %%
@exercise
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """One AdamW step for one parameter; step counts from 1. Returns (param, exp_avg, exp_avg_sq)."""
    # TODO: about six lines
    raise NotImplementedError("Exercise 2b: write adamw_step")


# %%
check_adamw_step(adamw_step)

# %% [markdown]
# ## Your optimizer trains a ViT
#
# An optimizer is your update applied to every parameter, with its own averages, and the weight
# decay switched off where `minivit.optim.no_weight_decay` says. Below, the same small model
# trained on the same batch with the engine's AdamW and with yours (in float64, so the two must
# agree to many digits): the two loss curves, and the first step where they part, if they do.

# %%
class YourAdamW:
    """AdamW over a model's named parameters, with your adamw_step."""

    def __init__(self, named_parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05):
        self.named_parameters = list(named_parameters)
        self.lr, (self.beta1, self.beta2), self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.exp_avg = {name: np.zeros_like(p.data) for name, p in self.named_parameters}
        self.exp_avg_sq = {name: np.zeros_like(p.data) for name, p in self.named_parameters}
        self.step_count = 0

    def zero_grad(self):
        for _, parameter in self.named_parameters:
            parameter.grad[...] = 0

    def step(self):
        self.step_count += 1
        for name, parameter in self.named_parameters:
            decay = 0.0 if optim.no_weight_decay(name) else self.weight_decay
            parameter.data[...], self.exp_avg[name], self.exp_avg_sq[name] = adamw_step(
                parameter.data, parameter.grad, self.exp_avg[name], self.exp_avg_sq[name], self.step_count,
                self.lr, self.beta1, self.beta2, self.eps, decay)


def train_losses(make_optimizer, steps=20):
    model = minivit.ViTForImageClassification(small, seed=0, dtype="float64").train()
    optimizer = make_optimizer(model.named_parameters())
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss, cache = cross_entropy_forward(model.forward(batch), batch_labels)
        model.backward(cross_entropy_backward(1.0, cache))
        optimizer.step()
        losses.append(float(loss))
    return losses


from support import check_curve  # noqa: E402

small = minivit.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, num_labels=10)
batch, batch_labels = pixels[:32].astype(np.float64), labels[:32]
steps = 10 if FAST else 20
engine_losses = train_losses(lambda parameters: optim.AdamW(parameters, lr=3e-3, weight_decay=0.05), steps)
your_losses = train_losses(lambda parameters: YourAdamW(parameters, lr=3e-3, weight_decay=0.05), steps)
check_curve(np.arange(1, steps + 1), your_losses, engine_losses, "training loss: your AdamW against minivit's",
            ylabel="training loss", rtol=1e-6)

# %% [markdown]
# ## 3. A learning-rate sweep
#
# The learning rate is the setting that matters most, and the cheapest way to choose it is to try
# several on a short run: the same model from the same initial weights, the same batches, a
# handful of steps each, and the loss at the end. Rates from $10^{-5}$ to $0.3$, on a log scale,
# for a narrow ViT (hidden size 64, two layers) so that the sweep takes a minute or two.

# %%
sweep_config = (minivit.ViTConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, num_labels=10) if FAST else
                minivit.ViTConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128, num_labels=10))
rates = np.logspace(-5, math.log10(0.3), 5 if FAST else 9)
sweep_steps, batch_size = (10, 16) if FAST else (40, 32)
order = np.random.default_rng(0).permutation(len(pixels))
histories = {}
for lr in rates:
    model = minivit.ViTForImageClassification(sweep_config, seed=0).train()
    optimizer = optim.AdamW(model.named_parameters(), lr=float(lr), weight_decay=0.05)
    history = []
    for step in range(sweep_steps):
        chosen = order[(step * batch_size) % len(pixels):][:batch_size]
        optimizer.zero_grad()
        loss, cache = cross_entropy_forward(model.forward(pixels[chosen]), labels[chosen])
        model.backward(cross_entropy_backward(1.0, cache))
        optimizer.step()
        history.append(float(loss) if np.isfinite(float(loss)) else np.nan)
    histories[lr] = history
final = {lr: float(np.nanmean(history[-5:])) if np.isfinite(history[-5:]).any() else np.inf
         for lr, history in histories.items()}
best = min(final, key=final.get)

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6))
colours = plt.cm.viridis(np.linspace(0, 1, len(rates)))
for colour, lr in zip(colours, rates):
    left.plot(range(1, sweep_steps + 1), histories[lr], color=colour, label=f"{lr:.1e}")
left.set_xlabel("step")
left.set_ylabel("training loss")
left.set_ylim(0, max(2 * math.log(10), 1.2 * max(final[lr] for lr in rates if np.isfinite(final[lr]))))
left.legend(title="learning rate", fontsize=7, ncol=2)
right.semilogx(rates, [min(final[lr], 2 * math.log(10)) for lr in rates], "o-")
right.axhline(math.log(10), color="gray", linestyle="--", label="ln 10 (the initial loss)")
right.axvline(best, color="C3", linestyle=":", label=f"lowest: {best:.1e}")
right.set_xlabel("learning rate (log scale)")
right.set_ylabel(f"mean loss of the last 5 of {sweep_steps} steps")
right.legend(fontsize=8)
plt.tight_layout()
plt.show()
print({f"{lr:.1e}": round(final[lr], 3) for lr in rates})
check(rates[0] < best < rates[-1], "the sweep has a valley: its best rate lies inside the range",
      yours=f"{best:.1e}", expected=f"between {rates[0]:.0e} and {rates[-1]:.1f}")
check(final[rates[-1]] > final[best] + 0.1, "too large a rate is worse than the best one",
      yours=round(final[rates[-1]], 3), expected=f"> {final[best] + 0.1:.3f}")

# %% [markdown]
# Left of the valley the steps are too small to matter in so few steps; right of it they are so
# large that the loss stalls, oscillates, or the run diverges. A short sweep's best rate is an
# optimistic guess for a long run: longer runs usually want a rate a few times smaller (and a
# warmup, lesson 8, to survive the first steps at it). `cifar-tiny`'s recipe uses $10^{-3}$ with a
# batch of 128. On a GPU the sweep can afford the real model: nine rates of 200 steps of
# `cifar-tiny` at batch 128 are 230,400 images, about 23 seconds of training steps at the 9,867
# images per second measured on an NVIDIA H200 (`benchmarks/results/gpu-h200-2026-11-26/`; loading
# the data not counted).
#
# ## 4. Inside a training run
#
# Two tools that every check so far used without showing them: the finite-difference checker,
# and the training step. Then a run with both opened up, watched from inside.
#
# **Exercise 3, your gradient checker.** Write `numerical_gradient(f, x, h=1e-5)`: for every element
# $x_i$ (any number of axes: `np.ndindex(x.shape)` walks them), the centred difference
# $(f(x + h e_i) - f(x - h e_i)) / 2h$, with $x$ perturbed in place and put back. Its error is
# $O(h^2)$ from the truncation plus about $\epsilon_{\text{machine}} |f| / h$ from rounding; $h = 10^{-5}$
# balances the two in float64. The check compares it with `minivit.gradcheck`'s 3-point stencil
# (what `check_model` uses, with 5 points) on 2-D and 3-D inputs.
#
# <details><summary>Hint</summary>
#
# `original = x[index]; x[index] = original + h; f_plus = f(); x[index] = original - h; f_minus = f(); x[index] = original`.
# </details>

# %%
@exercise
def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x)
    # TODO: a loop over np.ndindex(x.shape)
    raise NotImplementedError("Exercise 3: write the centred difference")


# %%
check_numerical_gradient(numerical_gradient)

# %% [markdown]
# **Exercise 4, your training step.** Write `train_step(model, optimizer, images, labels)`: zero the
# gradients, run the forward, the loss (`dispatch.cross_entropy_forward`: yours from lesson 6 inside
# `use_mine`), the backward from `dispatch.cross_entropy_backward(1.0, cache)`, the optimizer's step;
# return the loss. The engine's `backward` **adds** into each parameter's `.grad`, which is why the
# order matters.

# %%


@exercise
def train_step(model, optimizer, images, labels):
    # TODO: four lines and a return
    raise NotImplementedError("Exercise 4: write the training step")


# %%
check_train_step(train_step)

# %% [markdown]
# **Watching a run from inside.** Your step, on the sweep's model at a good rate, with three
# readings after every step: each layer's output scale (the standard deviation of its activations
# on the batch), each layer's gradient norm, and the **update-to-weight ratio**
# $\lVert \Delta\theta \rVert / \lVert \theta \rVert$ of each layer's weights: how much of a weight one
# step changes. A common rule of thumb (Karpathy's) puts healthy ratios near $10^{-3}$: far below,
# the layer barely learns; near $10^{-1}$, each step rewrites it. The numbers here depend on the
# rate and the recipe; read the shapes of the curves.

# %%
def layer_norms(model, of):
    """{layer index: the norm of its parameters' ``of`` (data or grad)}, over encoder layer l's parameters."""
    totals = {}
    for name, parameter in model.named_parameters():
        if name.startswith("encoder.layers."):
            layer = int(name.split(".")[2])
            totals[layer] = totals.get(layer, 0.0) + float(np.sum(getattr(parameter, of).astype(np.float64) ** 2))
    return {layer: math.sqrt(total) for layer, total in sorted(totals.items())}


watched = minivit.ViTForImageClassification(sweep_config, seed=0).train()
watched_optimizer = optim.AdamW(watched.named_parameters(), lr=float(best), weight_decay=0.05)
watch_steps = 10 if FAST else 60
readings = {"activation std": [], "gradient norm": [], "update / weight": []}
try:
    for step in range(watch_steps):
        chosen = order[(step * batch_size) % len(pixels):][:batch_size]
        before = {name: p.data.copy() for name, p in watched.named_parameters() if name.startswith("encoder.layers.")}
        train_step(watched, watched_optimizer, pixels[chosen], labels[chosen])
        readings["gradient norm"].append(list(layer_norms(watched, "grad").values()))
        weights = layer_norms(watched, "data")
        updates = {}
        for name, old in before.items():
            layer = int(name.split(".")[2])
            change = dict(watched.named_parameters())[name].data - old
            updates[layer] = updates.get(layer, 0.0) + float(np.sum(change.astype(np.float64) ** 2))
        readings["update / weight"].append([math.sqrt(updates[layer]) / weights[layer] for layer in weights])
        with no_grad():
            hidden = watched.embeddings.forward(pixels[chosen])
            stds = []
            for layer in watched.encoder.layers:
                hidden = layer.forward(hidden)
                stds.append(float(hidden.std()))
        readings["activation std"].append(stds)
except NotImplementedError:
    print("This cell waits for Exercise 4 (train_step): the run uses your step.")
if readings["activation std"]:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for axis, (title, values) in zip(axes, readings.items()):
        values = np.array(values)
        for layer in range(values.shape[1]):
            axis.plot(range(1, len(values) + 1), values[:, layer], label=f"layer {layer}")
        axis.set_yscale("log")
        axis.set_xlabel("step")
        axis.set_title(title)
    axes[2].axhline(1e-3, color="gray", linestyle="--", label="1e-3")
    axes[2].legend(fontsize=8)
    plt.tight_layout()
    plt.show()
    final_ratios = readings["update / weight"][-1]
    print(f"after {watch_steps} steps at lr {float(best):.1e}: update / weight per layer "
          + ", ".join(f"{ratio:.1e}" for ratio in final_ratios)
          + "; activation std per layer " + ", ".join(f"{value:.2f}" for value in readings["activation std"][-1]))

# %% [markdown]
# ## Questions
#
# 1. Derive $\operatorname{Var}(y_j)$ for one linear layer. With 20 layers and $\sigma_w = 2/\sqrt{n}$,
#    by what factor does the activations' standard deviation grow? With $0.5/\sqrt n$?
# 2. Without bias correction, how large is Adam's first step compared with $\eta$, for
#    $\beta_1 = 0.9$, $\beta_2 = 0.999$? Why is that a problem exactly when warmup matters?
# 3. Why is "L2 regularisation" (adding $\lambda\theta$ to the gradient) not the same as weight decay
#    for Adam, when it is for plain SGD?
# 4. What shape does the sweep's curve have, and where would you set the learning rate of a long
#    run relative to its minimum?

# %%
show_answers(7)

# %% [markdown]
# ## What you built
#
# - The measured effect of the initialisation scale on the initial loss, the activations and
#   attention, and `init_std`, derived from the variance of a sum.
# - Adam's bias correction, derived from a geometric sum, and `adamw_step`, equal to
#   `minivit.optim.AdamW`; your optimizer trained a ViT to the same losses as the engine's.
# - A learning-rate sweep and how to read it.
# - Your own finite-difference checker, equal to `minivit.gradcheck`'s stencil; your own training
#   step; and a run read from inside: activation scales, gradient norms, update-to-weight ratios.
#
# Next, lesson 8: the training pipeline, the learning-rate schedule, and a run on your own functions.
