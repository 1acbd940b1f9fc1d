"""The Dataset container, and the checks every loader applies to what it read.

A data set, however it was stored, becomes uint8 images (N, C, H, W) in [0, 255]
and integer labels (N,) in [0, number of classes). The loaders check their input
against that with ``check_images`` and ``check_labels``, naming the file a problem
came from; ``Dataset`` checks it once more for data made in Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataError(RuntimeError):
    """Data that is missing or unusable; the message names the file and says how to fix it."""


def check_images(images: np.ndarray, source: str) -> np.ndarray:
    """``images`` as uint8 (N, C, H, W), or a DataError naming ``source``.

    Integer pixels in [0, 255] are converted exactly; anything else is refused rather than
    cast: float pixels in [0, 1] cast to uint8 would become black images.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind in "iu":
        if images.size and (images.min() < 0 or images.max() > 255):
            raise DataError(f"{source}: pixel values must lie in [0, 255]; these range from {images.min()} to "
                            f"{images.max()}.")
        return images.astype(np.uint8)
    if images.dtype.kind == "f":
        low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
        hint = (" They look like pixels scaled to [0, 1]: store (pixels * 255).round().astype('uint8')."
                if 0.0 <= low and high <= 1.0 else "")
        raise DataError(f"{source}: pixels are {images.dtype} (from {low:g} to {high:g}); minivit reads images as "
                        f"uint8 in [0, 255] and does not guess another scale.{hint}")
    raise DataError(f"{source}: pixels of dtype {images.dtype}; expected uint8 in [0, 255].")


def check_labels(labels: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    """``labels`` as int64 (N,) in [0, num_classes), or a DataError naming ``source`` and the bad values."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{source}: labels must be one integer per image, shape (N,); got shape {labels.shape}.")
    if labels.size and labels.dtype.kind not in "iu":
        if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise DataError(f"{source}: labels must be integers; got {labels.dtype}.")
    labels = labels.astype(np.int64, copy=False)
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(outside):
        shown = ", ".join(f"{labels[i]} (image {i})" for i in outside[:5])
        raise DataError(f"{source}: {len(outside)} label(s) outside [0, {num_classes - 1}], the {num_classes} "
                        f"classes: {shown}{' ...' if len(outside) > 5 else ''}. A label of -1 (unlabelled) has "
                        "no class to train on: remove those images.")
    return labels


@dataclass
class Dataset:
    """Images as uint8 (N, C, H, W) and integer labels (N,) in [0, len(class_names)), on the host."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(f"Dataset images must be uint8 (N, C, H, W); got {self.images.dtype} "
                            f"{self.images.shape}.")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels.")
        if len(set(self.class_names)) != len(self.class_names):
            raise DataError(f"Class names are listed twice: {', '.join(self.class_names)}.")
        self.labels = check_labels(self.labels, len(self.class_names), "Dataset")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> Dataset:
        return Dataset(self.images[indices], self.labels[indices], self.class_names)

    def select_classes(self, names: list[str]) -> Dataset:
        """Only the images of these classes, relabelled 0, 1, ... in the order given."""
        unknown = [name for name in names if name not in self.class_names]
        if unknown:
            raise DataError(f"Unknown class(es) {', '.join(unknown)}: this data set has "
                            f"{', '.join(self.class_names)}.")
        if len(set(names)) != len(names):
            raise DataError(f"Classes are listed twice: {', '.join(names)}.")
        old_labels = [self.class_names.index(name) for name in names]
        keep = np.isin(self.labels, old_labels)
        relabel = np.full(self.num_classes, -1, dtype=self.labels.dtype)
        relabel[old_labels] = np.arange(len(names))
        return Dataset(self.images[keep], relabel[self.labels[keep]], list(names))

    def relabelled_as(self, class_names: list[str], source: str = "the data") -> Dataset:
        """The same images, labelled by ``class_names`` (a model's classes), matched by name.

        The data may lack some of those classes; a class the list does not know is refused.
        """
        unknown = [name for name in self.class_names if name not in class_names]
        if unknown:
            raise DataError(f"{source} has class(es) {', '.join(unknown)} that the model does not know: it was "
                            f"trained on {', '.join(class_names)}.")
        relabel = np.array([class_names.index(name) for name in self.class_names], dtype=np.int64)
        return Dataset(self.images, relabel[self.labels] if len(self.labels) else self.labels, list(class_names))

    def take_per_class(self, count: int, seed: int = 0) -> Dataset:
        """``count`` images of every class, drawn at random (seeded), in a shuffled order."""
        rng = np.random.default_rng([seed, 4])
        chosen = []
        for label in range(self.num_classes):
            members = np.flatnonzero(self.labels == label)
            if len(members) < count:
                raise DataError(f"Class {self.class_names[label]!r} has {len(members)} images, fewer than the "
                                f"{count} per class asked for: lower --train-per-class.")
            chosen.append(rng.choice(members, size=count, replace=False))
        return self.subset(rng.permutation(np.concatenate(chosen)))

    def resized(self, size: int) -> Dataset:
        """Every image resized to size x size (Pillow's bicubic, as the image-folder loader)."""
        from concurrent.futures import ThreadPoolExecutor

        from PIL import Image

        def resize(image: np.ndarray) -> np.ndarray:  # one (C, H, W) image, channel by channel
            return np.stack([np.asarray(Image.fromarray(channel).resize((size, size), Image.BICUBIC))
                             for channel in image])

        if self.images.shape[2:] == (size, size):
            return self
        with ThreadPoolExecutor() as pool:  # Pillow resizes without the GIL
            images = np.stack(list(pool.map(resize, self.images)))
        return Dataset(images, self.labels, self.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """(num_classes,): how many images each class has."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation of the pixels, scaled to [0, 1]."""
        pixels = self.images.transpose(1, 0, 2, 3).reshape(self.images.shape[1], -1)
        mean = np.array([channel.mean(dtype=np.float64) for channel in pixels]) / 255.0
        std = np.array([channel.std(dtype=np.float64) for channel in pixels]) / 255.0
        return mean.astype(np.float32), std.astype(np.float32)
