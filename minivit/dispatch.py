"""The one place that chooses which implementation of each operation runs.

    reference  the plain array math of ``minivit/ops/``: what learners read and what
               the gradient checks prove.
    fast       the fastest available implementation with the same name, signature and
               cache: the kernel registered for it (``@replaces``, ``minivit/kernels/registry.py``)
               in ``minivit/kernels/cpu.py`` on NumPy, in ``minivit/kernels/gpu/`` on CuPy (and on
               its simulation). Each is tested against its reference. An operation without a
               fast kernel runs its reference.
    mine       a learner's own functions (``use_mine``): they replace the reference wherever
               the engine uses it, and the fast kernels are off while they are in.

The operations are ``minivit.ops.OPERATIONS``. The model (``minivit/model.py``,
``minivit/nn.py``), the optimizers and the augmentation call them through this module only,
by their reference names (each name here is made from that list):

    from minivit.dispatch import layernorm_forward
    out, cache = layernorm_forward(x, gamma, beta, eps)

``MINIVIT_KERNELS=reference`` (read at import) or ``minivit.dispatch.use("reference")``
runs the pure reference everywhere; ``"fast"`` (the default) the fastest available.

One hook changes what runs, for profilers and for a learner's functions alike:
``wrap(wrapper)`` makes each call of an operation run ``wrapper(name, function)``, where
``function`` is what would have run (a profiler times it, a learner's version stands in its
place); a ``with`` block, or ``.remove()``, takes the wrapper out.
"""

from __future__ import annotations

import inspect
import os
import sys

from minivit import backend, ops
from minivit.kernels import registry

MODES = ("fast", "reference")
OPERATIONS = ops.OPERATIONS  # every operation the engine runs through this module


def _mode_from_environment() -> str:
    value = os.environ.get("MINIVIT_KERNELS", "fast").strip().lower() or "fast"
    if value not in MODES:
        raise ValueError(f"MINIVIT_KERNELS={value!r}: choose one of {', '.join(MODES)}.")
    return value


mode: str = _mode_from_environment()


def use(new_mode: str) -> str:
    """Run the fast kernels ("fast", the default) or the pure reference ("reference"); returns the old mode."""
    global mode
    if new_mode not in MODES:
        raise ValueError(f"Unknown kernel mode {new_mode!r}: choose one of {', '.join(MODES)}.")
    previous, mode = mode, new_mode
    return previous


def reference(name: str):
    """The reference implementation of operation ``name`` (``minivit.ops.<name>``)."""
    if name not in OPERATIONS:
        raise ValueError(f"{name!r} is not an operation the engine dispatches; known: {', '.join(OPERATIONS)}.")
    return getattr(ops, name)


def fast_kernels(backend_name: str | None = None) -> dict:
    """{name: fast function} for a backend (the active one by default); empty where none can run."""
    return registry.kernels(_device(backend_name or backend.name))


def _device(backend_name: str) -> str:
    return "cpu" if backend_name == "numpy" else "gpu"


def implementation(name: str):
    """The function that runs for operation ``name`` now: the fast kernel or the reference, as the
    hooks in effect (a learner's functions, a profiler's wrapper) change it."""
    if not _hooks:
        return _fast_or_reference(name)
    function = _replaced(name) if _replaces_any() else _fast_or_reference(name)
    for hook in _hooks:
        if not hook.replace and name in hook.names:
            function = hook.wrapper(name, function)
    return function


def _fast_or_reference(name: str):
    if mode == "fast":
        kernel = registry.kernel(name, _device(backend.name))
        if kernel is not None:
            return kernel
    return reference(name)


def _dispatcher(name: str):
    def run(*args, **kwargs):
        return implementation(name)(*args, **kwargs)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = (f"minivit.ops.{name}, or the fast kernel that replaces it "
                   "(minivit.dispatch chooses; same signature and cache).")
    run.__signature__ = inspect.signature(reference(name))
    return run


# The engine's entry points, one per operation of minivit.ops.OPERATIONS, by its name.
for _name in OPERATIONS:
    globals()[_name] = _dispatcher(_name)
del _name


# --- the hook: profilers and a learner's functions ------------------------------------------------------


class Hook:
    """A wrapper in effect (what ``wrap`` returns): leaving a ``with`` block, or ``remove()``, takes it out."""

    def __init__(self, wrapper, names, replace: bool):
        self.wrapper, self.names, self.replace = wrapper, frozenset(names), replace

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()
        return False

    def remove(self) -> None:
        if self in _hooks:
            _hooks.remove(self)
            _reach_into_references()


