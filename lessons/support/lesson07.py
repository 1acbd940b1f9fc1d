"""Lesson 7, initialisation and optimisation: its exercises' checks, their solutions, its answers.

A check (``check_<exercise>(your_function)``, called by the cell under the exercise) builds small
float64 inputs, computes the expected answer without the solution below it (finite differences,
or the engine's reference ops) and compares with the diagnosing checks of ``support.diagnosis``.
``@solution`` marks what MINIVIT_SOLUTIONS=1 switches in; ANSWERS are the questions' answers, in
the order the lesson asks them (Markdown, with $math$).
"""

from __future__ import annotations

import math

import numpy as np

from .diagnosis import NotYet, check_array, check_curve, check_value, diagnose, distinct
from .exercises import solution

# --- checks ---------------------------------------------------------------------------------------

def check_init_std(init_std) -> None:
    for fan_in in (16, 192, 768):
        check_value(init_std(fan_in), 1 / math.sqrt(fan_in),
                    f"init_std({fan_in}): Var(y) = Var(x) for y = x W with fan_in = {fan_in}", rtol=1e-9,
                    mistakes={"1/fan_in (that is the variance of W; the function returns its standard deviation)":
                              1 / fan_in,
                              "sqrt(2 / fan_in), Kaiming's choice for ReLU (a ReLU zeroes half the input; a "
                              "linear layer keeps all of it)": math.sqrt(2 / fan_in),
                              "1/sqrt(fan_in) squared twice": fan_in ** -0.25})


def check_bias_correction(bias_correction) -> None:
    steps = np.arange(1, 41)
    for beta in (0.9, 0.999):
        yours = [bias_correction(int(t), beta) for t in steps]
        check_curve(steps, yours, 1 - beta**steps, f"bias_correction(t, {beta}) = E[m_t] / E[g]",
                    ylabel="correction factor", xlabel="step",
                    mistakes={"beta^t (the weight of the zero start, not of the gradients)": beta**steps,
                              "1 - beta^(t - 1) (steps counted from 0?)": 1 - beta ** (steps - 1),
                              "1 - beta (the first step's weight at every step)": np.full(steps.shape, 1 - beta)},
                    plot=beta == 0.9)


def adamw_reference(param, grads, lr, beta1, beta2, eps, weight_decay, *, bias_correction=True,
                    coupled=False, decay_times_lr=True, eps_inside=False, sqrt_correction=True,
                    correct_v=True, decay_after=False):
    """AdamW as torch.optim.AdamW computes it, and the usual slips as options: the parameters after
    each step, stacked."""
    p = param.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    history = []
    for t, g in enumerate(grads, 1):
        decay = 1 - (lr * weight_decay if decay_times_lr else weight_decay)
        if coupled:
            g = g + weight_decay * p
        elif not decay_after:
            p = p * decay
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t) if bias_correction else m
        v_hat = v / (1 - beta2**t) if bias_correction and correct_v else v
        if not sqrt_correction:
            v_hat = v / (1 - beta2**t) ** 2
        denominator = np.sqrt(v_hat + eps) if eps_inside else np.sqrt(v_hat) + eps
        p = p - lr * m_hat / denominator
        if decay_after and not coupled:
            p = p * decay
        history.append(p)
    return np.stack(history), m, v


