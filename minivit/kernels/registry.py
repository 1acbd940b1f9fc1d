"""Which fast kernel replaces which reference: one table, filled by one decorator.

    from minivit.kernels.registry import replaces

    @replaces("gelu_forward")                # in minivit/kernels/gpu/gelu.py
    def gelu_forward(x, approximate: str = "none"):
        ...

A kernel names the operation of ``minivit.ops`` it replaces (one of ``ops.OPERATIONS``) and
takes the same arguments, under the same names and defaults: the decorator compares the two
signatures when the kernel's module is imported and raises TypeError if they differ, so a
kernel that has drifted from its reference never loads. The kernel runs for the arrays of its
device, which its package gives: ``minivit.kernels.cpu`` for NumPy's, ``minivit.kernels.gpu``
(every module in it) for CuPy's and the simulated GPU's. Registering is the whole of adding a
kernel: ``minivit.dispatch`` reads this table (``kernels(device)``), and the kernel tests
iterate over it.
"""

from __future__ import annotations

import importlib
import inspect

from minivit import ops

# The devices a kernel can run on, and the package that holds their kernels.
PACKAGES = {"cpu": "minivit.kernels.cpu", "gpu": "minivit.kernels.gpu"}

_table: dict[str, dict] = {device: {} for device in PACKAGES}  # device -> {operation name: kernel}
_imported: set = set()  # the devices whose package has been imported


def references() -> dict:
    """{name: reference function} for every operation a kernel may replace (``minivit.ops.OPERATIONS``)."""
    return {name: getattr(ops, name) for name in ops.OPERATIONS}


def device_of(module_name: str) -> str | None:
    """The device whose package holds module ``module_name`` ("cpu", "gpu"), or None."""
    for device, package in PACKAGES.items():
        if module_name == package or module_name.startswith(package + "."):
            return device
    return None


def _parameters(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _arguments(function) -> str:
    """The signature as a reader compares two: names and defaults, "(x, approximate='none')"."""
    signature = inspect.signature(function)
    return str(signature.replace(parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
                                 return_annotation=signature.empty))


def check_signature(name: str, kernel, reference) -> None:
    """Raise TypeError unless ``kernel`` takes the arguments of ``reference`` (names, kinds, defaults)."""
    if _parameters(kernel) != _parameters(reference):
        raise TypeError(f"{kernel.__module__}.{kernel.__qualname__}{_arguments(kernel)} cannot replace "
                        f"{reference.__module__}.{name}{_arguments(reference)}: a kernel takes the "
                        "reference's arguments, with the same names and defaults, and returns what it returns.")


def replaces(name: str, device: str | None = None):
    """Register the decorated function as the ``device``'s fast kernel for operation ``name``.

    ``device`` ("cpu" or "gpu") defaults to the one whose package holds the function's module.
    Raises ValueError for an unknown operation or device, or a second kernel for the same one;
    TypeError if the signature differs from the reference's. Returns the function unchanged.
    """
    def register(kernel):
        where = device or device_of(kernel.__module__)
        if where not in PACKAGES:
            raise ValueError(f"@replaces({name!r}) on {kernel.__module__}.{kernel.__qualname__}: give the device it "
                             f"runs on (device= one of {', '.join(PACKAGES)}); kernels inside "
                             f"{' or '.join(PACKAGES.values())} get it from their package.")
        known = references()
        if name not in known:
            raise ValueError(f"@replaces({name!r}) on {kernel.__module__}.{kernel.__qualname__}: minivit.ops has no "
                             f"operation {name!r} (minivit.ops.OPERATIONS: {', '.join(known)}).")
        check_signature(name, kernel, known[name])
        registered = _table[where].get(name)
        if registered is not None and _key(registered) != _key(kernel):  # (the same function reloaded is fine)
            raise ValueError(f"@replaces({name!r}): {registered.__module__}.{registered.__qualname__} already "
                             f"replaces it on the {where}; remove one of the two.")
        _table[where][name] = kernel
        return kernel

    return register


def _key(function) -> tuple[str, str]:
    return function.__module__, function.__qualname__


def remove(name: str, device: str) -> None:
    """Take the ``device``'s kernel for ``name`` out of the table (the reference runs in its place)."""
    _table[device].pop(name, None)


def kernels(device: str) -> dict:
    """{operation name: kernel} for ``device``, its package imported (which registers its kernels);
    empty where the package cannot load (the CPU's needs numba)."""
    return dict(_loaded(device))


def kernel(name: str, device: str):
    """The ``device``'s kernel for operation ``name``, or None (what minivit.dispatch asks on every call)."""
    return _loaded(device).get(name)


def _loaded(device: str) -> dict:
    if device not in _imported:
        if device not in PACKAGES:
            raise ValueError(f"Unknown device {device!r}: choose one of {', '.join(PACKAGES)}.")
        try:
            importlib.import_module(PACKAGES[device])
        except ImportError:  # numba missing: the reference runs
            _table[device].clear()
        _imported.add(device)
    return _table[device]
