"""Decoded data sets cached as .npz files beside their source, and trusted only while they match it.

A cache holds the images, the labels, the class names and a record of what it was
made from: the name, size and modification time of every source file (hashed), and
the image size asked for. It is used only while that record matches the source as it
is now: an edited, added or removed file, a cache that cannot be read, or one written
by an older minivit, is decoded again and the cache rewritten. Caches are written
atomically (``minivit.atomic``), with the read permissions of the folder they sit in, so
whoever may read the data may read its cache. A folder minivit may not write to
simply goes without a cache.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from minivit.atomic import atomic_write, readable_like
from minivit.data.dataset import DataError, check_images, check_labels

CACHE_FORMAT = 2


def source_record(files: list[Path], root: Path, **settings) -> str:
    """What a cache is made from, as one JSON string: the settings (e.g. image_size), the number
    of source files and a hash of their names (relative to ``root``), sizes and modification times."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return json.dumps({"format": CACHE_FORMAT, **settings, "files": len(files), "sha256": digest.hexdigest()},
                      sort_keys=True)


def read_cache(path: Path, record: str | None):
    """(images, labels, class_names) from the cache at ``path``, or None when there is none, it is
    unreadable or malformed, or it was made from something else than ``record`` describes
    (``record=None``: the source is gone, any well-formed cache will do)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            saved_record = str(cached["source"])
            images, labels = cached["images"], cached["labels"]
            class_names = [str(name) for name in cached["class_names"]]
        if json.loads(saved_record).get("format") != CACHE_FORMAT:
            return None
        if record is not None and json.loads(saved_record) != json.loads(record):
            return None
        if images.ndim != 4 or len(images) != len(labels):
            return None
        return check_images(images, str(path)), check_labels(labels, len(class_names), str(path)), class_names
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, DataError):
        return None


def write_cache(path: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str], record: str) -> bool:
    """Write the cache atomically; False (and nothing written) where the folder is read-only."""
    try:
        arrays = dict(images=images, labels=labels, class_names=np.array(class_names, dtype=str),
                      source=np.array(record))
        atomic_write(path, lambda file: np.savez(file, **arrays), mode=readable_like(path.parent))
    except OSError:
        return False
    return True