_hooks: list[Hook] = []  # in the order they were put in


def wrap(wrapper, names=None, replace: bool = False) -> Hook:
    """Make each call of an operation run ``wrapper(name, function)(...)`` (``function``: what runs
    without this hook), for the operations ``names`` (all by default). A profiler times it:

        with dispatch.wrap(lambda name, function: timed(name, function)):
            ...  # every operation the model, the loss and the optimizer call is timed, once per call

    ``replace=True`` puts the wrapper's function in the reference's place, as ``use_mine`` does:
    the reference composites call it too (attention_heads_forward calls attention_forward), and the
    fast kernels are off while it is in (a kernel does not make the reference's inner calls). A
    profiler's wrapper (``replace=False``) sees what runs, the learner's function included, and
    only the calls made through this module: a composite's inner calls are not counted twice.
    """
    names = OPERATIONS if names is None else ([names] if isinstance(names, str) else list(names))
    unknown = [name for name in names if name not in OPERATIONS]
    if unknown:
        raise ValueError(f"wrap: {', '.join(map(repr, unknown))} is not one of the engine's operations; "
                         f"known: {', '.join(OPERATIONS)}.")
    hook = Hook(wrapper, names, replace)
    _hooks.append(hook)
    _reach_into_references()
    return hook


def _replaces_any() -> bool:
    return any(hook.replace for hook in _hooks)


def _replaced(name: str):
    """The reference of ``name`` with the replacing hooks applied (the learner's function, if any)."""
    function = reference(name)
    for hook in _hooks:
        if hook.replace and name in hook.names:
            function = hook.wrapper(name, function)
    return function


_bound: dict = {}  # name -> what the ops modules' globals hold in the reference's place now


def _reach_into_references() -> None:
    """Point the references' own names inside the ops modules (the defining one included, so that
    attention_heads_forward, which calls attention_forward in the same file, calls the replacement)
    at the replacing hooks' functions, and back at the reference where none replaces it any more.
    The package's names (``minivit.ops.softmax_backward``, ``dispatch.reference``) stay the
    reference: the checks compare against them."""
    replaced = {name: _replaced(name) for hook in _hooks if hook.replace for name in hook.names}
    global _bound
    for name in set(_bound) | set(replaced):
        original = reference(name)
        replacement = replaced.get(name, original)
        for module_name, module in list(sys.modules.items()):
            if module is None or not module_name.startswith("minivit.ops."):
                continue
            if getattr(module, name, None) in (original, _bound.get(name)):
                setattr(module, name, replacement)
    _bound = replaced


# --- a learner's own functions ----------------------------------------------------------------------


class _PutBack:
    """What use_mine returns: leaving a ``with`` block puts back the learner's functions in before it."""

    def __init__(self, previous: list[Hook]):
        self._previous = previous

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for hook in [hook for hook in _hooks if hook.replace and hook not in self._previous]:
            hook.remove()
        for hook in self._previous:
            if hook not in _hooks:
                _hooks.append(hook)
        _reach_into_references()
        return False


def use_mine(**functions) -> _PutBack:
    """Put a learner's functions into the engine, by reference name, e.g.

        with dispatch.use_mine(softmax_backward=my_softmax_backward, layernorm_backward=my_layernorm_backward):
            ...  # forward/backward, gradient checks and training use them

    Each function must take the reference's arguments and return what it returns (same
    cache). Inside, the reference composites that call an operation (attention calls the
    softmax; all heads call attention) call the learner's version too, and the fast kernels
    are off (``wrap(..., replace=True)``). As a plain call it stays in effect until
    ``use_mine()`` is called with no arguments.
    """
    for name, function in functions.items():
        _check_signature(name, function)
    previous = [hook for hook in _hooks if hook.replace]
    if functions:
        wrap(lambda name, _reference: functions[name], functions, replace=True)
    else:
        for hook in previous:
            hook.remove()
    return _PutBack(previous)


def mine() -> dict:
    """The learner's functions in effect now, by name."""
    return {name: _replaced(name) for hook in _hooks if hook.replace for name in hook.names}


def _check_signature(name: str, function) -> None:
    if name not in OPERATIONS:
        raise ValueError(f"use_mine: {name!r} is not one of the engine's operations. Choose from: "
                         f"{', '.join(sorted(OPERATIONS))}.")
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
                        f"the same arguments (see minivit.ops.{name}) and return what it returns.")
