"""The one place that chooses which implementation of each operation runs.

    reference  the plain array math of ``minivit/ops/``: what learners read and what
               the gradient checks prove.
    fast       the fastest available implementation with the same name, signature and
               cache: ``minivit/kernels/cpu.py`` on NumPy, ``minivit/kernels/gpu.py`` on CuPy
               (and on its simulation). Each is tested against its reference. An operation
               without a fast kernel runs its reference.
    mine       a learner's own functions (``use_mine``): they replace the reference wherever
               the engine uses it, and the fast kernels are off while they are in.

The model (``minivit/model.py``, ``minivit/nn.py``), the optimizers and the augmentation
call operations through this module only, by their reference names:

    from minivit.dispatch import layernorm_forward
    out, cache = layernorm_forward(x, gamma, beta, eps)

``MINIVIT_KERNELS=reference`` (read at import) or ``minivit.dispatch.use("reference")``
runs the pure reference everywhere; ``"fast"`` (the default) the fastest available.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from minivit import backend

MODES = ("fast", "reference")

# Every operation the engine runs through this module, and the module holding its reference.
REFERENCES = {
    **{name: "minivit.ops" for name in (
        "im2col", "col2im",
        "linear_forward", "linear_backward",
        "cls_concat_forward", "cls_concat_backward",
        "position_add_forward", "position_add_backward",
        "interpolate_position_forward", "interpolate_position_backward",
        "dropout_forward", "dropout_backward",
        "layernorm_forward", "layernorm_backward",
        "gelu_forward", "gelu_backward",
        "softmax_forward", "softmax_backward",
        "attention_forward", "attention_backward",
        "attention_heads_forward", "attention_heads_backward",
        "multi_head_attention_forward", "multi_head_attention_backward",
        "residual_forward", "residual_backward",
        "pool_forward", "pool_backward",
        "cross_entropy_forward", "cross_entropy_backward",
    )},
    **{name: "minivit.ops" for name in ("adamw_update", "sgd_update", "clip_by_norm", "unscale_gradients",
                                        "update_loss_scale", "crop_flip_normalize", "rand_augment",
                                        "sample_uniform")},
}


def _mode_from_environment() -> str:
    value = os.environ.get("MINIVIT_KERNELS", "fast").strip().lower() or "fast"
    if value not in MODES:
        raise ValueError(f"MINIVIT_KERNELS={value!r}: choose one of {', '.join(MODES)}.")
    return value


mode: str = _mode_from_environment()
_mine: dict = {}  # name -> a learner's function (use_mine)
_fast_tables: dict = {}  # backend name -> {name: fast function}


def use(new_mode: str) -> str:
    """Run the fast kernels ("fast", the default) or the pure reference ("reference"); returns the old mode."""
    global mode
    if new_mode not in MODES:
        raise ValueError(f"Unknown kernel mode {new_mode!r}: choose one of {', '.join(MODES)}.")
    previous, mode = mode, new_mode
    return previous


def reference(name: str):
    """The reference implementation of operation ``name``."""
    if name not in REFERENCES:
        raise ValueError(f"{name!r} is not an operation the engine dispatches; known: {', '.join(REFERENCES)}.")
    return getattr(importlib.import_module(REFERENCES[name]), name)


def fast_kernels(backend_name: str | None = None) -> dict:
    """{name: fast function} for a backend (the active one by default); empty where none can run."""
    backend_name = backend_name or backend.name
    if backend_name not in _fast_tables:
        try:
            if backend_name == "numpy":
                from minivit.kernels.cpu import KERNELS
            else:
                from minivit.kernels.gpu import KERNELS
        except ImportError:  # numba missing: the reference runs
            KERNELS = {}
        _fast_tables[backend_name] = KERNELS
    return _fast_tables[backend_name]


def implementation(name: str):
    """The function that runs for operation ``name`` now: the learner's, the fast kernel, or the reference."""
    if name in _mine:
        return _mine[name]
    if mode == "fast" and not _mine:
        kernel = fast_kernels().get(name)
        if kernel is not None:
            return kernel
    return reference(name)


def _dispatcher(name: str):
    def run(*args, **kwargs):
        return implementation(name)(*args, **kwargs)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = (f"{REFERENCES[name]}.{name}, or the fast kernel that replaces it "
                   "(minivit.dispatch chooses; same signature and cache).")
    return run


