# %% [markdown]
# # Lesson 5 — The encoder block
#
# **Goals.**
# 1. Derive and write LayerNorm's backward.
# 2. Know GELU's two forms and their derivatives.
# 3. Assemble a pre-norm block and see how residual connections carry the gradient.
#
# One ViT layer (pre-norm, as in ViT and transformers):
#
# $$ h \leftarrow h + \operatorname{Attention}(\operatorname{LN}_1(h)), \qquad h \leftarrow h + \operatorname{MLP}(\operatorname{LN}_2(h)), \qquad
#    \operatorname{MLP}(u) = W_2\, \operatorname{GELU}(W_1 u + b_1) + b_2. $$
#
# ## LayerNorm
#
# Per token (a row $x \in \mathbb{R}^D$): $\mu = \frac1D\sum_i x_i$, $\sigma^2 = \frac1D \sum_i (x_i-\mu)^2$,
# $\hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}$, $y = \gamma \odot \hat x + \beta$.
#
# With $g = \partial L/\partial y$: $\partial L/\partial\gamma = \sum_{\text{tokens}} g \odot \hat x$, $\partial L/\partial \beta = \sum_{\text{tokens}} g$.
# For $x$, let $\hat g = g \odot \gamma$ and $r = 1/\sqrt{\sigma^2+\epsilon}$. Differentiating through $\mu$ and $\sigma^2$
# (both depend on every $x_i$) gives
#
# $$ \frac{\partial L}{\partial x} = r \Big( \hat g - \operatorname{mean}(\hat g) - \hat x \odot \operatorname{mean}(\hat g \odot \hat x) \Big). $$
#
# The two subtracted terms remove the components of $\hat g$ along the directions LayerNorm
# cannot change: a shift of all features, and a rescaling of $\hat x$.

# %%
import numpy as np
import matplotlib.pyplot as plt

import minivit
from minivit import ops
from minivit.gradcheck import check_op
from lesson_support import FAST, check, exercise

rng = np.random.default_rng(0)

# %% [markdown]
# **Exercise 1.** LayerNorm's backward.

# %%
def layernorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    return xhat * gamma + beta, (xhat, rstd, gamma)


@exercise
def layernorm_backward(dout, cache):
    """Returns (dx, dgamma, dbeta)."""
    xhat, rstd, gamma = cache
    # TODO: about five lines
    raise NotImplementedError("Exercise 1: write layernorm_backward")


# %%
report = check_op(layernorm_forward, layernorm_backward,
                  {"x": rng.standard_normal((2, 3, 6)), "gamma": rng.standard_normal(6), "beta": rng.standard_normal(6)})
print(report)
check(report.max_rel_error < 1e-6, "LayerNorm backward (expect about 1e-10)")

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
left.legend()
left.set_title("GELU")
right.plot(x, ops.gelu_backward(np.ones_like(x), exact_cache), label="d gelu / dx")
right.plot(x, 1e3 * (approx - exact), label="1000 x (tanh form - exact)")
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
plt.ylabel("|dL/d input of layer|")
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
# ## Questions
#
# 1. Why is $\partial L/\partial x$ of LayerNorm orthogonal to the all-ones vector? Check it numerically.
# 2. In a *post*-norm block, $h \leftarrow \operatorname{LN}(h + f(h))$, the gradient to $h$ passes through a LayerNorm at every
#    layer. How does that change the argument about residuals?
# 3. With `initializer_range` = 0.02, what do the attention and MLP branches output at initialisation,
#    roughly, compared with $h$? What does that mean for the first steps of training?
