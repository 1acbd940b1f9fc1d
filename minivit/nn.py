"""Parameters, the Module base class, the small building-block modules, and flat parameter buffers.

A module owns parameters and caches; its ``forward`` calls operations (through
``minivit.dispatch``, which runs the reference in ``minivit/ops`` or a fast kernel) and
keeps their caches, its ``backward`` calls the matching backward functions and
*accumulates* parameter gradients (``+=``), as PyTorch's ``.grad`` does. Call
``zero_grad()`` between steps.

A model keeps all its parameters in one flat array and all their gradients in another
(``FlatParameters``); each ``Parameter``'s ``.data`` and ``.grad`` is a view into them.
Then zeroing the gradients is one fill, the gradient norm one reduction, and an
optimizer step one pass over one array: on a GPU, a handful of kernel launches instead
of several per parameter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from minivit import backend, dispatch
from minivit.dispatch import (
    dropout_backward,
    dropout_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
    residual_layernorm_inference,
)

# --- inference mode ---------------------------------------------------------------------------------

_keep_activations = True


@contextmanager
def no_grad():
    """Forward passes inside keep no activations, so no backward can follow (evaluation, inference).

        with minivit.no_grad():
            logits = model.forward(pixel_values)
    """
    global _keep_activations
    previous, _keep_activations = _keep_activations, False
    try:
        yield
    finally:
        _keep_activations = previous


def grad_enabled() -> bool:
    """False inside ``no_grad()``."""
    return _keep_activations


def inference(module, operation: str) -> bool:
    """Whether ``module``'s forward runs ``operation``, one of the inference-only operations
    (``minivit/ops/linear_gelu.py``, ``residual_layernorm.py``: compositions a fast kernel fuses):
    inside ``no_grad()``, with ``module`` and all its sub-modules in eval mode (no backward can
    follow, dropout is off), and where a fast kernel runs it. Elsewhere (the reference, a learner's
    functions, a backend without that kernel) the forward runs the operations it composes, as in
    training."""
    if _keep_activations or any(sub.training for sub in module.modules()):
        return False
    return dispatch.implementation(operation) is not dispatch.reference(operation)


# --- parameters --------------------------------------------------------------------------------------


class Parameter:
    """A trainable array and its gradient, both on the active backend.

    In a model both are views into the model's flat buffers: assigning ``p.data = values``
    copies the values into place, so the buffers stay whole.
    """

    def __init__(self, data, grad=None):
        self._data = data
        self._grad = backend.xp.zeros_like(data) if grad is None else grad
        self.flat = None  # the FlatParameters holding it, if any
        self.stored_with = None  # (group's data, group's grad, position, group size) when stored side by side

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, values) -> None:
        if values is not self._data:
            self._data[...] = values

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, values) -> None:
        if values is not self._grad:
            self._grad[...] = values

    @property
    def shape(self) -> tuple:
        return self._data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self._data.shape}, dtype={self._data.dtype})"


def new_parameter(host_values, dtype: str) -> Parameter:
    """A Parameter from host (NumPy) values, cast to ``dtype`` and moved to the backend."""
    return Parameter(backend.asarray(host_values.astype(dtype)))


def side_by_side(*parameters: Parameter):
    """The parameters' values joined along their last axis, e.g. q, k, v weights (D, D) -> (D, 3D).

    Where a model stores them side by side (FlatParameters does for ``stored_side_by_side``
    groups) this is a view of that storage and costs nothing; otherwise a concatenated copy.
    """
    group = parameters[0].stored_with
    if group is not None and all(p.stored_with is not None and p.stored_with[0] is group[0] and
                                 p.stored_with[2] == position for position, p in enumerate(parameters)) \
            and len(parameters) == group[3]:
        return group[0]
    return backend.xp.concatenate([p.data for p in parameters], axis=-1)


def add_side_by_side(parameters: list[Parameter], dgroup) -> None:
    """Accumulate the gradient of ``side_by_side(*parameters)`` into the parameters' own gradients."""
    group = parameters[0].stored_with
    if group is not None and side_by_side(*parameters) is group[0]:
        group_grad = group[1]
        group_grad += dgroup  # one addition into the group's gradient storage
        return
    start = 0
    for parameter in parameters:
        width = parameter.shape[-1]
        parameter.grad += dgroup[..., start:start + width]
        start += width


# --- modules -------------------------------------------------------------------------------------------


