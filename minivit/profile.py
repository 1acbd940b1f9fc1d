"""Named phases of a training step ("augment", "forward", "backward", ...), counted or timed.

    with profile.phase("forward"):
        logits = model.forward(pixel_values)

Costs nothing unless someone is looking:
  * on the simulated GPU (backend "cupy-sim") the launches made inside are counted under the
    phase's name (``backend.sim_counters()["by_phase"]``);
  * inside ``with profile.Profiler() as profiler:`` each phase is timed: with CUDA events
    on a GPU (the device's own clock: no synchronisation inside the step), with the CPU's
    clock on NumPy. ``profiler.table()`` gives milliseconds per step and share, phase by phase.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

from minivit import backend

_profiler = None  # the active Profiler, if any


@contextmanager
def phase(name: str):
    if backend.name == "cupy-sim":
        from minivit import sim

        with sim.phase(name):
            yield
        return
    if _profiler is None:
        yield
        return
    _profiler._begin(name)
    try:
        yield
    finally:
        _profiler._end(name)


class Profiler:
    """Times every ``phase`` run inside ``with Profiler() as profiler:`` (per step: ``steps`` calls)."""

    def __init__(self):
        self._open: dict = {}
        self._events = defaultdict(list)  # GPU: (start event, end event) per call
        self.seconds = defaultdict(float)  # CPU: seconds per phase, summed
        self.calls = defaultdict(int)

    def __enter__(self):
        global _profiler
        self._previous, _profiler = _profiler, self
        return self

    def __exit__(self, *exc_info):
        global _profiler
        _profiler = self._previous
        if backend.name == "cupy":
            backend.synchronize()
            elapsed_ms = backend.xp.cuda.get_elapsed_time
            for name, pairs in self._events.items():
                self.seconds[name] += sum(elapsed_ms(start, end) for start, end in pairs) / 1000
            self._events.clear()
        return False

    def _begin(self, name: str) -> None:
        self.calls[name] += 1
        if backend.name == "cupy":
            start = backend.xp.cuda.Event()
            start.record()
            self._open[name] = start
        else:
            self._open[name] = time.perf_counter()

    def _end(self, name: str) -> None:
        start = self._open.pop(name)
        if backend.name == "cupy":
            end = backend.xp.cuda.Event()
            end.record()
            self._events[name].append((start, end))
        else:
            self.seconds[name] += time.perf_counter() - start

    def table(self, steps: int) -> str:
        """A Markdown table: milliseconds per step and the share of each phase."""
        total = sum(self.seconds.values()) or 1.0
        lines = ["| phase | ms per step | share |", "|---|---|---|"]
        for name, seconds in sorted(self.seconds.items(), key=lambda item: -item[1]):
            lines.append(f"| {name} | {1000 * seconds / steps:.2f} | {100 * seconds / total:.1f}% |")
        lines.append(f"| all phases | {1000 * total / steps:.2f} | 100% |")
        return "\n".join(lines)
