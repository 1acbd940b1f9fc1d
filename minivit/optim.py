"""Optimizers, the learning-rate schedule and gradient clipping.

Both optimizers take ``model.named_parameters()`` and update ``.data`` in place
from ``.grad``, with the same arithmetic as PyTorch's (tested step by step).
Their state travels in checkpoints through ``state_dict()`` / ``load_state_dict()``.
"""

from __future__ import annotations

import math

from minivit import backend


def no_weight_decay(name: str) -> bool:
    """Parameters that AdamW does not decay: biases, LayerNorm gains, the CLS token and
    the position embeddings (decay would pull them towards zero for no benefit)."""
    return (name.endswith(".bias") or "layernorm" in name or name.endswith("cls_token")
            or name.endswith("position_embeddings"))


class Optimizer:
    """Base class. ``lr_scales`` ({name: factor}) gives parameters their own fraction of
    the learning rate (layer-wise decay when finetuning); the others get 1."""

    def __init__(self, named_parameters, lr: float, lr_scales: dict | None = None):
        self.named_parameters = list(named_parameters)
        if not self.named_parameters:
            raise ValueError("The optimizer got no parameters.")
        if not lr >= 0:
            raise ValueError(f"The learning rate must be >= 0; got {lr}.")
        self.lr = lr
        self.lr_scales = lr_scales or {}
        self.step_count = 0

    def parameter_lr(self, name: str) -> float:
        return self.lr * self.lr_scales.get(name, 1.0)

    def zero_grad(self) -> None:
        for _, parameter in self.named_parameters:
            parameter.grad.fill(0)

    def state_dict(self) -> dict:
        """{"step": int, "<slot>/<parameter name>": NumPy array, ...}, on the host."""
        state = {"step": self.step_count}
        for slot, arrays in self._slots().items():
            for name, array in arrays.items():
                state[f"{slot}/{name}"] = backend.to_numpy(array).copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        for slot, arrays in self._slots().items():
            for name, array in arrays.items():
                key = f"{slot}/{name}"
                if key not in state:
                    raise ValueError(f"Optimizer state has no {key!r}: it was saved for another model.")
                if tuple(state[key].shape) != array.shape:
                    raise ValueError(f"Optimizer state {key!r} has shape {tuple(state[key].shape)}, "
                                     f"expected {array.shape}.")
                array[...] = backend.asarray(state[key], dtype=array.dtype)

    def _slots(self) -> dict:
        raise NotImplementedError


class SGD(Optimizer):
    """SGD with momentum (PyTorch's form: buf = momentum * buf + grad; p -= lr * buf),
    optional Nesterov momentum and coupled weight decay (grad += weight_decay * p)."""

    def __init__(self, named_parameters, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = False, lr_scales: dict | None = None):
        super().__init__(named_parameters, lr, lr_scales)
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
        xp = backend.xp
        self.momentum_buffers = {name: xp.zeros_like(p.data) for name, p in self.named_parameters}

    def step(self) -> None:
        self.step_count += 1
        for name, parameter in self.named_parameters:
            grad = parameter.grad
            if self.weight_decay and not no_weight_decay(name):
                grad = grad + self.weight_decay * parameter.data
            buffer = self.momentum_buffers[name]
            if self.step_count == 1:
                buffer[...] = grad  # PyTorch starts the buffer at the first gradient
            else:
                buffer *= self.momentum
                buffer += grad
            update = grad + self.momentum * buffer if self.nesterov else buffer
            parameter.data -= self.parameter_lr(name) * update

    def _slots(self) -> dict:
        return {"momentum": self.momentum_buffers}


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW:

        p <- p * (1 - lr * weight_decay)                 (only parameters that decay)
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    """

    def __init__(self, named_parameters, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.05, lr_scales: dict | None = None):
        super().__init__(named_parameters, lr, lr_scales)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        xp = backend.xp
        self.exp_avg = {name: xp.zeros_like(p.data) for name, p in self.named_parameters}
        self.exp_avg_sq = {name: xp.zeros_like(p.data) for name, p in self.named_parameters}

    def step(self) -> None:
        xp = backend.xp
        self.step_count += 1
        bias_correction1 = 1.0 - self.beta1**self.step_count
        bias_correction2 = 1.0 - self.beta2**self.step_count
        for name, parameter in self.named_parameters:
            lr = self.parameter_lr(name)
            step_size = lr / bias_correction1
            grad = parameter.grad
            if self.weight_decay and not no_weight_decay(name):
                parameter.data *= 1.0 - lr * self.weight_decay
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * grad * grad
            denom = xp.sqrt(v) / math.sqrt(bias_correction2) + self.eps
            parameter.data -= step_size * (m / denom)

    def _slots(self) -> dict:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}


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
    read it with float() only when you need the number).
    """
    xp = backend.xp
    grads = [p.grad for p in parameters]
    total_norm = xp.sqrt(sum(xp.sum(g * g) for g in grads))
    scale = xp.minimum(1.0, max_norm / (total_norm + 1e-6))
    for g in grads:
        g *= scale.astype(g.dtype)
    return total_norm


