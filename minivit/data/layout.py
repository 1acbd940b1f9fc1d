"""Which of the supported layouts ``--data-dir`` holds, and loading one of its splits."""

from __future__ import annotations

from pathlib import Path

from minivit.data.cifar10 import load_cifar10
from minivit.data.dataset import DataError, Dataset
from minivit.data.imagefolder import load_image_folder

SPLITS = ("train", "test")

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
    train = root / "train"
    if train.is_dir() and any(path.is_dir() and not path.name.startswith(".") for path in train.iterdir()):
        return "imagefolder", root
    raise DataError(f"--data-dir {root} holds nothing usable: no cifar-10-batches-py with "
                    f"data_batch_1, and no train/<class>/ image folders. {HOW_TO_GET_DATA}")


def load_split(data_dir: str | Path, split: str, image_size: int | None = None) -> Dataset:
    """The "train" or "test" split of the data set in ``data_dir``, resized to image_size if given."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    layout, path = find_data(data_dir)
    if layout == "cifar10":
        dataset = load_cifar10(path, split)
        return dataset.resized(image_size) if image_size else dataset
    return load_image_folder(path, split, image_size=image_size)
