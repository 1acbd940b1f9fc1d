"""Stage profile: where a batch-512 training step's time goes on the GPU, for each configuration that
steers the work (``CONFIGURATIONS``: cifar-tiny in float32 and in float16, the cifar-gpu model in TF32 as
its training run uses it): each phase of the training run's step (augmentation, then ``TrainStep``'s
zero_grad, forward, loss, backward, clip, optimizer, metrics) by CUDA events, then each dispatched
operation (a wrapper on every operation, ``dispatch.wrap``), the cost model's prediction beside each
phase and each operation. A configuration the deadline has no room for is skipped and says so. In a
rehearsal the simulated GPU counts launches instead."""

from __future__ import annotations

import time

import numpy as np

from gpu_session.common import model_config, remaining, training_pieces
from gpu_session.predictions import each_operation_a_phase, predicted_operations, predicted_phases
from minivit import backend

# (preset, storage precision, TF32 products): what the next work is steered by
CONFIGURATIONS = (("cifar-tiny", "float32", False), ("cifar-tiny", "float16", False), ("cifar-gpu", "float32", True))
STEPS = 20
SECONDS_PER_CONFIGURATION = 25  # two 20-step passes, warm-up and the cost model's recording, with room


def _label(preset: str, precision: str, tf32: bool) -> str:
    return f"{preset} {'TF32' if tf32 else precision}"


def _operation_table(step, steps: int, phases, predicted: dict) -> tuple[str, dict]:
    """Device milliseconds per step in each dispatched operation (CUDA events around each call)."""
    from minivit import profile

    with each_operation_a_phase(), profile.Profiler() as profiler:
        for _ in range(steps):
            step()
    by_operation = {name[3:]: seconds for name, seconds in profiler.seconds.items() if name.startswith("op:")}
    step_seconds = sum(phases.seconds.values()) or 1.0
    lines = ["| operation | calls per step | ms per step | share of the step | predicted ms (cost model) |",
             "|---|---|---|---|---|"]
    rows = {}
    for name, seconds in sorted(by_operation.items(), key=lambda item: -item[1]):
        calls = profiler.calls[f"op:{name}"] // steps
        guess = predicted.get(name)
        rows[name] = {"calls": calls, "ms": 1000 * seconds / steps, "predicted_ms": guess}
        lines.append(f"| {name} | {calls} | {1000 * seconds / steps:.2f} | {100 * seconds / step_seconds:.1f}% | "
                     f"{'-' if guess is None else f'{guess:.2f}'} |")
    outside = max(0.0, step_seconds - sum(by_operation.values()))
    lines.append(f"| outside the operations (+= of gradients, reshapes, copies) | | {1000 * outside / steps:.2f} | "
                 f"{100 * outside / step_seconds:.1f}% | |")
    return ("Each dispatched operation timed with CUDA events around it (a separate 20-step pass; the events "
            "themselves add a little)\n\n" + "\n".join(lines) + "\n"), rows


def _phase_table(seconds_by_phase: dict, steps: int, predicted: dict) -> str:
    total = sum(seconds_by_phase.values()) or 1.0
    lines = ["| phase | ms per step | share | predicted ms (cost model) |", "|---|---|---|---|"]
    for name, seconds in sorted(seconds_by_phase.items(), key=lambda item: -item[1]):
        guess = predicted.get(name)
        lines.append(f"| {name} | {1000 * seconds / steps:.2f} | {100 * seconds / total:.1f}% | "
                     f"{'-' if guess is None else f'{guess:.2f}'} |")
    lines.append(f"| all phases | {1000 * total / steps:.2f} | 100% | {sum(predicted.values()):.2f} |")
    return "\n".join(lines)


def _stepper(args, preset: str, precision: str, batch_size: int):
    """A training step of the preset's model (the training run's TrainStep) with crop + flip augmentation
    (float32 pixels, as the training run feeds a float16 model)."""
    from minivit import profile
    from minivit.augment import AugmentConfig, augment_batch

    model, take_step, _, labels = training_pieces(model_config(args, preset), batch_size, precision)
    size = model.config.image_size
    images = backend.asarray(np.random.default_rng(0).integers(0, 256, (batch_size, 3, size, size)).astype(np.uint8))
    mean, std = backend.asarray(np.full(3, 0.5, np.float32)), backend.asarray(np.full(3, 0.25, np.float32))
    rng, host_rng = backend.default_rng(0), np.random.default_rng(0)
    augment = AugmentConfig(crop_padding=4, horizontal_flip=True)

    def step():
        with profile.phase("augment"):
            pixel_values, targets = augment_batch(images, labels, augment, mean, std, 10, rng, host_rng)
        take_step(pixel_values, targets, 1e-3)

    return step