def check_adamw_step(adamw_step) -> None:
    """adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay)
    -> (param, exp_avg, exp_avg_sq), against minivit.optim.AdamW over six steps."""
    from minivit import backend, optim
    from minivit.nn import Parameter

    rng = np.random.default_rng(11)
    lr, beta1, beta2, eps, weight_decay = 0.01, 0.9, 0.999, 1e-8, 0.1
    param = rng.standard_normal((4, 3))
    scales = np.array([1.0, 1.0, 1e-4])  # a column of tiny gradients: there eps matters
    grads = [rng.standard_normal((4, 3)) * scales for _ in range(6)]

    engine = Parameter(backend.asarray(param.copy()))
    optimizer = optim.AdamW([("layer.weight", engine)], lr=lr, betas=(beta1, beta2), eps=eps,
                            weight_decay=weight_decay)
    expected = []
    for g in grads:
        engine.grad[...] = backend.asarray(g)
        optimizer.step()
        expected.append(backend.to_numpy(engine.data).copy())
    expected = np.stack(expected)

    yours, m, v = [], np.zeros_like(param), np.zeros_like(param)
    p = param.copy()
    what = "adamw_step against minivit.optim.AdamW, six steps"
    for t, g in enumerate(grads, 1):
        returned = adamw_step(p, g.copy(), m, v, t, lr, beta1, beta2, eps, weight_decay)
        if not isinstance(returned, tuple) or len(returned) != 3:
            raise NotYet(what, ["return (param, exp_avg, exp_avg_sq), the new values of all three"])
        p, m, v = (np.array(a, dtype=np.float64) for a in returned)
        if p.shape != param.shape:
            raise NotYet(what, [f"after step {t}: " + diagnose(p, expected[t - 1], "param")[0]])
        yours.append(p.copy())
    yours = np.stack(yours)
    options = {
        "Adam without bias correction": dict(bias_correction=False),
        "weight decay added to the gradient (Adam with L2, not AdamW's decoupled decay)": dict(coupled=True),
        "decaying by weight_decay instead of lr * weight_decay": dict(decay_times_lr=False),
        "eps inside the square root": dict(eps_inside=True),
        "bias correction on m only (v_hat = v / (1 - beta2^t) is missing)": dict(correct_v=False),
        "the weight decay applied after the Adam step (AdamW decays the parameter the step starts from: "
        "param * (1 - lr * weight_decay) first)": dict(decay_after=True),
        "dividing v by (1 - beta2^t)^2, i.e. correcting sqrt(v) by (1 - beta2^t) instead of its square root":
            dict(sqrt_correction=False),
    }
    variants = {name: adamw_reference(param, grads, lr, beta1, beta2, eps, weight_decay, **option)[0]
                for name, option in options.items()}
    variants["no weight decay at all"] = adamw_reference(param, grads, lr, beta1, beta2, eps, 0.0)[0]
    lines = diagnose(yours, expected, "params after each step", mistakes=variants, rtol=1e-7)
    if lines:
        first = int(np.argmax(np.abs(yours - expected).reshape(len(grads), -1).max(axis=1)
                              > 1e-7 * np.abs(expected).max()))
        raise NotYet(what, [f"your parameters part from AdamW's at step {first + 1}"] + lines)
    check_array(yours, expected, what, "params after each step", rtol=1e-7)


def check_numerical_gradient(numerical_gradient) -> None:
    """The learner's centred difference against minivit.gradcheck's 3-point stencil, on 2-D and 3-D
    inputs, x unchanged afterwards."""
    from minivit import gradcheck

    h = 1e-5
    for shape in ((3, 4), (2, 3, 4)):
        x = distinct(shape, seed=len(shape)) * 3
        weights = np.random.default_rng(len(shape)).standard_normal(shape)

        def f(x=x, weights=weights):
            return float(np.sum(np.sin(x) * weights + 0.5 * x**3))

        original = x.copy()
        expected = gradcheck.numerical_gradient(f, x, h=h, stencil=3)
        what = f"numerical_gradient on a {len(shape)}-D x {shape}, h = {h}, against minivit.gradcheck's 3-point stencil"
        yours = numerical_gradient(f, x, h)
        if not np.array_equal(x, original):
            raise NotYet(what, ["x changed: put each element back after perturbing it (x[i] = original) -- the "
                                "function reads x, and every later difference would start from a wrong point"])
        forward_difference = np.zeros_like(x)
        f_x = f()
        for index in np.ndindex(shape):
            saved = x[index]
            x[index] = saved + h
            forward_difference[index] = (f() - f_x) / h
            x[index] = saved
        exact = np.cos(x) * weights + 1.5 * x**2
        check_array(yours, expected, what, "numeric", rtol=1e-6,
                    mistakes={"the one-sided difference (f(x + h) - f(x)) / h: error O(h), where the centred one's is "
                              "O(h^2)": forward_difference},
                    sizes={"the 2 of 2h": 2})
        error = float(np.max(np.abs(yours - exact) / np.maximum(1e-8, np.abs(yours) + np.abs(exact))))
        print(f"  against the exact derivative: relative error {error:.1e} (expect about 1e-10 in float64 at h = {h})")


