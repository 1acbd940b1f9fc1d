"""Optimizers, the learning-rate schedule and gradient clipping.

Both optimizers take ``model.named_parameters()`` and update ``.data`` in place
from ``.grad``, with the same arithmetic as PyTorch's (tested step by step).
Their state travels in checkpoints through ``state_dict()`` / ``load_state_dict()``.

The update rules themselves (``adamw_update``, ``sgd_update``, ``clip_by_norm``) are plain
elementwise array math in ``minivit/ops/updates.py``, the reference that ``minivit/kernels``
replaces with one-pass kernels.
"""

from __future__ import annotations

import math

from minivit import backend, dispatch


def no_weight_decay(name: str) -> bool:
    """Parameters that AdamW does not decay: biases, LayerNorm gains, the CLS token and
    the position embeddings (decay would pull them towards zero for no benefit)."""
    return (name.endswith(".bias") or "layernorm" in name or name.endswith("cls_token")
            or name.endswith("position_embeddings"))


# --- optimizers ----------------------------------------------------------------------------------


class Optimizer:
    """Base class: updates ``.data`` in place from ``.grad`` for ``named_parameters``.

    ``lr_scales`` ({name: factor}) gives parameters their own fraction of the learning rate
    (layer-wise decay when finetuning); the others get 1.

    When the parameters belong to one model's flat buffer (``minivit.nn.FlatParameters``),
    the update runs once over the whole buffer, with a rate and a decay per element
    (parameters of the model that were not given, frozen ones, get rate 0); otherwise once
    per parameter. Either way it is the same update function (``adamw_update``, ``sgd_update``).

    ``master_weights=True`` (float16 training): the optimizer keeps a float32 copy of the
    model's float16 flat buffer and steps it with float32 gradients (``master_grad``, which
    ``minivit.amp.LossScaler.unscale`` fills), then copies it back into the model.
    """

    slots: tuple[str, ...] = ()  # names of the per-element state arrays

    def __init__(self, named_parameters, lr: float, weight_decay: float = 0.0, lr_scales: dict | None = None,
                 master_weights: bool = False):
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
        self.master = self.master_grad = None
        if master_weights:
            if self.flat is None:
                raise ValueError("master_weights needs the parameters of one model (its flat buffer).")
            self.master = self.flat.data.astype("float32")  # the float32 weights the steps update
            self.master_grad = backend.xp.zeros_like(self.master)  # their float32 gradients
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
        data = flat.data if self.master is None else self.master
        given = dict(self.named_parameters)
        decay = xp.zeros_like(data)
        for name in given:
            flat.view(decay, name)[...] = self._decay(name)
        lr_scale = 1.0  # a number while every parameter moves at the full rate: no array to read
        if len(given) < len(flat.names) or self.lr_scales:
            lr_scale = xp.zeros_like(data)  # parameters not given (frozen) do not move
            for name in given:
                flat.view(lr_scale, name)[...] = self.lr_scales.get(name, 1.0)
        grad = flat.grad if self.master is None else self.master_grad
        group = {"data": data, "grad": grad, "lr_scale": lr_scale, "weight_decay": decay}
        group.update({slot: xp.zeros_like(data) for slot in self.slots})
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

    def step(self, skip=None) -> None:
        """One update. ``skip``: a one-element device array; nonzero leaves the weights as they were
        (a float16 step whose gradient overflowed), decided on the device."""
        self.step_count += 1
        for group in self._groups:
            self._update(group, skip)
        if self.master is not None:
            self.flat.data[...] = self.master  # the model computes with the float16 copy

    def _update(self, group: dict, skip) -> None:
        raise NotImplementedError

    def clip_gradients(self, max_norm: float):
        """Clip the gradients this optimizer steps with (the float32 master gradients in float16
        training) to a global norm of at most ``max_norm``; returns the norm before (0-d array)."""
        if self.master is None:
            return clip_grad_norm([parameter for _, parameter in self.named_parameters], max_norm)
        if len(self.named_parameters) == len(self.flat.names):
            return dispatch.clip_by_norm(self.master_grad, max_norm)
        return _clip_arrays([self.flat.view(self.master_grad, name) for name, _ in self.named_parameters], max_norm)

    def weights(self) -> dict:
        """{name: NumPy array}: the float32 master weights, by parameter name (master_weights only)."""
        host = backend.to_numpy(self.master)
        return {name: self.flat.view(host, name).copy() for name in self.flat.names}

    def load_weights(self, state: dict) -> None:
        """Set the master weights (and so the model's float16 copy) from a {name: array} state dict."""
        for name in self.flat.names:
            self.flat.view(self.master, name)[...] = backend.asarray(state[name], dtype="float32")
        self.flat.data[...] = self.master

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
                 nesterov: bool = False, lr_scales: dict | None = None, master_weights: bool = False):
        self.momentum, self.nesterov = momentum, nesterov
        super().__init__(named_parameters, lr, weight_decay, lr_scales, master_weights)
        self.momentum_buffers = self.state["momentum"]

    def _update(self, group: dict, skip) -> None:
        dispatch.sgd_update(group["data"], group["grad"], group["momentum"], self.lr, group["lr_scale"],
                            group["weight_decay"], self.momentum, self.nesterov, self.step_count, skip)


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW (see adamw_update)."""

    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, named_parameters, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.05, lr_scales: dict | None = None, master_weights: bool = False):
        self.beta1, self.beta2 = betas
        self.eps = eps
        super().__init__(named_parameters, lr, weight_decay, lr_scales, master_weights)
        self.exp_avg, self.exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]

    def _update(self, group: dict, skip) -> None:
        dispatch.adamw_update(group["data"], group["grad"], group["exp_avg"], group["exp_avg_sq"], self.lr,
                              group["lr_scale"], group["weight_decay"], self.beta1, self.beta2, self.eps,
                              self.step_count, skip)


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
    parameters = list(parameters)
    flat = parameters[0].flat if parameters else None
    if flat is not None and len(parameters) == len(flat.names) and all(p.flat is flat for p in parameters):
        return dispatch.clip_by_norm(flat.grad, max_norm)
    return _clip_arrays([p.grad for p in parameters], max_norm)


def _clip_arrays(grads: list, max_norm: float):
    """clip_by_norm over several arrays at once (their joint norm)."""
    xp = backend.xp
    total_norm = xp.sqrt(sum(xp.sum(g * g) for g in grads))
    scale = xp.minimum(1.0, max_norm / (total_norm + 1e-6))
    for g in grads:
        g *= scale.astype(g.dtype, copy=False)
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
                    momentum: float = 0.9, freeze: str = "", layer_decay: float = 1.0,
                    master_weights: bool = False) -> Optimizer:
    """The optimizer ``name`` (one of OPTIMIZERS) over the parameters of ``model`` that train.

    ``freeze`` holds parameters fixed (see ``frozen_names``); ``layer_decay`` < 1 gives each layer
    its share of the rate (see ``layer_decay_scales``); ``master_weights`` keeps float32 weights for a
    float16 model (see ``Optimizer``).
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
        return AdamW(trainable, lr=lr, weight_decay=weight_decay, lr_scales=scales, master_weights=master_weights)
    return SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay, lr_scales=scales,
               master_weights=master_weights)
