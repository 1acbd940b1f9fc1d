"""Image folders, ``root/<split>/<class>/*.png|jpg``: decoded once with Pillow, then cached.

What counts:
  * a class is a sub-folder of ``root/<split>``; hidden folders (``.ipynb_checkpoints``,
    ``.git``) and hidden files (``._photo.jpg``, ``.DS_Store``) are not data and are skipped;
  * a class folder without images, and images lying in ``root/<split>`` outside any class
    folder, are refused: either would silently change which classes there are;
  * an image larger than Pillow's ``Image.MAX_IMAGE_PIXELS`` (89 megapixels by default; far
    beyond any data set image) is refused unread, as a decompression bomb.
"""

from __future__ import annotations

import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from minivit.data.cache import read_cache, source_record, write_cache
from minivit.data.dataset import DataError, Dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _scan(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image path, label), ...]) of one split, checked as the module docstring says."""
    entries = sorted(path for path in split_dir.iterdir() if not _is_hidden(path))
    loose = [path.name for path in entries if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise DataError(f"{split_dir} holds images outside any class folder ({', '.join(loose[:3])}"
                        f"{' ...' if len(loose) > 3 else ''}): put each image in {split_dir}/<class>/.")
    class_names = [path.name for path in entries if path.is_dir()]
    if not class_names:
        raise DataError(f"{split_dir} has no class folders: expected {split_dir}/<class>/*.png|jpg.")
    files, empty = [], []
    for label, name in enumerate(class_names):
        images = [path for path in sorted((split_dir / name).iterdir())
                  if not _is_hidden(path) and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]
        if not images:
            empty.append(name)
        files.extend((path, label) for path in images)
    if empty:
        raise DataError(f"{split_dir}: class folder(s) {', '.join(empty)} hold no .png/.jpg images. Remove them "
                        "(or add images): an empty folder would be a class that no image teaches.")
    return class_names, files


def _decode(path: Path, image_size: int | None) -> np.ndarray:
    """One image as uint8 (3, H, W), resized to image_size x image_size if given."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise DataError(_bomb_message(path, image.width, image.height, limit))
            image = image.convert("RGB")
            if image_size is not None and image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.BICUBIC)
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)  # (3, H, W)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"Refusing {path}: {error} (a decompression bomb, or not a data set image).") from error
    except (OSError, ValueError, SyntaxError) as error:  # Pillow's errors for broken files
        raise DataError(f"Cannot decode {path}: {error}") from error


def _bomb_message(path: Path, width: int, height: int, limit: int) -> str:
    return (f"Refusing {path}: {width}x{height} is {width * height:,} pixels, more than Pillow's "
            f"MAX_IMAGE_PIXELS ({limit:,}); an image this large is no data set image and may be a "
            "decompression bomb.")


def load_image_folder(root: str | Path, split: str, image_size: int | None = None) -> Dataset:
    """Load ``root/split``; images of differing sizes need ``image_size`` (they are resized to it)."""
    from PIL import Image

    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} does not exist: an image folder needs {split}/<class>/*.png|jpg.")
    class_names, files = _scan(split_dir)
    cache = root / f".minivit-cache-{split}-{image_size or 'native'}.npz"
    record = source_record([path for path, _ in files], root, split=split, image_size=image_size,
                           class_names=class_names)
    cached = read_cache(cache, record)
    if cached is not None:
        images, labels, _ = cached
        return Dataset(images, labels, class_names)

    # Pillow warns about, rather than refuses, images between one and two times the limit: refuse both.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        decoded = list(pool.map(lambda item: _decode(item[0], image_size), files))  # Pillow decodes without the GIL
    shapes = {image.shape for image in decoded}
    if len(shapes) > 1:
        raise DataError(f"Images in {split_dir} have different sizes ({sorted(shapes)[:3]} ...): "
                        "pass image_size to resize them all (the model's image_size).")
    images = np.stack(decoded)
    labels = np.array([label for _, label in files], dtype=np.int64)
    if write_cache(cache, images, labels, class_names, record):
        _remove_old_caches(root, split)
    return Dataset(images, labels, class_names)


def _remove_old_caches(root: Path, split: str) -> None:
    """Caches of minivit before 2026-11 were named by a hash of their source, one more each time the
    folder changed: the record inside the cache replaces them."""
    for old in root.glob(f".minivit-cache-{split}-*.npz"):
        if re.fullmatch(rf"\.minivit-cache-{split}-[0-9a-f]{{16}}\.npz", old.name):
            old.unlink(missing_ok=True)
