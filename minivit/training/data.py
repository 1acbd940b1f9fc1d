"""The data of a training run: the training split, checked against the model, split for
validation, and drawn in batches.

    resolve_data_dir(config)            --data-dir, or ./data (downloaded with --download)
    load_training_images(...)           the train split at the model's size, --classes applied
    check_fits_model(dataset, config)   image shape and number of classes against the model
    split_for_validation(...)           a stratified split in which every class has images on both sides
    report_data_problems(...)           data that would mislead the run refused, or named (minivit.data.audit)
    Batches                             the training images on the backend, drawn in a seeded order
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np  # host side: data indices

from minivit import backend
from minivit.config import ViTConfig
from minivit.data import DataError, Dataset, download_cifar10, find_data, load_split, stratified_split
from minivit.data.audit import audit_training_data, load_test_split, refuse_empty_classes

DOWNLOAD_WITH_DATA_DIR = ("--download fetches CIFAR-10 into ./data, and --data-dir names data you already have: "
                          "give one of them (--data-dir DIR alone, or --download alone).")


def resolve_data_dir(data_dir: str | None, download: bool) -> str:
    """--data-dir, checked; or ./data, downloaded with --download (not both: DOWNLOAD_WITH_DATA_DIR)."""
    if data_dir is not None and download:
        raise ValueError(DOWNLOAD_WITH_DATA_DIR)
    if data_dir is not None:
        find_data(data_dir)  # raises DataError with instructions
        return data_dir
    default = Path("data")
    try:
        find_data(default)
        return str(default)
    except DataError:
        if download:
            download_cifar10(default)  # a failed download leaves nothing behind
            return str(default)
        raise


def load_training_images(data_dir: str, image_size: int, classes: list[str] | None,
                         progress: bool = True) -> Dataset:
    """The train split at ``image_size``; with ``classes``, only those, relabelled in their order.
    ``progress``: a bar while the first load decodes, and a line about the cache it writes."""
    dataset = load_split(data_dir, "train", image_size=image_size, progress=progress)
    return dataset.select_classes(classes) if classes else dataset


def check_fits_model(dataset: Dataset, model_config: ViTConfig) -> None:
    _, channels, height, width = dataset.images.shape
    if (channels, height, width) != (model_config.num_channels, model_config.image_size, model_config.image_size):
        raise DataError(f"The data's images are {channels}x{height}x{width} but the model expects "
                        f"{model_config.num_channels}x{model_config.image_size}x{model_config.image_size}: "
                        "set --image-size / --num-channels to match.")
    if dataset.num_classes > model_config.num_labels:
        raise DataError(f"The data has {dataset.num_classes} classes but the model {model_config.num_labels} "
                        f"labels: pass --num-labels {dataset.num_classes}.")
    if dataset.num_classes < 2:
        raise DataError(f"The data has {dataset.num_classes} class ({', '.join(dataset.class_names)}): a "
                        "classifier needs at least two.")


def split_for_validation(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(training part, validation part): ``stratified_split``, refused unless every class has at least
    one image on each side (a class without validation images would make the accuracy that picks
    the best checkpoint mean nothing for it)."""
    refuse_empty_classes(dataset)
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


def report_data_problems(train_set: Dataset, val_set: Dataset, data_dir: str, image_size: int,
                         classes: list[str] | None, test_set: Dataset | None = None, warn: bool = True,
                         progress: bool = True) -> None:
    """Before training: refuse a class without training images, and (``warn``: rank 0) print what would
    mislead: small classes, a test split lacking classes (or with classes training lacks), validation or
    test images that are copies of training images. ``test_set``: the run's own, if it loaded one."""
    warnings, test = [], test_set
    if test is None and warn:
        try:
            test = load_test_split(data_dir, image_size, classes, progress)
        except DataError as error:  # the test split is not training's to refuse: evaluate will
            warnings.append(f"the test split of {data_dir} was not checked: {error}")
    for warning in warnings + audit_training_data(train_set, val_set, test, warn=warn):
        print(f"warning: {warning}", file=sys.stderr)


class Batches:
    """The training images on the backend, drawn in a seeded order per epoch.

    Only the batch's images are gathered each step; the data set is copied to the
    device once. In a distributed run (``num_ranks`` > 1) ``batch_size`` is the global
    batch, and rank ``rank`` gets the rank-th of ``num_ranks`` equal slices of it: the
    ranks' shards together are the batch a single process would draw.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                 rank: int = 0, num_ranks: int = 1):
        if len(labels) < batch_size:
            raise DataError(f"Only {len(labels)} training images for a batch size of {batch_size}: "
                            "lower --batch-size or use more data.")
        if batch_size % num_ranks:
            below, above = batch_size - batch_size % num_ranks, batch_size + num_ranks - batch_size % num_ranks
            raise ValueError(f"--batch-size {batch_size} does not divide among {num_ranks} ranks: it is the global "
                             f"batch, and each rank takes an equal share of it. Choose a multiple of {num_ranks}, "
                             f"such as {below or above} or {above}, or start {_divisor_hint(batch_size)} ranks.")
        self.images = backend.asarray(images)
        self.labels = backend.asarray(labels)
        self.batch_size = batch_size
        self.shard_size = batch_size // num_ranks  # this rank's images per step
        self.rank, self.num_ranks = rank, num_ranks
        self.seed = seed
        self.steps_per_epoch = len(labels) // batch_size  # the last, incomplete batch is dropped
        self._order_epoch, self._order = None, None

    def samples(self, step: int, rank: int | None = None):
        """The indices (into ``images``) of a rank's share of the global batch of ``step``: (B / N,),
        on the backend. ``rank``: this rank by default."""
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._order_epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
            self._order, self._order_epoch = backend.asarray(order), epoch
        start = index * self.batch_size + (self.rank if rank is None else rank) * self.shard_size
        return self._order[start:start + self.shard_size]

    def get(self, step: int):
        """(images, labels) of this rank's share of the global batch of ``step``: (B / N, C, H, W), (B / N,)."""
        chosen = self.samples(step)
        return self.images[chosen], self.labels[chosen]


def _divisor_hint(batch_size: int) -> str:
    """'1, 2 or 4': the rank counts up to 8 that divide the batch."""
    divisors = [str(count) for count in range(1, 9) if batch_size % count == 0]
    return ", ".join(divisors[:-1]) + " or " + divisors[-1] if len(divisors) > 1 else divisors[0]
