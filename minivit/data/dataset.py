"""The Dataset container and the resolution of ``--data-dir`` into one of the supported layouts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataError(RuntimeError):
    """Data that is missing or unusable; the message says how to get or fix it."""


@dataclass
class Dataset:
    """Images as uint8 (N, C, H, W) and integer labels (N,), on the host."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(f"Dataset images must be uint8 (N, C, H, W); got {self.images.dtype} "
                            f"{self.images.shape}.")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels.")

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

    def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation of the pixels, scaled to [0, 1]."""
        pixels = self.images.transpose(1, 0, 2, 3).reshape(self.images.shape[1], -1)
        mean = np.array([channel.mean(dtype=np.float64) for channel in pixels]) / 255.0
        std = np.array([channel.std(dtype=np.float64) for channel in pixels]) / 255.0
        return mean.astype(np.float32), std.astype(np.float32)


HOW_TO_GET_DATA = (
    "Either pass --download to fetch CIFAR-10 from its official address, or point --data-dir at "
    "an official CIFAR-10 folder (cifar-10-batches-py, or the folder holding it) or at an image "
    "folder laid out as DIR/train/<class>/*.png|jpg and DIR/test/<class>/*.png|jpg."
)


def find_data(data_dir: str | Path) -> tuple[str, Path]:
    """("cifar10", batches_dir) or ("imagefolder", root) for what ``data_dir`` holds."""
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(f"--data-dir {root} does not exist. {HOW_TO_GET_DATA}")
    if not root.is_dir():
        raise DataError(f"--data-dir {root} is not a folder. {HOW_TO_GET_DATA}")
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "data_batch_1").is_file() or (candidate / "minivit-cache-train.npz").is_file():
            return "cifar10", candidate
    if (root / "train").is_dir() and any(path.is_dir() for path in (root / "train").iterdir()):
        return "imagefolder", root
    raise DataError(f"--data-dir {root} holds nothing usable: no cifar-10-batches-py with "
                    f"data_batch_1, and no train/<class>/ image folders. {HOW_TO_GET_DATA}")


def load_split(data_dir: str | Path, split: str, image_size: int | None = None) -> Dataset:
    """The "train" or "test" split of the data set in ``data_dir``."""
    from minivit.data.cifar10 import load_cifar10
    from minivit.data.imagefolder import load_image_folder

    if split not in ("train", "test"):
        raise ValueError(f"Unknown split {split!r}: use 'train' or 'test'.")
    layout, path = find_data(data_dir)
    if layout == "cifar10":
        dataset = load_cifar10(path, split)
        return dataset.resized(image_size) if image_size else dataset
    return load_image_folder(path, split, image_size=image_size)