# --- which parameters train, and how fast: the optimizer policy of a run ----------------------

OPTIMIZERS = ("adamw", "sgd")


def frozen_names(names: list[str], freeze: str) -> set[str]:
    """The parameter names that ``freeze`` holds fixed.

    ``freeze``: comma-separated name prefixes ("embeddings,encoder.layers.0"), or "backbone"
    for everything but the classifier (a linear probe); "" freezes nothing.
    """
    prefixes = [item.strip() for item in freeze.split(",")]
    if freeze.strip() and not all(prefixes):
        raise ValueError(f"--freeze {freeze!r} has an empty name between its commas: list name prefixes "
                         "separated by single commas, e.g. embeddings,encoder.layers.0.")
    frozen = set()
    for prefix in filter(None, prefixes):
        if prefix == "backbone":
            matched = {name for name in names if not name.startswith("classifier.")}
        else:
            matched = {name for name in names if name == prefix or name.startswith(prefix + ".")}
        if not matched:
            roots = sorted({".".join(name.split(".")[:3]) if name.startswith("encoder.") else name.split(".")[0]
                            for name in names})
            raise ValueError(f"--freeze {prefix!r} names no parameter. Use 'backbone' or prefixes such as "
                             f"{', '.join(roots[:8])} ...")
        frozen |= matched
    if frozen == set(names):
        raise ValueError("--freeze leaves nothing to train.")
    return frozen


def layer_index(name: str, num_layers: int) -> int:
    """0 for the embeddings, l + 1 for encoder layer l, num_layers + 1 for the final norm and head."""
    if name.startswith("embeddings."):
        return 0
    if name.startswith("encoder.layers."):
        return int(name.split(".")[2]) + 1
    return num_layers + 1


def layer_decay_scales(names: list[str], num_layers: int, decay: float) -> dict[str, float]:
    """{name: decay ** (num_layers + 1 - layer_index)}: the head learns at the full rate,
    each layer below it at ``decay`` times the rate of the layer above (BEiT, MAE)."""
    if not 0 < decay <= 1:
        raise ValueError(f"--layer-decay must be in (0, 1]; got {decay}.")
    return {name: decay ** (num_layers + 1 - layer_index(name, num_layers)) for name in names}


def build_optimizer(model, name: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.05,
                    momentum: float = 0.9, freeze: str = "", layer_decay: float = 1.0) -> Optimizer:
    """The optimizer ``name`` (one of OPTIMIZERS) over the parameters of ``model`` that train.

    ``freeze`` holds parameters fixed (see ``frozen_names``); ``layer_decay`` < 1 gives each layer
    its share of the rate (see ``layer_decay_scales``).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}.")
    named = list(model.named_parameters())
    names = [parameter_name for parameter_name, _ in named]
    frozen = frozen_names(names, freeze)
    trainable = [(parameter_name, parameter) for parameter_name, parameter in named if parameter_name not in frozen]
    scales = (layer_decay_scales(names, model.config.num_hidden_layers, layer_decay)
              if layer_decay != 1 else None)
    if name == "adamw":
        return AdamW(trainable, lr=lr, weight_decay=weight_decay, lr_scales=scales)
    return SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay, lr_scales=scales)