class Module:
    """Base class: finds parameters and sub-modules among the attributes, in definition order.

    Attributes whose names start with "_" are private: not parameters, not children.
    """

    training: bool = True

    def _children(self) -> Iterator[tuple[str, object]]:
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (Parameter, Module)):
                yield name, value
            elif isinstance(value, list) and value and all(isinstance(item, Module) for item in value):
                for index, item in enumerate(value):
                    yield f"{name}.{index}", item

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(name, Parameter) pairs, e.g. ("encoder.layers.0.attention.q_proj.weight", ...)."""
        for name, child in self._children():
            if isinstance(child, Parameter):
                yield prefix + name, child
            else:
                yield from child.named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        return [parameter for _, parameter in self.named_parameters()]

    def modules(self) -> Iterator[Module]:
        yield self
        for _, child in self._children():
            if isinstance(child, Module):
                yield from child.modules()

    def stored_side_by_side(self) -> list[list[Parameter]]:
        """Groups of this module's own parameters to store side by side (see ``side_by_side``)."""
        return []

    def zero_grad(self) -> None:
        flat = getattr(self, "_flat", None)
        if flat is not None:
            flat.grad.fill(0)  # every parameter's gradient at once
            return
        for parameter in self.parameters():
            parameter.grad.fill(0)

    def train(self, mode: bool = True) -> Module:
        """Training mode: dropout is on. Returns self."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        """Evaluation mode: dropout is off. Returns self. (To keep no activations, see ``no_grad``.)"""
        return self.train(False)

    def num_parameters(self) -> int:
        return sum(int(parameter.data.size) for parameter in self.parameters())

    def state_dict(self) -> dict:
        """{name: NumPy array} copies of every parameter, on the host."""
        flat = getattr(self, "_flat", None)
        if flat is not None:  # one copy from the device for all of them
            host = backend.to_numpy(flat.data)
            return {name: flat.view(host, name).copy() for name in flat.names}
        return {name: backend.to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Copy arrays (NumPy or backend) into the parameters, by name.

        Every parameter must be given with its exact shape, and nothing else:
        missing, unexpected and misshapen tensors are all listed in one error.
        """
        parameters = dict(self.named_parameters())
        missing = [name for name in parameters if name not in state_dict]
        unexpected = [name for name in state_dict if name not in parameters]
        misshapen = [
            f"{name}: expected {parameters[name].shape}, got {tuple(state_dict[name].shape)}"
            for name in parameters
            if name in state_dict and tuple(state_dict[name].shape) != parameters[name].shape
        ]
        problems = []
        if missing:
            problems.append(f"missing tensors: {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected tensors: {', '.join(unexpected)}")
        if misshapen:
            problems.append(f"tensors with the wrong shape: {'; '.join(misshapen)}")
        if problems:
            raise ValueError(
                f"Cannot load this state dict into {type(self).__name__}: " + " | ".join(problems)
                + ". Check that it was saved from a model with the same config "
                "(a transformers state dict needs minivit.convert.from_hf first)."
            )
        for name, parameter in parameters.items():
            parameter.data[...] = backend.asarray(state_dict[name], dtype=parameter.data.dtype)

    # --- forward/backward bookkeeping -------------------------------------------------
    _cache = None

    def _keep(self, cache) -> None:
        """Keep the forward's cache for the backward (nothing is kept inside ``no_grad``)."""
        self._cache = cache if _keep_activations else None

    def _pop_cache(self):
        """The cache saved by the last forward; one backward per forward."""
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() was called before forward() (or after a forward inside "
                "minivit.no_grad(), which keeps nothing): run forward() first; each forward allows one backward."
            )
        cache, self._cache = self._cache, None
        return cache


def backward_of_linear(dout, cache, input_grad: bool = True):
    """``dispatch.linear_backward``, asking for no input gradient when none is needed; a learner's
    own linear_backward (``use_mine``) is called as the reference's plain contract, (dout, cache)."""
    if input_grad or "linear_backward" in dispatch.mine():
        dx, dweight, dbias = linear_backward(dout, cache)
        return (dx if input_grad else None), dweight, dbias
    return linear_backward(dout, cache, input_grad=False)


class Linear(Module):
    """out = x @ weight + bias, weight stored (in_features, out_features)."""

    def __init__(self, weight: Parameter, bias: Parameter | None):
        self.weight = weight
        self.bias = bias  # None: no bias (and no parameter by that name)

    def forward(self, x):
        out, cache = linear_forward(x, self.weight.data, self._bias_data())
        self._keep(cache)
        return out

    def backward(self, dout, input_grad: bool = True):
        """Accumulates the parameters' gradients; returns dx (None when ``input_grad`` is False)."""
        dx, dweight, dbias = backward_of_linear(dout, self._pop_cache(), input_grad)
        self.weight.grad += dweight
        if dbias is not None:
            self.bias.grad += dbias
        return dx

    def _bias_data(self):
        return None if self.bias is None else self.bias.data


