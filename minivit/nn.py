"""Parameters, the Module base class, and the small building-block modules.

A module owns parameters and caches; its ``forward`` calls forward functions
from ``minivit.ops`` and keeps their caches, its ``backward`` calls the
matching backward functions and *accumulates* parameter gradients (``+=``),
as PyTorch's ``.grad`` does. Call ``zero_grad()`` between steps.
"""

from __future__ import annotations

from collections.abc import Iterator

from minivit import backend
from minivit.ops import (
    dropout_backward,
    dropout_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
)


class Parameter:
    """A trainable array and its gradient, both on the active backend."""

    def __init__(self, data):
        self.data = data
        self.grad = backend.xp.zeros_like(data)

    @property
    def shape(self) -> tuple:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


def new_parameter(host_values, dtype: str) -> Parameter:
    """A Parameter from host (NumPy) values, cast to ``dtype`` and moved to the backend."""
    return Parameter(backend.asarray(host_values.astype(dtype)))


class Module:
    """Base class: finds parameters and sub-modules among the attributes, in definition order."""

    training: bool = True

    def _children(self) -> Iterator[tuple[str, object]]:
        for name, value in vars(self).items():
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

    def zero_grad(self) -> None:
        for parameter in self.parameters():
            parameter.grad.fill(0)

    def train(self, mode: bool = True) -> Module:
        """Training mode: dropout is on. Returns self."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        """Evaluation mode: dropout is off. Returns self."""
        return self.train(False)

    def num_parameters(self) -> int:
        return sum(int(parameter.data.size) for parameter in self.parameters())

    def state_dict(self) -> dict:
        """{name: NumPy array} copies of every parameter, on the host."""
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

    def _pop_cache(self):
        """The cache saved by the last forward; one backward per forward."""
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() was called before forward(): run forward() "
                "first (each forward allows one backward)."
            )
        cache, self._cache = self._cache, None
        return cache


class Linear(Module):
    """out = x @ weight + bias, weight stored (in_features, out_features)."""

    def __init__(self, weight: Parameter, bias: Parameter | None):
        self.weight = weight
        self.bias = bias  # None: no bias (and no parameter by that name)

    def forward(self, x):
        out, self._cache = linear_forward(x, self.weight.data, self._bias_data())
        return out

    def backward(self, dout):
        dx, dweight, dbias = linear_backward(dout, self._pop_cache())
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
        out, self._cache = layernorm_forward(x, self.weight.data, self.bias.data, self.eps)
        return out

    def backward(self, dout):
        dx, dgamma, dbeta = layernorm_backward(dout, self._pop_cache())
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
        self._cache = (mask,)
        return out

    def backward(self, dout):
        (mask,) = self._pop_cache()
        return dropout_backward(dout, mask)
