"""CIFAR-10 in its official python format: download, verify, extract safely, unpickle safely.

The batch files are Python pickles. Unpickling runs code named in the file, so
a pickle fetched from the internet is only read with ``RestrictedUnpickler``,
which accepts exactly the few types those files hold (NumPy arrays, dtypes,
dicts, lists, bytes) and refuses everything else.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from minivit.data.dataset import DataError, Dataset

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batch files and nothing else: only these globals may be loaded."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 2 pickles spell byte strings
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"Refusing to unpickle {module}.{name}: CIFAR-10 batch files hold only NumPy arrays, "
                "lists and bytes, so this file is not one (or it has been tampered with)."
            )
        return super().find_class(module, name)


def restricted_load(data: bytes):
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def md5sum(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a .tar.gz, refusing any member that would land outside ``target``
    (absolute paths, '..', links) or that is not a plain file or folder."""
    target = target.resolve()
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            destination = (target / member.name).resolve()
            if os.path.isabs(member.name) or ".." in Path(member.name).parts or \
                    not destination.is_relative_to(target):
                raise DataError(f"Refusing to extract {archive.name}: member {member.name!r} would land "
                                f"outside {target}.")
            if not (member.isfile() or member.isdir()):
                raise DataError(f"Refusing to extract {archive.name}: member {member.name!r} is a link "
                                "or device, which CIFAR-10's archive does not contain.")
        for member in members:
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, target, filter="data")
            else:  # Python < 3.11.4; every member was checked above
                tar.extract(member, target)


def download(url: str, destination: Path, expected_md5: str) -> Path:
    """Download ``url`` with a progress bar, verify its MD5, then move it into place."""
    from tqdm import tqdm

    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=destination.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {destination.name}") as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        actual = md5sum(Path(partial))
        if actual != expected_md5:
            raise DataError(f"Checksum mismatch for {url}: MD5 {actual}, expected {expected_md5}. "
                            "The download is corrupt or not the official file; it was deleted. Try again.")
        os.replace(partial, destination)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return destination


def download_cifar10(root: str | Path, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """Make sure ``root/cifar-10-batches-py`` exists, downloading and extracting if needed."""
    root = Path(root)
    batches = root / "cifar-10-batches-py"
    if (batches / "data_batch_1").is_file():
        return batches
    archive = root / "cifar-10-python.tar.gz"
    if not archive.is_file() or md5sum(archive) != md5:
        try:
            download(url, archive, md5)
        except (OSError, urllib.error.URLError) as error:
            raise DataError(
                f"Could not download CIFAR-10 from {url} ({error}). Without network access, copy "
                f"cifar-10-python.tar.gz (or its extracted cifar-10-batches-py) into {root} yourself, "
                "or point --data-dir at a copy of CIFAR-10 or at an image folder."
            ) from error
    safe_extract(archive, root)
    if not (batches / "data_batch_1").is_file():
        raise DataError(f"{archive} did not contain cifar-10-batches-py/data_batch_1.")
    return batches


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = restricted_load(path.read_bytes())
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch file (no data/labels entries).")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: expected data of shape (N, 3072), got {data.shape}.")
    return data.reshape(-1, 3, 32, 32), np.asarray(batch[b"labels"], dtype=np.int64)


def load_cifar10(batches_dir: str | Path, split: str) -> Dataset:
    """Decode the batch files of ``split`` once; later loads read a cached .npz."""
    batches_dir = Path(batches_dir)
    names = TRAIN_FILES if split == "train" else TEST_FILES
    cache = batches_dir / f"minivit-cache-{split}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as cached:
            return Dataset(cached["images"], cached["labels"], CIFAR10_CLASSES)
    missing = [name for name in names if not (batches_dir / name).is_file()]
    if missing:
        raise DataError(f"{batches_dir} lacks {', '.join(missing)}: the CIFAR-10 folder is incomplete. "
                        "Download it again (--download) or point --data-dir at a complete copy.")
    parts = [_read_batch(batches_dir / name) for name in names]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    try:
        _atomic_savez(cache, images=images, labels=labels)
    except OSError:
        pass  # a read-only folder: decode again next time
    return Dataset(images, labels, CIFAR10_CLASSES)


def _atomic_savez(path: Path, **arrays) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
