"""The simulator's cost model beside a measured row: a whole step recorded on "cupy-sim" and costed.

    predicted_ms(args, batch_size, precision, tf32, training)   one step's predicted ms (None if it fails)
    predicted_phases(args, batch_size, preset, precision, tf32) {phase: predicted ms}, training
    predicted_operations(...)                                   {operation: predicted ms}, training
    each_operation_a_phase()                                    every dispatched operation a phase "op:<name>"

Records are made once per (preset, batch, precision, training, by operation) and kept for the run. The
constants are ``minivit.sim.cost.CONSTANTS`` (fitted to the last GPU's measurements); the suspects stage
fits them again to this GPU's microbenchmarks (cost-model-fit.json).
"""

from __future__ import annotations

import contextlib

from minivit import backend

_records: dict = {}


@contextlib.contextmanager
def each_operation_a_phase():
    """Every dispatched operation runs inside profile.phase("op:<name>") (timed or counted like a phase)."""
    from minivit import dispatch, profile

    def in_phase(name: str, function):
        def run(*arguments, **keywords):
            with profile.phase(f"op:{name}"):
                return function(*arguments, **keywords)
        return run

    with dispatch.wrap(in_phase):
        yield


def _recorded(args, batch_size: int, precision: str, training: bool, preset: str = "cifar-tiny",
              by_operation: bool = False):
    from minivit.sim.workload import record_step

    key = (preset, batch_size, precision, training, by_operation)
    if key not in _records:
        previous = backend.name
        try:
            # the rehearsal's toy model is not a preset: record the preset at a toy batch
            batch = 2 if args.rehearse else batch_size
            with each_operation_a_phase() if by_operation else contextlib.nullcontext():
                _records[key] = record_step(preset, batch, precision, training)
        finally:
            backend.use(previous)
    return _records[key]


def prediction(args, batch_size: int, precision: str = "float32", tf32: bool = False, training: bool = True,
               preset: str = "cifar-tiny", by_operation: bool = False):
    from minivit.sim import cost

    return cost.predict(_recorded(args, batch_size, precision, training, preset, by_operation), "H200", tf32=tf32)


def predicted_ms(args, batch_size: int, precision: str = "float32", tf32: bool = False,
                 training: bool = True) -> float | None:
    try:
        return prediction(args, batch_size, precision, tf32, training).step_ms
    except Exception as error:  # noqa: BLE001 (a prediction never stops a measurement)
        print(f"  prediction failed: {type(error).__name__}: {error}", flush=True)
        return None


def predicted_phases(args, batch_size: int, preset: str = "cifar-tiny", precision: str = "float32",
                     tf32: bool = False) -> dict:
    try:
        return dict(prediction(args, batch_size, precision, tf32, True, preset).by_phase)
    except Exception as error:  # noqa: BLE001
        print(f"  prediction failed: {type(error).__name__}: {error}", flush=True)
        return {}


def predicted_operations(args, batch_size: int, preset: str = "cifar-tiny", precision: str = "float32",
                         tf32: bool = False) -> dict:
    """{operation name: predicted ms per step}, from a step recorded with each operation a phase."""
    try:
        by_phase = prediction(args, batch_size, precision, tf32, True, preset, by_operation=True).by_phase
        return {name[3:]: ms for name, ms in by_phase.items() if name.startswith("op:")}
    except Exception as error:  # noqa: BLE001
        print(f"  prediction failed: {type(error).__name__}: {error}", flush=True)
        return {}
