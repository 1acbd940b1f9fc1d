"""The lessons' data: where CIFAR-10 is (MINIVIT_DATA_DIR, or downloaded into data/), the images
drawn from it, and paths as a notebook prints them (never the machine's absolute paths)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .settings import REPO

HOW_TO_SET = ("Set MINIVIT_DATA_DIR to a folder holding CIFAR-10 (cifar-10-batches-py from "
              "https://www.cs.toronto.edu/~kriz/cifar.html, or an image folder DIR/train/<class>/*.png|jpg "
              "and DIR/test/<class>/...): `export MINIVIT_DATA_DIR=/path/to/cifar10` before "
              "`jupyter lab`, or `import os; os.environ['MINIVIT_DATA_DIR'] = '/path/to/cifar10'` in the "
              "first cell, then restart the kernel.")


def shown_path(path) -> str:
    """``path`` as a notebook should print it: relative to the repository, never the machine's absolute path."""
    path = Path(path)
    for root, name in ((REPO, "."), (Path.home(), "~")):
        try:
            return str(Path(name) / path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    data = os.environ.get("MINIVIT_DATA_DIR")
    if data:
        try:
            return str(Path("$MINIVIT_DATA_DIR") / path.resolve().relative_to(Path(data).expanduser().resolve()))
        except ValueError:
            pass
    return f".../{path.name}"


def data_dir() -> str:
    """Where CIFAR-10 is: MINIVIT_DATA_DIR, or data/ at the repository's root (downloaded there if missing).

    Every error says how to set MINIVIT_DATA_DIR."""
    from minivit.data import DataError, download_cifar10, find_data

    setting = os.environ.get("MINIVIT_DATA_DIR", "").strip()
    if setting:
        path = Path(setting).expanduser()
        if not path.is_absolute() and not path.exists():
            path = REPO / path  # notebooks run in lessons/; a relative path is taken from the repository
        try:
            find_data(path)
        except DataError as error:
            raise DataError(f"MINIVIT_DATA_DIR={setting} holds no data the lessons can read: {error} "
                            f"{HOW_TO_SET}") from None
        return str(path)
    default = REPO / "data"
    try:
        find_data(default)
    except DataError:
        try:
            download_cifar10(default)
        except Exception as error:  # no network, a proxy, a full disk
            raise DataError(f"MINIVIT_DATA_DIR is not set, and downloading CIFAR-10 into data/ failed "
                            f"({type(error).__name__}: {error}). {HOW_TO_SET}") from None
    return str(default)


def shown_site(site: str) -> str:
    """A source location ("path:line in function ...") as a notebook prints it: a notebook cell's code
    (which IPython keeps in a temporary file with a numbered name) as "this notebook, line N", any
    other file by its name alone (no machine paths)."""
    import re

    cell = re.match(r"^.*ipykernel_\d+[/\\]\d+\.py:(\d+)(.*)$", site)
    if cell:
        return f"a cell of this notebook, line {cell.group(1)}{cell.group(2)}"
    return os.path.basename(site)


def describe_data() -> str:
    """Where the lessons' images come from, in words (no absolute paths)."""
    from minivit.data import find_data

    layout, path = find_data(data_dir())
    source = "MINIVIT_DATA_DIR" if os.environ.get("MINIVIT_DATA_DIR", "").strip() else "data/ (downloaded)"
    kind = ("CIFAR-10's official python batches (cifar-10-batches-py)" if layout == "cifar10"
            else "an image folder (train/<class>/*.png|jpg, test/<class>/...)")
    return f"data from {source}: {kind}"


def load_images(split: str = "train", count: int | None = None, seed: int = 0, image_size: int | None = None):
    """A Dataset from the lessons' data; ``count`` images drawn at random (all when None), at
    ``image_size`` (by default CIFAR-10's 32 x 32: an image folder of another size is resized)."""
    from minivit.data import DataError, load_split

    try:
        dataset = load_split(data_dir(), split, image_size=image_size)
    except DataError as error:
        message = str(error).replace("--data-dir", "MINIVIT_DATA_DIR")
        if HOW_TO_SET not in message:  # data_dir() says it already when no data was found at all
            message = f"{message} {HOW_TO_SET}"
        raise DataError(message) from None
    if count is not None and count < len(dataset):
        dataset = dataset.subset(np.sort(np.random.default_rng(seed).permutation(len(dataset))[:count]))
    if image_size is None and dataset.images.shape[2:] != (32, 32):
        dataset = dataset.resized(32)  # the lessons' models see 32 x 32 images
    return dataset
