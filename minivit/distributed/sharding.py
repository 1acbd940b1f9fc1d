"""Each rank's share of a set of images, and evaluation over the shares.

Training batches are sharded by ``minivit.training.data.Batches`` (rank r of N takes the
r-th of N equal slices of every global batch). A validation or test set is sharded here
into N contiguous parts of near-equal size; each rank evaluates its part, and one
all-reduce of three sums (loss, correct, count) gives every rank the whole set's loss and
accuracy.
"""

from __future__ import annotations

import numpy as np  # host side: the images and labels live on the host

from minivit import backend
from minivit.distributed.communicator import Communicator
from minivit.evaluate import evaluate_model


def shard(count: int, rank: int, size: int) -> slice:
    """The ``rank``-th of ``size`` contiguous parts of range(count); the sizes differ by at most one."""
    return slice(count * rank // size, count * (rank + 1) // size)


def evaluate_sharded(model, images: np.ndarray, labels: np.ndarray, mean, std, batch_size: int,
                     communicator: Communicator, tta: bool = False) -> dict:
    """``evaluate_model`` over the whole set, each rank evaluating its shard.

    Returns {"loss", "accuracy"} of the whole set on every rank (with one rank, also the
    "predictions", as ``evaluate_model``).
    """
    if communicator.size == 1:
        return evaluate_model(model, images, labels, mean, std, batch_size, tta)
    part = shard(len(labels), communicator.rank, communicator.size)
    result = evaluate_model(model, images[part], labels[part], mean, std, batch_size, tta)
    count = part.stop - part.start
    correct = int((result["predictions"] == labels[part]).sum())
    sums = backend.asarray(np.array([result["loss"] * count, correct, count], dtype=np.float64))  # (3,)
    communicator.allreduce_sum(sums)
    loss_sum, correct_sum, total = backend.to_numpy(sums)
    return {"loss": float(loss_sum / max(1.0, total)), "accuracy": float(correct_sum / total) if total else 0.0}
