"""One training step or one inference of a preset, recorded on the simulated GPU (launch by launch).

    records = record_step("cifar-tiny", batch_size=512)            # list of sim.launches.Launch
    records = record_step("cifar-tiny", 512, training=False)       # a forward under no_grad

The step is the training run's own (``minivit.training.step.TrainStep``, label smoothing 0.1,
clipping at 1, AdamW; for float16 the loss scaler and float32 master weights) on a fixed batch
on the device (the data and augmentation phases, the Trainer's, are left out). The step reads nothing back to the
host, so its launches do not depend on the values: it is recorded with the arithmetic of the
products skipped (``sim.counting.costs_only``), which makes batch 512 take seconds, not minutes.
"""

from __future__ import annotations

import contextlib

import numpy as np

from minivit import backend, profile


def record_step(preset: str = "cifar-tiny", batch_size: int = 512, precision: str = "float32",
                training: bool = True, num_labels: int = 10, skip_arithmetic: bool = True) -> list:
    """The launches of one step (training) or one forward (inference) on backend "cupy-sim".

    ``skip_arithmetic``: record with the products' arithmetic skipped (``costs_only``); False computes
    everything (tests/test_sim.py checks that both give the same launches)."""
    from minivit import no_grad, sim
    from minivit.amp import LossScaler
    from minivit.config import preset as preset_config
    from minivit.model import ViTForImageClassification
    from minivit.optim import AdamW
    from minivit.sim.counting import costs_only
    from minivit.training.step import TrainStep

    previous = backend.name
    backend.use("cupy-sim")
    try:
        config = preset_config(preset)
        config = type(config)(**{**config.__dict__, "num_labels": num_labels})
        model = ViTForImageClassification(config, seed=0, dtype=precision)
        host = np.random.default_rng(0)
        images = backend.asarray(host.standard_normal((batch_size, config.num_channels, config.image_size,
                                                       config.image_size)).astype(precision))
        labels = backend.asarray(host.integers(0, num_labels, batch_size))
        half = precision == "float16"
        optimizer = AdamW(model.named_parameters(), lr=1e-3, master_weights=half)
        take_step = TrainStep(model, optimizer, label_smoothing=0.1, grad_clip=1.0,
                              scaler=LossScaler() if half else None)

        def step():
            take_step(images, labels, 1e-3)

        def inference():
            model.eval()
            with no_grad(), profile.phase("forward"):
                model.forward(images)

        backend.reset_sim_counters()
        with costs_only() if skip_arithmetic else contextlib.nullcontext():
            (step if training else inference)()
        return sim.records()
    finally:
        backend.use(previous)
