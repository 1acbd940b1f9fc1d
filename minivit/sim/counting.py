"""What the simulated GPU counts: launches, host synchronisations, copies across the bus, by phase.

Every operation of ``minivit.sim.arrays`` that a GPU would run as a kernel calls ``launch`` with
the ``Launch`` record that describes it (``minivit.sim.launches``); the record is kept, with the
phase and the call site, for the cost model (``records()``). Host reads call ``sync``, uploads
and downloads ``copy_to_device`` / ``copy_to_host``.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from contextlib import contextmanager

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_SKIPPED = (_PACKAGE + os.sep, os.path.join("minivit", "backend.py"), "contextlib.py")


class _Counters:
    def __init__(self):
        self.arithmetic = True  # False inside costs_only(): products and erf skip their arithmetic
        self.reset()

    def reset(self):
        self.launches = 0
        self.syncs = 0
        self.to_device = 0
        self.to_host = 0
        self.bytes_to_device = 0
        self.bytes_to_host = 0
        self.sync_sites: list[str] = []
        self.by_phase: Counter = Counter()
        self.by_kind: Counter = Counter()
        self.records: list = []  # one Launch per launch, in order
        self.phase = "other"
        self.paused = 0  # > 0 while a simulated CUDA kernel runs its reference


_counters = _Counters()


def counters() -> dict:
    """A snapshot of everything counted since the last ``reset_counters()``."""
    c = _counters
    return {"launches": c.launches, "syncs": c.syncs, "to_device": c.to_device, "to_host": c.to_host,
            "bytes_to_device": c.bytes_to_device, "bytes_to_host": c.bytes_to_host,
            "sync_sites": list(c.sync_sites), "by_phase": dict(c.by_phase), "by_kind": dict(c.by_kind)}


def records() -> list:
    """Every launch since the last reset, in order: ``minivit.sim.launches.Launch`` records with the
    phase and call site filled in."""
    return list(_counters.records)


def reset_counters() -> None:
    _counters.reset()


def launch(record, count: int = 1) -> None:
    """Count ``count`` launches of the kind ``record.kind`` and keep the record (``count`` copies of it)."""
    if _counters.paused:
        return
    _counters.launches += count
    _counters.by_phase[_counters.phase] += count
    _counters.by_kind[record.kind] += count
    record.phase = _counters.phase
    record.site = caller()
    _counters.records.extend([record] * count)


def caller() -> str:
    """'file:line in function' of the first frame outside this package, minivit/backend.py, contextlib
    and a kernel's ``__call__``: the code that asked for the launch."""
    frame = sys._getframe(1)
    while frame is not None and (os.path.abspath(frame.f_code.co_filename).startswith(_SKIPPED[0])
                                 or frame.f_code.co_filename.endswith(_SKIPPED[1:])
                                 or frame.f_code.co_name == "__call__"):  # a CudaKernel: its caller says more
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.relpath(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}"


def sync(what: str) -> None:
    if _counters.paused:
        return
    _counters.syncs += 1
    _counters.sync_sites.append(f"{caller()} ({what})")


def copy_to_host(nbytes: int) -> None:
    if _counters.paused:
        return
    _counters.to_host += 1
    _counters.bytes_to_host += int(nbytes)


def copy_to_device(nbytes: int) -> None:
    if _counters.paused:
        return
    _counters.to_device += 1
    _counters.bytes_to_device += int(nbytes)


@contextmanager
def phase(name: str):
    """Count the launches made inside under ``name`` (in ``counters()["by_phase"]``)."""
    previous, _counters.phase = _counters.phase, name
    try:
        yield
    finally:
        _counters.phase = previous


@contextmanager
def kernel_launch(name: str, launches: int = 1, record=None):
    """Run a CUDA kernel's reference in its place, counted as the ``launches`` the kernel makes on a GPU.

    ``record``: the kernel's ``Launch`` (grid, block, bytes: ``launches.kernel``); without one, a
    record that knows only the name.
    """
    from minivit.sim.launches import Launch

    launch(record if record is not None else Launch(f"kernel:{name}"), launches)
    _counters.paused += 1
    try:
        yield
    finally:
        _counters.paused -= 1


def arithmetic() -> bool:
    """False inside ``costs_only()``: simulated CUDA kernels then skip their stand-ins."""
    return _counters.arithmetic


@contextmanager
def costs_only():
    """Record launches without computing the matrix products and erf (the costly parts on a CPU).

    The values inside are garbage: use it only to record a step that reads nothing back to the
    host (the training step does not: ``tests/test_gpu_step.py``), whose launches cannot depend on them.
    """
    previous, _counters.arithmetic = _counters.arithmetic, False
    try:
        with numpy_errors_ignored():
            yield
    finally:
        _counters.arithmetic = previous


@contextmanager
def numpy_errors_ignored():
    import numpy

    with numpy.errstate(all="ignore"):
        yield
