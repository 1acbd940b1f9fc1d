"""The simulator's cost model beside a measured row: a whole step recorded on "cupy-sim" and costed.

    predicted_ms(args, batch_size, precision, tf32, training)   one step's predicted ms (None if it fails)
    predicted_phases(args, batch_size)                          {phase: predicted ms}, float32 training

Records are made once per (preset, batch, precision, training) and kept for the run. The constants
are ``minivit.sim.cost.CONSTANTS`` (fitted to the last GPU's measurements); the suspects stage
fits them again to this GPU's microbenchmarks (cost-model-fit.json).
"""

from __future__ import annotations

from minivit import backend

_records: dict = {}


def _recorded(args, batch_size: int, precision: str, training: bool):
    from minivit.sim.workload import record_step

    key = (batch_size, precision, training)
    if key not in _records:
        previous = backend.name
        try:
            if args.rehearse:  # the rehearsal's toy model is not a preset: record cifar-tiny at a toy batch
                _records[key] = record_step("cifar-tiny", 2, precision, training)
            else:
                _records[key] = record_step("cifar-tiny", batch_size, precision, training)
        finally:
            backend.use(previous)
    return _records[key]


def prediction(args, batch_size: int, precision: str = "float32", tf32: bool = False, training: bool = True):
    from minivit.sim import cost

    return cost.predict(_recorded(args, batch_size, precision, training), "H200", tf32=tf32)


def predicted_ms(args, batch_size: int, precision: str = "float32", tf32: bool = False,
                 training: bool = True) -> float | None:
    try:
        return prediction(args, batch_size, precision, tf32, training).step_ms
    except Exception as error:  # noqa: BLE001 (a prediction never stops a measurement)
        print(f"  prediction failed: {type(error).__name__}: {error}", flush=True)
        return None


def predicted_phases(args, batch_size: int) -> dict:
    try:
        return dict(prediction(args, batch_size).by_phase)
    except Exception as error:  # noqa: BLE001
        print(f"  prediction failed: {type(error).__name__}: {error}", flush=True)
        return {}
