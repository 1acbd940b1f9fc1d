"""Stage profile: where a cifar-tiny batch-512 training step's time goes on the GPU: each phase of the
training run's step (augmentation, then ``TrainStep``'s zero_grad, forward, loss, backward, clip,
optimizer, metrics) by CUDA events, the cost model's prediction beside each phase; then each
dispatched operation (a wrapper on every operation, ``dispatch.wrap``). In a rehearsal the simulated
GPU counts launches instead."""

from __future__ import annotations

import contextlib
import time

import numpy as np

from gpu_session.common import model_config, training_pieces
from gpu_session.predictions import predicted_phases
from minivit import backend


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


def _operation_table(step, steps: int, phases) -> str:
    """Device milliseconds per step in each dispatched operation (CUDA events around each call)."""
    from minivit import profile

    with each_operation_a_phase(), profile.Profiler() as profiler:
        for _ in range(steps):
            step()
    by_operation = {name[3:]: seconds for name, seconds in profiler.seconds.items() if name.startswith("op:")}
    step_seconds = sum(phases.seconds.values()) or 1.0
    lines = ["| operation | calls per step | ms per step | share of the step |", "|---|---|---|---|"]
    for name, seconds in sorted(by_operation.items(), key=lambda item: -item[1]):
        calls = profiler.calls[f"op:{name}"] // steps
        lines.append(f"| {name} | {calls} | {1000 * seconds / steps:.2f} | {100 * seconds / step_seconds:.1f}% |")
    outside = max(0.0, step_seconds - sum(by_operation.values()))
    lines.append(f"| outside the operations (+= of gradients, reshapes, copies) | | {1000 * outside / steps:.2f} | "
                 f"{100 * outside / step_seconds:.1f}% |")
    return ("Each dispatched operation timed with CUDA events around it (a separate 20-step pass; the events "
            "themselves add a little)\n\n" + "\n".join(lines) + "\n")


def _phase_table(seconds_by_phase: dict, steps: int, predicted: dict) -> str:
    total = sum(seconds_by_phase.values()) or 1.0
    lines = ["| phase | ms per step | share | predicted ms (cost model) |", "|---|---|---|---|"]
    for name, seconds in sorted(seconds_by_phase.items(), key=lambda item: -item[1]):
        guess = predicted.get(name)
        lines.append(f"| {name} | {1000 * seconds / steps:.2f} | {100 * seconds / total:.1f}% | "
                     f"{'-' if guess is None else f'{guess:.2f}'} |")
    lines.append(f"| all phases | {1000 * total / steps:.2f} | 100% | {sum(predicted.values()):.2f} |")
    return "\n".join(lines)


def stage_profile(args) -> dict:
    from minivit import profile
    from minivit.augment import AugmentConfig, augment_batch

    backend.use(args.device_backend)
    batch_size = 8 if args.rehearse else 512
    model, take_step, _, labels = training_pieces(model_config(args), batch_size)
    size = model.config.image_size
    images = backend.asarray(np.random.default_rng(0).integers(0, 256, (batch_size, 3, size, size)).astype(np.uint8))
    mean, std = backend.asarray(np.full(3, 0.5, np.float32)), backend.asarray(np.full(3, 0.25, np.float32))
    rng, host_rng = backend.default_rng(0), np.random.default_rng(0)
    augment = AugmentConfig(crop_padding=4, horizontal_flip=True)

    def step():
        with profile.phase("augment"):
            pixel_values, targets = augment_batch(images, labels, augment, mean, std, 10, rng, host_rng)
        take_step(pixel_values, targets, 1e-3)

    for _ in range(3):
        step()
    backend.synchronize()
    if args.rehearse:  # the simulation counts launches per phase instead of timing them
        backend.reset_sim_counters()
        step()
        by_phase = backend.sim_counters()["by_phase"]
        table = "\n".join(["| phase | launches per step |", "|---|---|"]
                          + [f"| {name} | {count} |" for name, count in by_phase.items()])
        text = f"rehearsal (simulated GPU), batch {batch_size}: launches per phase\n\n{table}\n"
        (args.out / "profile.md").write_text(text)
        backend.reset_sim_counters()
        with each_operation_a_phase():
            step()
        by_operation = backend.sim_counters()["by_phase"]
        operations = "\n".join(["| operation | launches per step |", "|---|---|"]
                               + [f"| {name} | {count} |" for name, count in by_operation.items()
                                  if name.startswith("op:")])
        (args.out / "profile-operations.md").write_text(operations + "\n")
        backend.use("numpy")
        return {"table": text, "operations": operations, "predicted_ms": predicted_phases(args, batch_size)}
    steps = 20
    with profile.Profiler() as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        backend.synchronize()
        wall = time.perf_counter() - start
    backend.use("numpy")
    predicted = predicted_phases(args, batch_size)
    backend.use(args.device_backend)
    table = _phase_table(profiler.seconds, steps, predicted)
    text = (f"cifar-tiny, batch {batch_size}: {1000 * wall / steps:.2f} ms per step by the host's clock "
            f"({batch_size * steps / wall:.0f} images/s); device time per phase (CUDA events), and the cost "
            f"model's prediction (minivit.sim.cost, the H200's constants):\n\n{table}\n")
    (args.out / "profile.md").write_text(text)
    operations = _operation_table(step, steps, profiler)
    (args.out / "profile-operations.md").write_text(operations)
    backend.use("numpy")
    return {"table": text, "operations": operations, "predicted_ms": predicted,
            "measured_ms": {name: 1000 * seconds / steps for name, seconds in profiler.seconds.items()}}