def _rehearse(args, preset: str, precision: str, tf32: bool, batch_size: int) -> dict:
    """The simulation counts launches per phase and per operation instead of timing them (the cost model's
    predictions made as on the GPU, at a toy batch)."""
    backend.use("numpy")
    predicted = predicted_phases(args, batch_size, preset, precision, tf32)
    predicted_by_operation = predicted_operations(args, batch_size, preset, precision, tf32)
    assert predicted and predicted_by_operation, "the cost model's recording failed (printed above)"
    backend.use(args.device_backend)
    step = _stepper(args, preset, precision, batch_size)
    step()
    backend.reset_sim_counters()
    step()
    by_phase = backend.sim_counters()["by_phase"]
    table = "\n".join(["| phase | launches per step |", "|---|---|"]
                      + [f"| {name} | {count} |" for name, count in by_phase.items()])
    backend.reset_sim_counters()
    with each_operation_a_phase():
        step()
    operations = "\n".join(["| operation | launches per step |", "|---|---|"]
                           + [f"| {name} | {count} |" for name, count in backend.sim_counters()["by_phase"].items()
                              if name.startswith("op:")])
    return {"table": f"rehearsal (simulated GPU), batch {batch_size}: launches per phase\n\n{table}\n",
            "operations": operations + "\n", "predicted_ms": predicted,
            "predicted_operations_ms": predicted_by_operation}


def _measure(args, preset: str, precision: str, tf32: bool, batch_size: int) -> dict:
    from minivit import profile

    backend.use_tf32(tf32)
    try:
        step = _stepper(args, preset, precision, batch_size)
        for _ in range(3):
            step()
        backend.synchronize()
        with profile.Profiler() as profiler:
            start = time.perf_counter()
            for _ in range(STEPS):
                step()
            backend.synchronize()
            wall = time.perf_counter() - start
        backend.use("numpy")
        predicted = predicted_phases(args, batch_size, preset, precision, tf32)
        predicted_by_operation = predicted_operations(args, batch_size, preset, precision, tf32)
        backend.use(args.device_backend)
        text = (f"{_label(preset, precision, tf32)}, batch {batch_size}: {1000 * wall / STEPS:.2f} ms per step by "
                f"the host's clock ({batch_size * STEPS / wall:.0f} images/s); device time per phase (CUDA events), "
                f"and the cost model's prediction (minivit.sim.cost, the H200's constants):\n\n"
                f"{_phase_table(profiler.seconds, STEPS, predicted)}\n")
        operations, rows = _operation_table(step, STEPS, profiler, predicted_by_operation)
    finally:
        backend.use_tf32(False)
    return {"table": text, "operations": operations, "predicted_ms": predicted,
            "measured_ms": {name: 1000 * seconds / STEPS for name, seconds in profiler.seconds.items()},
            "operation_rows": rows, "step_ms": 1000 * wall / STEPS}


def stage_profile(args) -> dict:
    batch_size = 8 if args.rehearse else 512
    configurations, texts, operation_texts = [], [], []
    for preset, precision, tf32 in CONFIGURATIONS:
        label = _label(preset, precision, tf32)
        if configurations and remaining(args) < SECONDS_PER_CONFIGURATION:
            note = f"{label}: skipped, {remaining(args):.0f} s left of the deadline"
            configurations.append({"preset": preset, "precision": precision, "tf32": tf32, "skipped": note})
            texts.append(note + "\n")
            continue
        backend.use(args.device_backend)
        try:
            if args.rehearse:
                result = _rehearse(args, preset, precision, tf32, batch_size)
            else:
                result = _measure(args, preset, precision, tf32, batch_size)
        finally:
            backend.use("numpy")
        configurations.append({"preset": preset, "precision": precision, "tf32": tf32, "batch_size": batch_size,
                               **result})
        texts.append(f"### {label}\n\n{result['table']}")
        operation_texts.append(f"### {label}\n\n{result['operations']}")
        print(f"  profile: {label} done", flush=True)
    text, operations = "\n".join(texts), "\n".join(operation_texts)
    (args.out / "profile.md").write_text(text)
    (args.out / "profile-operations.md").write_text(operations)
    first = configurations[0]
    return {"table": text, "operations": operations, "configurations": configurations,
            "predicted_ms": first.get("predicted_ms"), "measured_ms": first.get("measured_ms")}