# The engine's entry points, one per operation.
im2col = _dispatcher("im2col")
col2im = _dispatcher("col2im")
linear_forward = _dispatcher("linear_forward")
linear_backward = _dispatcher("linear_backward")
cls_concat_forward = _dispatcher("cls_concat_forward")
cls_concat_backward = _dispatcher("cls_concat_backward")
position_add_forward = _dispatcher("position_add_forward")
position_add_backward = _dispatcher("position_add_backward")
interpolate_position_forward = _dispatcher("interpolate_position_forward")
interpolate_position_backward = _dispatcher("interpolate_position_backward")
dropout_forward = _dispatcher("dropout_forward")
dropout_backward = _dispatcher("dropout_backward")
layernorm_forward = _dispatcher("layernorm_forward")
layernorm_backward = _dispatcher("layernorm_backward")
gelu_forward = _dispatcher("gelu_forward")
gelu_backward = _dispatcher("gelu_backward")
softmax_forward = _dispatcher("softmax_forward")
softmax_backward = _dispatcher("softmax_backward")
attention_forward = _dispatcher("attention_forward")
attention_backward = _dispatcher("attention_backward")
attention_heads_forward = _dispatcher("attention_heads_forward")
attention_heads_backward = _dispatcher("attention_heads_backward")
multi_head_attention_forward = _dispatcher("multi_head_attention_forward")
multi_head_attention_backward = _dispatcher("multi_head_attention_backward")
residual_forward = _dispatcher("residual_forward")
residual_backward = _dispatcher("residual_backward")
pool_forward = _dispatcher("pool_forward")
pool_backward = _dispatcher("pool_backward")
cross_entropy_forward = _dispatcher("cross_entropy_forward")
cross_entropy_backward = _dispatcher("cross_entropy_backward")
adamw_update = _dispatcher("adamw_update")
sgd_update = _dispatcher("sgd_update")
clip_by_norm = _dispatcher("clip_by_norm")
unscale_gradients = _dispatcher("unscale_gradients")
update_loss_scale = _dispatcher("update_loss_scale")
crop_flip_normalize = _dispatcher("crop_flip_normalize")
rand_augment = _dispatcher("rand_augment")
sample_uniform = _dispatcher("sample_uniform")


# --- a learner's own functions ----------------------------------------------------------------------


class _MineHandle:
    """What use_mine returns: leaving a ``with`` block puts back what was in before it."""

    def __init__(self, previous: dict):
        self._previous = previous

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        _install(self._previous)
        return False


def use_mine(**functions) -> _MineHandle:
    """Put a learner's functions into the engine, by reference name, e.g.

        with dispatch.use_mine(softmax_backward=my_softmax_backward, layernorm_backward=my_layernorm_backward):
            ...  # forward/backward, gradient checks and training use them

    Each function must take the reference's arguments and return what it returns (same
    cache). Inside, the reference composites that call an operation (attention calls the
    softmax; all heads call attention) call the learner's version too, and the fast kernels
    are off. As a plain call
    it stays in effect until ``use_mine()`` is called with no arguments.
    """
    for name, function in functions.items():
        _check_signature(name, function)
    previous = dict(_mine)
    _install({**_mine, **functions} if functions else {})
    return _MineHandle(previous)


def mine() -> dict:
    """The learner's functions in effect now, by name."""
    return dict(_mine)


def _check_signature(name: str, function) -> None:
    if name not in REFERENCES:
        raise ValueError(f"use_mine: {name!r} is not one of the engine's operations. Choose from: "
                         f"{', '.join(sorted(REFERENCES))}.")
    if not callable(function):
        raise TypeError(f"use_mine: {name} must be a function; got {type(function).__name__}.")
    expected = inspect.signature(reference(name))
    try:
        got = inspect.signature(function)
    except (TypeError, ValueError):
        return  # a builtin or a C function: nothing to compare
    positional = [p for p in got.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_varargs = any(p.kind == p.VAR_POSITIONAL for p in got.parameters.values())
    required = [p for p in positional if p.default is p.empty]
    needed = [p for p in expected.parameters.values() if p.default is p.empty]
    if len(required) > len(expected.parameters) or (len(positional) < len(needed) and not takes_varargs):
        raise TypeError(f"use_mine: your {name}{got} does not match the engine's {name}{expected}: it must take "
                        f"the same arguments (see {REFERENCES[name]}) and return what it returns.")


def _install(functions: dict) -> None:
    """Make ``functions`` the learner's set: rebind the references' names inside the ops modules, the
    defining one included (so every composite calls the learner's version: attention_heads_forward
    calls attention_forward in the same file), and undo the bindings of names no longer in the set.
    The package's own names (``minivit.ops.softmax_backward``, ``dispatch.reference``) stay the
    reference: the checks compare against them."""
    for name in set(_mine) | set(functions):
        original = reference(name)
        replacement = functions.get(name, original)
        for module_name, module in list(sys.modules.items()):
            if module is None or not module_name.startswith("minivit.ops."):
                continue
            if getattr(module, name, None) in (original, _mine.get(name)):
                setattr(module, name, replacement)
    _mine.clear()
    _mine.update(functions)
