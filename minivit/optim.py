"""Optimizers, the learning-rate schedule and gradient clipping.

Both optimizers take ``model.named_parameters()`` and update ``.data`` in place
from ``.grad``, with the same arithmetic as PyTorch's (tested step by step).
Their state travels in checkpoints through ``state_dict()`` / ``load_state_dict()``.

The update rules themselves (``adamw_update``, ``sgd_update``) are plain elementwise
array math, the reference that ``minivit/kernels`` replaces with one-pass kernels.
"""

from __future__ import annotations

import math

from minivit import backend, dispatch


def no_weight_decay(name: str) -> bool:
    """Parameters that AdamW does not decay: biases, LayerNorm gains, the CLS token and
    the position embeddings (decay would pull them towards zero for no benefit)."""
    return (name.endswith(".bias") or "layernorm" in name or name.endswith("cls_token")
            or name.endswith("position_embeddings"))


# --- the updates, element by element: the reference ------------------------------------------------
# Each works on arrays of any shape (one parameter's, or a whole flat buffer of them), in place.
# ``lr_scale`` and ``weight_decay`` are numbers or arrays shaped like ``data`` (a rate and a
# decay per element: layer-wise decay, parameters that do not decay, frozen ones at rate 0).
# minivit/kernels has one-pass versions with the same signatures; minivit.dispatch chooses.


def adamw_update(data, grad, exp_avg, exp_avg_sq, lr, lr_scale, weight_decay, beta1, beta2, eps, step):
    """One AdamW step (step counts from 1), with torch.optim.AdamW's arithmetic:

        p <- p * (1 - lr * weight_decay)                 decoupled weight decay
        m <- beta1 m + (1 - beta1) g                     first moment
        v <- beta2 v + (1 - beta2) g^2                   second moment
        p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    """
    xp = backend.xp
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


def sgd_update(data, grad, momentum_buffer, lr, lr_scale, weight_decay, momentum, nesterov, step):
    """One step of SGD with momentum (step counts from 1), with torch.optim.SGD's arithmetic:

        g   <- g + weight_decay * p                      coupled weight decay
        buf <- g (first step), else momentum * buf + g
        p   <- p - lr * (g + momentum * buf if nesterov else buf)
    """
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


# --- optimizers ----------------------------------------------------------------------------------


class Optimizer:
    """Base class: updates ``.data`` in place from ``.grad`` for ``named_parameters``.

    ``lr_scales`` ({name: factor}) gives parameters their own fraction of the learning rate
    (layer-wise decay when finetuning); the others get 1.

    When the parameters belong to one model's flat buffer (``minivit.nn.FlatParameters``),
    the update runs once over the whole buffer, with a rate and a decay per element
    (parameters of the model that were not given, frozen ones, get rate 0); otherwise once
    per parameter. Either way it is the same update function (``adamw_update``, ``sgd_update``).
    """

    slots: tuple[str, ...] = ()  # names of the per-element state arrays

    def __init__(self, named_parameters, lr: float, weight_decay: float = 0.0, lr_scales: dict | None = None):
        self.named_parameters = list(named_parameters)
        if not self.named_parameters:
            raise ValueError("The optimizer got no parameters.")
        if not lr >= 0:
            raise ValueError(f"The learning rate must be >= 0; got {lr}.")
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_scales = lr_scales or {}
        self.step_count = 0
        flats = {id(p.flat) for _, p in self.named_parameters}
        self.flat = self.named_parameters[0][1].flat if len(flats) == 1 else None
        self._groups = self._flat_group() if self.flat is not None else self._parameter_groups()
        # {slot: {name: array}}: views into the flat state arrays, or one array per parameter
        self.state = {slot: self._state_views(slot) for slot in self.slots}

    def parameter_lr(self, name: str) -> float:
        return self.lr * self.lr_scales.get(name, 1.0)

    def _decay(self, name: str) -> float:
        return 0.0 if no_weight_decay(name) else self.weight_decay

    def _flat_group(self) -> list[dict]:
        """One group: the whole flat buffer, its state, and per-element rate scales and decays."""
        flat, xp = self.flat, backend.xp
        given = dict(self.named_parameters)
        decay = xp.zeros_like(flat.data)
        for name in given:
            flat.view(decay, name)[...] = self._decay(name)
        lr_scale = 1.0  # a number while every parameter moves at the full rate: no array to read
        if len(given) < len(flat.names) or self.lr_scales:
            lr_scale = xp.zeros_like(flat.data)  # parameters not given (frozen) do not move
            for name in given:
                flat.view(lr_scale, name)[...] = self.lr_scales.get(name, 1.0)
        group = {"data": flat.data, "grad": flat.grad, "lr_scale": lr_scale, "weight_decay": decay}
        group.update({slot: xp.zeros_like(flat.data) for slot in self.slots})
        return [group]

    def _parameter_groups(self) -> list[dict]:
        """One group per parameter."""
        xp = backend.xp
        return [{"name": name, "data": p.data, "grad": p.grad, "lr_scale": self.lr_scales.get(name, 1.0),
                 "weight_decay": self._decay(name), **{slot: xp.zeros_like(p.data) for slot in self.slots}}
                for name, p in self.named_parameters]

    def _state_views(self, slot: str) -> dict:
        if self.flat is not None:
            return {name: self.flat.view(self._groups[0][slot], name) for name, _ in self.named_parameters}
        return {group["name"]: group[slot] for group in self._groups}

    def zero_grad(self) -> None:
        if self.flat is not None and len(self.named_parameters) == len(self.flat.names):
            self.flat.grad.fill(0)
            return
        for _, parameter in self.named_parameters:
            parameter.grad.fill(0)

    def step(self) -> None:
        self.step_count += 1
        for group in self._groups:
            self._update(group)

    def _update(self, group: dict) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """{"step": int, "<slot>/<parameter name>": NumPy array, ...}, on the host."""
        state = {"step": self.step_count}
        for slot, arrays in self.state.items():
            if self.flat is not None:  # one copy from the device per slot
                host = backend.to_numpy(self._groups[0][slot])
                arrays = {name: self.flat.view(host, name) for name in arrays}
            for name, array in arrays.items():
                state[f"{slot}/{name}"] = backend.to_numpy(array).copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        for slot, arrays in self.state.items():
            for name, array in arrays.items():
                key = f"{slot}/{name}"
                if key not in state:
                    raise ValueError(f"Optimizer state has no {key!r}: it was saved for another model.")
                if tuple(state[key].shape) != array.shape:
                    raise ValueError(f"Optimizer state {key!r} has shape {tuple(state[key].shape)}, "
                                     f"expected {array.shape}.")
        self.step_count = int(state["step"])
        for slot, arrays in self.state.items():
            for name, array in arrays.items():
                array[...] = backend.asarray(state[f"{slot}/{name}"], dtype=array.dtype)


