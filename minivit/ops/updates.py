"""The optimizers' update rules and gradient clipping, element by element: the reference.

Each works in place on arrays of any shape (one parameter's, or a whole flat buffer of
them). ``lr_scale`` and ``weight_decay`` are numbers or arrays shaped like ``data`` (a rate
and a decay per element: layer-wise decay, parameters that do not decay, frozen ones at
rate 0). ``minivit.optim`` holds the optimizers that call these; ``minivit/kernels`` has
one-pass versions with the same signatures, and ``minivit.dispatch`` chooses.
"""

from __future__ import annotations

import math

from minivit import backend


def adamw_update(data, grad, exp_avg, exp_avg_sq, lr, lr_scale, weight_decay, beta1, beta2, eps, step,
                 skip=None):
    """One AdamW step (step counts from 1), with torch.optim.AdamW's arithmetic:

        p <- p * (1 - lr * weight_decay)                 decoupled weight decay
        m <- beta1 m + (1 - beta1) g                     first moment
        v <- beta2 v + (1 - beta2) g^2                   second moment
        p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    ``skip``: None, or a one-element device array; where it is nonzero nothing changes (a float16
    step whose gradient overflowed), decided on the device, without reading it on the host.
    """
    xp = backend.xp
    if skip is not None:
        return _unless(skip, (data, exp_avg, exp_avg_sq), lambda: adamw_update(
            data, grad, exp_avg, exp_avg_sq, lr, lr_scale, weight_decay, beta1, beta2, eps, step))
    lr = lr * lr_scale
    data *= 1.0 - lr * weight_decay
    exp_avg *= beta1
    exp_avg += (1.0 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * grad * grad
    bias_correction1 = 1.0 - beta1**step
    bias_correction2 = 1.0 - beta2**step
    denom = xp.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps
    data -= (lr / bias_correction1) * (exp_avg / denom)


def sgd_update(data, grad, momentum_buffer, lr, lr_scale, weight_decay, momentum, nesterov, step, skip=None):
    """One step of SGD with momentum (step counts from 1), with torch.optim.SGD's arithmetic:

        g   <- g + weight_decay * p                      coupled weight decay
        buf <- g (first step), else momentum * buf + g
        p   <- p - lr * (g + momentum * buf if nesterov else buf)

    ``skip``: as in adamw_update.
    """
    if skip is not None:
        return _unless(skip, (data, momentum_buffer), lambda: sgd_update(
            data, grad, momentum_buffer, lr, lr_scale, weight_decay, momentum, nesterov, step))
    grad = grad + weight_decay * data
    if step == 1:
        momentum_buffer[...] = grad  # PyTorch starts the buffer at the first gradient
    else:
        momentum_buffer *= momentum
        momentum_buffer += grad
    update = grad + momentum * momentum_buffer if nesterov else momentum_buffer
    data -= (lr * lr_scale) * update


def clip_by_norm(grad, max_norm: float):
    """Scale ``grad`` in place so that its L2 norm is at most ``max_norm``; returns the norm before,
    as a 0-d array (no host read).

        norm = sqrt(sum(grad^2)),  grad <- grad * min(1, max_norm / (norm + 1e-6))
    """
    xp = backend.xp
    norm = xp.sqrt(xp.sum(grad * grad))
    grad *= xp.minimum(1.0, max_norm / (norm + 1e-6)).astype(grad.dtype, copy=False)
    return norm


def _unless(skip, arrays, update) -> None:
    """Run ``update`` (which changes ``arrays`` in place), then put back the old values where skip != 0."""
    xp = backend.xp
    before = [array.copy() for array in arrays]
    update()
    for array, old in zip(arrays, before):
        array[...] = xp.where(skip > 0, old, array)


# --- float16 training: the loss scale ------------------------------------------------------------------
# float16 holds magnitudes from 6e-8 to 65504: small gradients underflow to zero. The loss (so every
# gradient) is multiplied by a large scale before the backward pass and divided by it after, in
# float32; when a scaled gradient overflows, the step is skipped and the scale halved, and after
# ``growth_interval`` clean steps it doubles (torch.amp.GradScaler's rule). All of it on the device.


def unscale_gradients(grad, scale, out, found_inf) -> None:
    """out = grad / scale, in out's dtype (float32 from float16); found_inf (1 element) becomes 1
    if any value of ``out`` is infinite or NaN (it is left as it was otherwise)."""
    xp = backend.xp
    out[...] = grad.astype(out.dtype) / scale
    found_inf[...] = xp.maximum(found_inf, xp.any(~xp.isfinite(out)).astype(found_inf.dtype))


def update_loss_scale(scale, growth_tracker, found_inf, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                      growth_interval: int = 2000) -> None:
    """After a step: halve the scale (backoff) if found_inf, double it (growth) after growth_interval
    clean steps in a row; then clear found_inf for the next step. All arrays of one element."""
    xp = backend.xp
    overflow = found_inf > 0
    clean_steps = xp.where(overflow, 0, growth_tracker + 1)
    grow = clean_steps >= growth_interval
    scale[...] = xp.where(overflow, scale * backoff_factor, xp.where(grow, scale * growth_factor, scale))
    growth_tracker[...] = xp.where(grow, 0, clean_steps)
    found_inf[...] = 0
