"""Decoded data sets cached as .npz files, and trusted only while they match their source.

Where: beside the data (a hidden ``.minivit-cache-<split>-native.npz`` in an image folder,
``minivit-cache-<split>.npz`` in cifar-10-batches-py), or, with the environment variable
``MINIVIT_CACHE_DIR`` set, under that folder in one sub-folder per data folder
(``<name>-<hash of its path>/``). Each cache written is announced in one line with its size.
``python -m minivit.data DIR`` lists a data folder's caches; ``--clear-cache`` removes them.

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
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from minivit.atomic import atomic_write, readable_like
from minivit.data import wording
from minivit.data.dataset import DataError, check_images, check_labels

CACHE_FORMAT = 2
CACHE_DIR_VARIABLE = "MINIVIT_CACHE_DIR"
CACHE_PATTERNS = (".minivit-cache-*.npz", "minivit-cache-*.npz")  # beside the data


def cache_dir() -> Path | None:
    """The folder named by MINIVIT_CACHE_DIR, or None (caches sit beside the data)."""
    setting = os.environ.get(CACHE_DIR_VARIABLE, "").strip()
    return Path(setting).expanduser() if setting else None


def cache_file(folder: str | Path, name: str) -> Path:
    """Where the cache ``name`` of the data in ``folder`` lives: ``folder/name``, or with
    MINIVIT_CACHE_DIR set, ``$MINIVIT_CACHE_DIR/<folder's name>-<hash of its path>/name``."""
    folder = Path(folder)
    shared = cache_dir()
    if shared is None:
        return folder / name
    key = hashlib.sha256(str(folder.expanduser().resolve()).encode()).hexdigest()[:12]
    return shared / f"{folder.expanduser().resolve().name}-{key}" / name.lstrip(".")


def caches_of(folder: str | Path) -> list[Path]:
    """The cache files of the data in ``folder`` (and in its cifar-10-batches-py), wherever they are."""
    folder = Path(folder).expanduser()
    found = set()
    for place in (folder, folder / "cifar-10-batches-py"):
        if place.is_dir():
            found |= {path for pattern in CACHE_PATTERNS for path in place.glob(pattern)}
            elsewhere = cache_file(place, "x").parent
            if elsewhere != place and elsewhere.is_dir():
                found |= set(elsewhere.glob("*.npz"))
    return sorted(found)


def size_text(num_bytes: int) -> str:
    """'153.6 MB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} bytes"


def announce(path: Path, images: np.ndarray, seconds: float, data_dir: str | Path) -> None:
    """The one line that says a cache was written: what, how big, where, and how to move or remove it."""
    _, _, height, width = images.shape
    folder = "DATA_DIR" if wording.in_notebook() else data_dir  # a notebook's outputs show no machine's paths
    print(f"cached {len(images):,} decoded images at {height}x{width} ({size_text(path.stat().st_size)}) in "
          f"{wording.shown(path)} after {seconds:.1f} s of decoding; later loads read the cache. Elsewhere: "
          f"{CACHE_DIR_VARIABLE}=DIR; remove: python -m minivit.data {folder} --clear-cache", file=sys.stderr,
          flush=True)


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
        if cache_dir() is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(images=images, labels=labels, class_names=np.array(class_names, dtype=str),
                      source=np.array(record))
        atomic_write(path, lambda file: np.savez(file, **arrays), mode=readable_like(path.parent))
    except OSError:
        return False
    return True