class SGD(Optimizer):
    """SGD with momentum (PyTorch's form: buf = momentum * buf + grad; p -= lr * buf),
    optional Nesterov momentum and coupled weight decay (grad += weight_decay * p)."""

    slots = ("momentum",)

    def __init__(self, named_parameters, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = False, lr_scales: dict | None = None):
        self.momentum, self.nesterov = momentum, nesterov
        super().__init__(named_parameters, lr, weight_decay, lr_scales)
        self.momentum_buffers = self.state["momentum"]

    def _update(self, group: dict) -> None:
        dispatch.sgd_update(group["data"], group["grad"], group["momentum"], self.lr, group["lr_scale"],
                            group["weight_decay"], self.momentum, self.nesterov, self.step_count)


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW (see adamw_update)."""

    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, named_parameters, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.05, lr_scales: dict | None = None):
        self.beta1, self.beta2 = betas
        self.eps = eps
        super().__init__(named_parameters, lr, weight_decay, lr_scales)
        self.exp_avg, self.exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]

    def _update(self, group: dict) -> None:
        dispatch.adamw_update(group["data"], group["grad"], group["exp_avg"], group["exp_avg_sq"], self.lr,
                              group["lr_scale"], group["weight_decay"], self.beta1, self.beta2, self.eps,
                              self.step_count)


def warmup_cosine(step: float, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Linear warmup from 0 to base_lr over warmup_steps, then cosine decay to min_lr at total_steps.

    ``step`` counts from 0; the learning rate for step 0 is base_lr / warmup_steps. It may be
    fractional (a time-budget run measures its position on the schedule by the clock).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(1.0, progress)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def clip_grad_norm(parameters, max_norm: float):
    """Scale all gradients so that their global L2 norm is at most max_norm.

    Returns the norm before clipping, as a 0-d backend array (no host sync here:
    read it with float() only when you need the number). For all the parameters of
    a model, this is ``clip_by_norm`` on its flat gradient buffer.
    """
    xp = backend.xp
    parameters = list(parameters)
    flat = parameters[0].flat if parameters else None
    if flat is not None and len(parameters) == len(flat.names) and all(p.flat is flat for p in parameters):
        return dispatch.clip_by_norm(flat.grad, max_norm)
    grads = [p.grad for p in parameters]
    total_norm = xp.sqrt(sum(xp.sum(g * g) for g in grads))
    scale = xp.minimum(1.0, max_norm / (total_norm + 1e-6))
    for g in grads:
        g *= scale.astype(g.dtype, copy=False)
    return total_norm
