"""Image folders, ``root/<split>/<class>/*.png|jpg``: decoded once with Pillow, then cached."""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from minivit.data.dataset import DataError, Dataset

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _scan(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    class_names = sorted(path.name for path in split_dir.iterdir() if path.is_dir())
    if not class_names:
        raise DataError(f"{split_dir} has no class folders: expected {split_dir}/<class>/*.png|jpg.")
    files = []
    for label, name in enumerate(class_names):
        for path in sorted((split_dir / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.append((path, label))
    if not files:
        raise DataError(f"{split_dir} has class folders but no .png or .jpg images in them.")
    return class_names, files


def _fingerprint(files: list[tuple[Path, int]], image_size: int | None) -> str:
    digest = hashlib.sha1(str(image_size).encode())
    for path, label in files:
        stat = path.stat()
        digest.update(f"{path.name}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _decode(path: Path, image_size: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image_size is not None and image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.BICUBIC)
            return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)  # (3, H, W)
    except OSError as error:
        raise DataError(f"Cannot decode {path}: {error}") from error


def load_image_folder(root: str | Path, split: str, image_size: int | None = None) -> Dataset:
    """Load ``root/split``; images of differing sizes need ``image_size`` (they are resized to it)."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} does not exist: an image folder needs {split}/<class>/*.png|jpg.")
    class_names, files = _scan(split_dir)
    cache = Path(root) / f".minivit-cache-{split}-{_fingerprint(files, image_size)}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as cached:
            return Dataset(cached["images"], cached["labels"], class_names)

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:  # Pillow decodes without the GIL
        decoded = list(pool.map(lambda item: _decode(item[0], image_size), files))
    shapes = {image.shape for image in decoded}
    if len(shapes) > 1:
        raise DataError(f"Images in {split_dir} have different sizes ({sorted(shapes)[:3]} ...): "
                        "pass image_size to resize them all (the model's image_size).")
    images = np.stack(decoded)
    labels = np.array([label for _, label in files], dtype=np.int64)
    try:
        handle, temporary = tempfile.mkstemp(dir=root, suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            np.savez(file, images=images, labels=labels)
        os.replace(temporary, cache)
    except OSError:
        pass  # a read-only folder: decode again next time
    return Dataset(images, labels, class_names)
