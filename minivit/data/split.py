"""A deterministic, stratified train/validation split."""

from __future__ import annotations

import numpy as np

from minivit.data.dataset import DataError, Dataset


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


def split_for_validation(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(training part, validation part): ``stratified_split``, refused unless every class has at least
    one image on each side (a class without validation images would make the accuracy that picks
    the best checkpoint mean nothing for it)."""
    counts = dataset.class_counts()
    train_idx, val_idx = stratified_split(dataset.labels, val_fraction, seed)
    val_counts = np.bincount(dataset.labels[val_idx], minlength=dataset.num_classes)
    short = [i for i in range(dataset.num_classes) if val_counts[i] == 0 or val_counts[i] == counts[i]]
    if short:
        smallest = int(counts.min())
        name = dataset.class_names[int(np.argmin(counts))]
        if smallest < 2:
            raise DataError(f"Class {name!r} has {smallest} training image(s): at least two are needed, one to "
                            "train on and one to validate on.")
        raise DataError(
            f"--val-fraction {val_fraction:g} leaves class(es) {', '.join(dataset.class_names[i] for i in short)} "
            f"without {'validation' if val_counts[short[0]] == 0 else 'training'} images (the smallest class, "
            f"{name!r}, has {smallest}): choose --val-fraction in [{1 / smallest:.3g}, {1 - 1 / smallest:.3g}].")
    return dataset.subset(train_idx), dataset.subset(val_idx)
