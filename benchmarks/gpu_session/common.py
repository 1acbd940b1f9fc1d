"""What the stages share: the clock and deadline, the toy model of a rehearsal, a model with its optimizer."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minivit import backend  # noqa: E402

START = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - START


def remaining(args) -> float:
    """Seconds left of the run's --deadline."""
    return args.deadline - elapsed()


def rehearsal_config():
    """The toy model every stage uses in a rehearsal (seconds on a CPU)."""
    import minivit

    return minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, num_labels=10)


def model_config(args, preset: str = "cifar-tiny"):
    import minivit

    return rehearsal_config() if args.rehearse else minivit.preset(preset)


def training_pieces(config, batch_size: int, precision: str = "float32", seed: int = 0):
    """(model, TrainStep, images, labels) on the active backend: the training run's own step (label
    smoothing 0.1, clipping at 1, AdamW; float16 with a loss scaler and float32 master weights)."""
    import minivit
    from minivit import amp
    from minivit.optim import AdamW
    from minivit.training.step import TrainStep

    model = minivit.ViTForImageClassification(config, seed=seed, dtype=precision)
    half = precision == "float16"
    optimizer = AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05, master_weights=half)
    step = TrainStep(model, optimizer, label_smoothing=0.1, grad_clip=1.0, scaler=amp.LossScaler() if half else None)
    rng = np.random.default_rng(seed)
    images = backend.asarray(rng.standard_normal((batch_size, 3, config.image_size, config.image_size))
                             .astype(precision))
    labels = backend.asarray(rng.integers(0, config.num_labels, batch_size))
    return model, step, images, labels
