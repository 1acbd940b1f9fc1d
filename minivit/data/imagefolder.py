"""Image folders, ``root/<split>/<class>/*.png|jpg``: decoded once with Pillow, then cached
(``minivit.data.cache``: where, how big, how to remove).

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
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from minivit.data.cache import announce, cache_file, read_cache, source_record, write_cache
from minivit.data.dataset import DataError, Dataset
from minivit.data.wording import shown

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


def _decode(path: Path, keep: tuple[int, int] | None, image_size: int | None) -> np.ndarray:
    """One image as uint8 (3, H, W): as stored if its (width, height) is ``keep``, else resized to
    image_size x image_size (when given)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise DataError(_bomb_message(path, image.width, image.height, limit))
            image = image.convert("RGB")
            if image_size is not None and image.size != keep and image.size != (image_size, image_size):
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


def load_image_folder(root: str | Path, split: str, image_size: int | None = None,
                      progress: bool = True) -> Dataset:
    """Load ``root/split``; images of differing sizes need ``image_size`` (they are resized to it).

    The first load decodes every image (a progress bar on stderr unless ``progress=False``) and
    caches them at the size they are stored in, when they share one no larger than ``image_size``
    (CIFAR-10's 32 x 32 serves a run at 48 px: one cache, resized on load); otherwise at
    ``image_size``. A cache written is announced in one line (``minivit.data.cache``).
    """
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} does not exist: an image folder needs {split}/<class>/*.png|jpg.")
    class_names, files = _scan(split_dir)
    sources = [path for path, _ in files]
    native = cache_file(root, f".minivit-cache-{split}-native.npz")
    native_record = source_record(sources, root, split=split, image_size=None, class_names=class_names)
    cached = read_cache(native, native_record)
    if cached is not None:
        return at_size(Dataset(cached[0], cached[1], class_names), image_size, progress)
    sized = cache_file(root, f".minivit-cache-{split}-{image_size}.npz") if image_size else None
    sized_record = source_record(sources, root, split=split, image_size=image_size, class_names=class_names)
    cached = read_cache(sized, sized_record) if sized is not None else None
    if cached is not None:
        return Dataset(cached[0], cached[1], class_names)

    start = time.perf_counter()
    stored = _stored_size(sources[0])  # (width, height) of the first image, from its header
    keep_stored = image_size is None or max(stored) <= image_size
    images = _decode_all(files, split_dir, stored if keep_stored else None, image_size, progress)
    shapes = {image.shape for image in images}
    if len(shapes) > 1 and image_size is None:
        raise DataError(f"Images in {split_dir} have different sizes ({sorted(shapes)[:3]} ...): "
                        "pass image_size to resize them all (the model's image_size).")
    if len(shapes) > 1:  # some at the first image's size, the others resized: all to image_size
        images = [_resize(image, image_size) for image in images]
    images = np.stack(images)
    labels = np.array([label for _, label in files], dtype=np.int64)
    at_stored_size = keep_stored and len(shapes) == 1
    cache, record = (native, native_record) if at_stored_size else (sized, sized_record)
    if write_cache(cache, images, labels, class_names, record):
        _remove_old_caches(cache.parent, split, keep=cache)
        if progress:
            announce(cache, images, time.perf_counter() - start, root)
    dataset = Dataset(images, labels, class_names)
    return at_size(dataset, image_size, progress) if at_stored_size else dataset


def _stored_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(f"Cannot decode {path}: {error}") from error


def _decode_all(files: list[tuple[Path, int]], split_dir: Path, keep, image_size, progress: bool) -> list:
    """Every image decoded (``_decode``), on all cores, with a progress bar on stderr."""
    from PIL import Image
    from tqdm import tqdm

    # Pillow warns about, rather than refuses, images between one and two times the limit: refuse both.
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        decoded = pool.map(lambda item: _decode(item[0], keep, image_size), files)  # Pillow decodes without the GIL
        return list(tqdm(decoded, total=len(files), unit="image", file=sys.stderr, disable=not progress,
                         desc=f"decoding {shown(split_dir)} (first load; cached for the next)"))


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """(3, H, W) uint8 -> (3, size, size), Pillow's bicubic (as ``_decode``)."""
    from PIL import Image

    if image.shape[1:] == (size, size):
        return image
    picture = Image.fromarray(image.transpose(1, 2, 0)).resize((size, size), Image.BICUBIC)
    return np.asarray(picture, dtype=np.uint8).transpose(2, 0, 1)


def at_size(dataset: Dataset, image_size: int | None, progress: bool = True) -> Dataset:
    """``dataset`` with every image resized to image_size x image_size (Pillow's bicubic, as decoding
    at that size would give), on all cores, with a progress bar on stderr; unchanged when they are."""
    if not image_size or dataset.images.shape[2:] == (image_size, image_size):
        return dataset
    from tqdm import tqdm

    _, _, height, width = dataset.images.shape
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:  # Pillow resizes without the GIL
        resized = pool.map(lambda image: _resize(image, image_size), dataset.images)
        images = list(tqdm(resized, total=len(dataset), unit="image", file=sys.stderr, disable=not progress,
                           desc=f"resizing {height}x{width} to {image_size}x{image_size}"))
    return Dataset(np.stack(images), dataset.labels, dataset.class_names)


def _remove_old_caches(folder: Path, split: str, keep: Path) -> None:
    """Caches the one just written replaces: those of minivit before 2026-11, named by a hash of their
    source (one more each time the folder changed), and, once the stored size is cached, the caches at
    one image size each (it serves them all)."""
    superseded = r"[0-9a-f]{16}|\d+" if keep.name.endswith("-native.npz") else r"[0-9a-f]{16}"
    for old in folder.glob(f"*minivit-cache-{split}-*.npz"):
        if old != keep and re.fullmatch(rf"\.?minivit-cache-{split}-({superseded})\.npz", old.name):
            old.unlink(missing_ok=True)
