"""Which of the supported layouts ``--data-dir`` holds, and loading one of its splits."""

from __future__ import annotations

from pathlib import Path

from minivit.data.cache import cache_file
from minivit.data.cifar10 import load_cifar10
from minivit.data.dataset import DataError, Dataset
from minivit.data.imagefolder import at_size, load_image_folder
from minivit.data.wording import wording

SPLITS = ("train", "test")

def how_to_get_data() -> str:
    """Where data comes from, in the words of the caller (``minivit.data.wording``)."""
    words = wording()
    return (f"Either {words.download}, or {words.point_at} an official CIFAR-10 folder (cifar-10-batches-py, "
            "or the folder holding it) or at an image folder laid out as DIR/train/<class>/*.png|jpg and "
            "DIR/test/<class>/*.png|jpg.")


def find_data(data_dir: str | Path) -> tuple[str, Path]:
    """("cifar10", batches_dir) or ("imagefolder", root) for what ``data_dir`` holds."""
    root = Path(data_dir).expanduser()
    named = wording().name(root)
    if not root.exists():
        raise DataError(f"{named} does not exist. {how_to_get_data()}")
    if not root.is_dir():
        raise DataError(f"{named} is not a folder. {how_to_get_data()}")
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "data_batch_1").is_file() or cache_file(candidate, "minivit-cache-train.npz").is_file():
            return "cifar10", candidate
    train = root / "train"
    if train.is_dir() and any(path.is_dir() and not path.name.startswith(".") for path in train.iterdir()):
        return "imagefolder", root
    raise DataError(f"{named} holds nothing usable: no cifar-10-batches-py with "
                    f"data_batch_1, and no train/<class>/ image folders. {how_to_get_data()}")


def load_split(data_dir: str | Path, split: str, image_size: int | None = None, progress: bool = True) -> Dataset:
    """The "train" or "test" split of the data set in ``data_dir``, resized to image_size if given.

    The first load decodes and caches it, with a progress bar and one line about the cache on
    stderr (``progress=False``: silent); see ``minivit.data.cache``.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}: use one of {', '.join(SPLITS)}.")
    layout, path = find_data(data_dir)
    if layout == "cifar10":
        return at_size(load_cifar10(path, split, progress=progress), image_size, progress)
    return load_image_folder(path, split, image_size=image_size, progress=progress)
