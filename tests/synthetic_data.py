"""Small data sets in both supported layouts, made by the tests themselves (never the network)."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np


def write_cifar_batches(root: Path, per_batch: int = 20, test_size: int = 30, seed: int = 0) -> Path:
    """root/cifar-10-batches-py in the official format: pickled dicts with bytes keys."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = test_size if name == "test_batch" else per_batch
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [c.encode() for c in ["airplane", "automobile", "bird", "cat", "deer",
                                                   "dog", "frog", "horse", "ship", "truck"]]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_cifar_archive(root: Path) -> Path:
    """A cifar-10-python.tar.gz holding a small cifar-10-batches-py."""
    source = root / "source"
    write_cifar_batches(source)
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230), "black": (10, 10, 10)}


def write_image_folder(root: Path, per_class: int = 16, size: int = 8, test_per_class: int = 6,
                       seed: int = 0, classes=("blue", "green", "red")) -> Path:
    """root/{train,test}/<class>/*.png: each class a colour plus noise, so a model can learn it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                color = np.array(COLORS[name], dtype=np.float64)
                pixels = np.clip(color + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root

