"""Data that would quietly mislead a run: refused or named before training starts.

    refuse_empty_classes(train)             a class without training images: refused (DataError)
    small_class_warnings(train)             a class with a tenth or less of the largest class's
                                            images: a warning with both counts
    split_class_warnings(train, other, ...) a test (or validation) split that lacks a class the
                                            training split has, or has one it lacks
    duplicate_warnings(known, other, ...)   images of another split that are exact copies of
                                            training images (their decoded pixels hashed)
    audit_training_data(...)                all of them, for the training run's setup
    load_test_split(...)                    the test split, if the data has one
    lacking_classes(dataset, class_names)   the classes a split holds no image of (for evaluate)

Warnings are returned as sentences for the caller to print (in a distributed run, rank 0 alone
prints them); refusals raise ``DataError``. Each names the classes and the counts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from minivit.data.dataset import DataError, Dataset

IMBALANCE_RATIO = 10  # a class with at most a tenth of the largest class's images is named


def _names_and_counts(names: list[str], counts) -> str:
    return ", ".join(f"{name!r} ({int(count)})" for name, count in zip(names, counts))


def refuse_empty_classes(train: Dataset) -> None:
    """A DataError naming the classes without training images, if any."""
    counts = train.class_counts()
    empty = [name for name, count in zip(train.class_names, counts) if count == 0]
    if empty:
        present = counts[counts > 0]
        others = (f"the other classes have {int(present.min())} to {int(present.max())}" if len(present)
                  else "no class has any")
        raise DataError(f"The training data has no images of class(es) {', '.join(map(repr, empty))} ({others}): "
                        "the model would have an output that no image teaches. Add images of them, or train on "
                        "the others with --classes.")


def small_class_warnings(train: Dataset) -> list[str]:
    """Classes with at most 1/IMBALANCE_RATIO of the largest class's training images."""
    counts = train.class_counts()
    largest = int(np.argmax(counts))
    small = [i for i, count in enumerate(counts) if count * IMBALANCE_RATIO <= counts[largest]]
    if not small:
        return []
    return [f"class(es) {_names_and_counts([train.class_names[i] for i in small], counts[small])} have at most "
            f"1/{IMBALANCE_RATIO} of the training images of {train.class_names[largest]!r} ({int(counts[largest])}): "
            "the model will learn to rarely predict them, and the overall accuracy will hide it (look at "
            f"evaluate's per-class accuracy). Add images of them, or balance the classes with --train-per-class "
            f"{int(counts[small].min())}."]


def split_class_warnings(train_names: list[str], train_counts, other_names: list[str], other_counts,
                         split: str) -> list[str]:
    """Classes the training split has and ``split`` lacks (no images), and classes ``split`` has that
    the training split lacks. ``*_counts``: images per class, in the order of the names."""
    other = dict(zip(other_names, (int(count) for count in other_counts)))
    lacking = [(name, count) for name, count in zip(train_names, train_counts) if other.get(name, 0) == 0]
    extra = [(name, count) for name, count in other.items() if name not in train_names and count > 0]
    warnings = []
    if lacking:
        warnings.append(f"the {split} split has no images of class(es) "
                        f"{', '.join(repr(name) for name, _ in lacking)} (the training split has "
                        f"{', '.join(str(int(count)) for _, count in lacking)}): its accuracy says nothing about "
                        "them, and the per-class accuracy shows no value for them.")
    if extra:
        warnings.append(f"the {split} split has class(es) {_names_and_counts(*zip(*extra))} that the training split "
                        "lacks: the model cannot predict them (evaluate refuses that split).")
    return warnings


def image_hashes(images: np.ndarray) -> list[bytes]:
    """A 16-byte digest of each image's decoded pixels (N, C, H, W)."""
    return [hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest() for image in images]


def duplicate_warnings(known: dict[bytes, tuple[str, str]], other: Dataset, split: str) -> list[str]:
    """Images of ``other`` whose pixels equal an image in ``known`` ({digest: (split, class)}): an
    accuracy that counts them measures memory, not generalisation (and a copy with another class is
    a labelling mistake)."""
    copies = [(index, known[digest]) for index, digest in enumerate(image_hashes(other.images)) if digest in known]
    if not copies:
        return []
    shown = ", ".join(f"{split} image {index} ({other.class_names[other.labels[index]]!r}) = a {where} image "
                      f"({name!r})" for index, (where, name) in copies[:3])
    return [f"{len(copies)} of the {len(other)} {split} images are exact copies of training data ({shown}"
            f"{' ...' if len(copies) > 3 else ''}): the {split} accuracy overstates what the model does on new "
            "images. Remove the copies from one side."]


def _digests(dataset: Dataset, split: str) -> dict[bytes, tuple[str, str]]:
    return {digest: (split, dataset.class_names[label])
            for digest, label in zip(image_hashes(dataset.images), dataset.labels)}


def audit_training_data(train: Dataset, validation: Dataset | None = None, test: Dataset | None = None,
                        warn: bool = True) -> list[str]:
    """What the training setup checks: refuses (DataError) a class without training images; with
    ``warn``, returns the warnings: small classes, a ``test`` split lacking classes (or having
    classes training lacks), and validation or test images that are copies of training images."""
    refuse_empty_classes(train)
    if not warn:
        return []
    warnings = small_class_warnings(train)
    known = _digests(train, "training")
    if validation is not None:
        warnings += duplicate_warnings(known, validation, "validation")
        known = {**_digests(validation, "validation"), **known}
    if test is not None:
        warnings += split_class_warnings(train.class_names, train.class_counts(), test.class_names,
                                         test.class_counts(), "test")
        warnings += duplicate_warnings(known, test, "test")
    return warnings


def load_test_split(data_dir: str | Path, image_size: int, classes: list[str] | None,
                    progress: bool = True) -> Dataset | None:
    """The test split of ``data_dir`` at ``image_size`` (with ``classes``, those alone), or None if it has none
    (``progress``: a bar and a line about the cache when it is first decoded)."""
    from minivit.data.cache import cache_file
    from minivit.data.layout import find_data, load_split

    layout, path = find_data(data_dir)
    if layout == "cifar10":  # (the cache alone serves a split whose batch files are gone)
        has_test = (path / "test_batch").is_file() or cache_file(path, "minivit-cache-test.npz").is_file()
    else:
        has_test = (path / "test").is_dir()
    if not has_test:
        return None
    test = load_split(data_dir, "test", image_size=image_size, progress=progress)
    if classes:
        test = test.select_classes([name for name in classes if name in test.class_names])
    return test


def lacking_classes(dataset: Dataset, class_names: list[str]) -> list[str]:
    """Those of ``class_names`` (a model's) of which ``dataset`` holds no image."""
    counts = dict(zip(dataset.class_names, dataset.class_counts().tolist()))
    return [name for name in class_names if counts.get(name, 0) == 0]