class LayerNorm(Module):
    def __init__(self, weight: Parameter, bias: Parameter, eps: float):
        self.weight = weight  # gamma
        self.bias = bias  # beta
        self.eps = eps

    def forward(self, x):
        out, cache = layernorm_forward(x, self.weight.data, self.bias.data, self.eps)
        self._keep(cache)
        return out

    def add_and_normalize(self, skip, branch):
        """Inference only: (skip + branch, this LayerNorm of it), in one operation (nothing kept)."""
        return residual_layernorm_inference(skip, branch, self.weight.data, self.bias.data, self.eps)

    def backward(self, dout, token: int | None = None):
        """Accumulates dgamma, dbeta; returns dx. ``token``: ``dout`` (B, D) is the gradient of that
        token only (the others' is zero, as after CLS pooling), and so is the dx returned: the
        backward runs on those B rows, not all B x T (a zero row adds nothing to dgamma, dbeta and
        has a zero dx)."""
        cache = self._pop_cache()
        if token is not None:
            xhat, rstd, gamma = cache
            cache = (xhat[:, token], rstd[:, token], gamma)  # (B, D), (B, 1)
        dx, dgamma, dbeta = layernorm_backward(dout, cache)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx


class Dropout(Module):
    """Inverted dropout; a no-op in eval mode. ``rng`` is shared with the whole model."""

    def __init__(self, p: float, rng):
        self.p = p
        self.rng = rng

    def forward(self, x):
        out, mask = dropout_forward(x, self.p, self.rng, self.training)
        self._keep((mask,))
        return out

    def backward(self, dout):
        (mask,) = self._pop_cache()
        return dropout_backward(dout, mask)


# --- flat parameter buffers ------------------------------------------------------------------------------


class FlatParameters:
    """Every parameter of a module in one flat array, ``data``, and every gradient in ``grad``.

    Parameters are laid out in ``named_parameters()`` order; the groups a module names in
    ``stored_side_by_side()`` (e.g. the q, k and v weights, (D, D) each) are laid out as
    one array joined along the last axis ((D, 3D)), so that one product can use them all.
    After this, each Parameter's ``.data`` and ``.grad`` are views into the two arrays.
    Names, shapes and state dicts are unchanged.
    """

    def __init__(self, module: Module, dtype: str):
        xp = backend.xp
        self.names = [name for name, _ in module.named_parameters()]
        parameters = dict(module.named_parameters())
        owner_of = {id(p): name for name, p in parameters.items()}
        group_of = {}  # name of a group's first member -> the group's member names
        grouped = set()
        for submodule in module.modules():
            for group in submodule.stored_side_by_side():
                members = [owner_of[id(p)] for p in group]
                group_of[members[0]] = members
                grouped.update(members)

        units = []  # (member names, region shape): one region per group or lone parameter
        for name in self.names:
            if name in group_of:
                members = group_of[name]
                shapes = [parameters[member].shape for member in members]
                units.append((members, (*shapes[0][:-1], sum(shape[-1] for shape in shapes))))
            elif name not in grouped:
                units.append(([name], parameters[name].shape))
        self.size = sum(math.prod(shape) for _, shape in units)
        self.data = xp.empty(self.size, dtype=dtype)
        self.grad = xp.zeros(self.size, dtype=dtype)
        self._layout = {}  # name -> (offset, region shape, (start, stop) along the last axis, or None)
        offset = 0
        for members, region_shape in units:
            start = 0
            for member in members:
                width = parameters[member].shape[-1]
                self._layout[member] = (offset, region_shape, (start, start + width) if len(members) > 1 else None)
                start += width
            offset += math.prod(region_shape)

        for name, parameter in parameters.items():
            values = parameter.data
            parameter._data, parameter._grad = self.view(self.data, name), self.view(self.grad, name)
            parameter._data[...] = values
            parameter.flat = self
        for members, region_shape in units:
            if len(members) > 1:
                offset = self._layout[members[0]][0]
                group_data = self.data[offset:offset + math.prod(region_shape)].reshape(region_shape)
                group_grad = self.grad[offset:offset + math.prod(region_shape)].reshape(region_shape)
                for position, member in enumerate(members):
                    parameters[member].stored_with = (group_data, group_grad, position, len(members))

    def view(self, flat_array, name: str):
        """The part of ``flat_array`` (any array laid out as ``data``) that belongs to parameter ``name``."""
        offset, region_shape, columns = self._layout[name]
        region = flat_array[offset:offset + math.prod(region_shape)].reshape(region_shape)
        return region if columns is None else region[..., columns[0]:columns[1]]

    def views(self, flat_array) -> dict:
        """{name: view} of ``flat_array`` for every parameter."""
        return {name: self.view(flat_array, name) for name in self.names}
