"""A deterministic, stratified train/validation split."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class gives round(val_fraction * its count) images to
    validation, chosen by a generator seeded with ``seed``. Same labels and seed, same split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}.")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        num_val = int(round(val_fraction * len(members)))
        val.append(members[:num_val])
        train.append(members[num_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