def check_train_step(train_step) -> None:
    """The learner's training step (zero the gradients, forward, loss, backward, update) against the
    engine's, five steps of a tiny ViT in float64."""
    import minivit
    from minivit import dispatch, optim

    config = minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=12, num_labels=3, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(18)
    images, labels = rng.standard_normal((6, 3, 8, 8)), rng.integers(0, 3, 6)

    def losses(step_function, steps=5):
        model = minivit.ViTForImageClassification(config, seed=2, dtype="float64").train()
        optimizer = optim.AdamW(model.named_parameters(), lr=1e-2)
        return [float(step_function(model, optimizer, images, labels)) for _ in range(steps)]

    def engine(model, optimizer, images, labels, accumulate=False, step_first=False):
        if not accumulate:
            optimizer.zero_grad()
        if step_first:
            optimizer.step()
        loss, cache = dispatch.cross_entropy_forward(model.forward(images), labels)
        model.backward(dispatch.cross_entropy_backward(1.0, cache))
        if not step_first:
            optimizer.step()
        return loss

    expected = losses(engine)
    what = "train_step: five steps, the losses against the engine's"
    yours = losses(train_step)
    check_curve(np.arange(1, 6), yours, expected, what, ylabel="training loss", rtol=1e-9, plot=False,
                mistakes={"no optimizer.zero_grad(): the gradients of every step add up": losses(
                              lambda *a: engine(*a, accumulate=True)),
                          "optimizer.step() before the backward (each update uses the previous step's gradient)":
                              losses(lambda *a: engine(*a, step_first=True))})


# --- solutions ------------------------------------------------------------------------------------

@solution
def init_std(fan_in):
    return 1.0 / math.sqrt(fan_in)


@solution
def bias_correction(step, beta):
    return 1.0 - beta**step


@solution
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    param = param * (1.0 - lr * weight_decay)  # decoupled: not through the gradient
    exp_avg = beta1 * exp_avg + (1.0 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1.0 - beta2) * grad * grad
    m_hat = exp_avg / bias_correction(step, beta1)
    v_hat = exp_avg_sq / bias_correction(step, beta2)
    param = param - lr * m_hat / (np.sqrt(v_hat) + eps)
    return param, exp_avg, exp_avg_sq


@solution
def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + h
        f_plus = f()
        x[index] = original - h
        f_minus = f()
        x[index] = original  # put it back
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


@solution
def train_step(model, optimizer, images, labels):
    from minivit import dispatch

    optimizer.zero_grad()  # the gradients of the last step are spent
    loss, cache = dispatch.cross_entropy_forward(model.forward(images), labels)
    model.backward(dispatch.cross_entropy_backward(1.0, cache))  # adds into every parameter's .grad
    optimizer.step()
    return loss


# --- answers --------------------------------------------------------------------------------------

ANSWERS = [
    r"""$\operatorname{Var}(y_j) = \sum_i \operatorname{Var}(x_i w_{ij}) = n\, \sigma_x^2 \sigma_w^2$
    for independent zero-mean $x$ and $w$. With $\sigma_w = 1/\sqrt{n}$ it stays $\sigma_x^2$.
    With 20 layers and $\sigma_w = 2/\sqrt{n}$ the standard deviation grows by $2^{20} \approx 10^6$;
    with $0.5/\sqrt{n}$ it shrinks by the same factor.""",
    r"""With $\beta_2 = 0.999$, $v_t \approx (1 - 0.999^t)\, g^2$: after one step only 0.1% of the
    way to $g^2$. Without correction the denominator $\sqrt{v}$ is $\sqrt{0.001} \approx 0.03$ of
    its proper size, so the first steps are about 30 times too large (the correction of $m$ by
    $1-\beta_1$ shrinks them by 10, a net 3 times): a large early jump, exactly when warmup is
    meant to keep steps small.""",
    r"""Adam divides each coordinate by its own $\sqrt{\hat v}$. An L2 term $\lambda\theta$ added to
    the gradient is divided too, so parameters with large gradients are decayed less than those
    with small ones: the decay is no longer the uniform shrinkage weight decay is meant to be.
    AdamW shrinks every decayed parameter by the same factor $1 - \eta\lambda$ per step,
    independently of the gradient statistics.""",
    r"""The curve is flat at the left (steps too small to change the loss in so few steps), falls to
    a minimum, and rises (or the run diverges) at the right. A good learning rate for a long run
    usually sits a little below the minimum of a short sweep: a factor of 3 to 10 lower, because
    a long run must stay stable for far more steps, and warmup and decay change the picture.""",
]
