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
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from minivit.atomic import atomic_write
from minivit.data.cache import announce, cache_file, read_cache, source_record, write_cache
from minivit.data.dataset import DataError, Dataset, check_images, check_labels
from minivit.data.wording import wording

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
    """Download ``url`` with a progress bar and verify its MD5; only then does it appear at ``destination``."""
    from tqdm import tqdm

    destination.parent.mkdir(parents=True, exist_ok=True)

    def fetch(out) -> None:
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {destination.name}") as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != expected_md5:
            raise DataError(f"Checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected {expected_md5}. "
                            "The download is corrupt or not the official file; it was deleted. Try again.")

    return atomic_write(destination, fetch)


def download_cifar10(root: str | Path, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """Make sure ``root/cifar-10-batches-py`` exists, downloading and extracting if needed.

    A download or extraction that fails leaves nothing behind: the folders it made are removed.
    """
    root = Path(root)
    batches = root / "cifar-10-batches-py"
    if (batches / "data_batch_1").is_file():
        return batches
    made = [folder for folder in (batches, root, *root.parents) if not folder.exists()]  # innermost first
    try:
        return _download_and_extract(root, batches, url, md5)
    except BaseException:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)  # only folders this call made
        raise


def _download_and_extract(root: Path, batches: Path, url: str, md5: str) -> Path:
    archive = root / "cifar-10-python.tar.gz"
    if not archive.is_file() or md5sum(archive) != md5:
        try:
            download(url, archive, md5)
        except (OSError, urllib.error.URLError) as error:
            raise DataError(
                f"Could not download CIFAR-10 from {url} ({error}). Without network access, copy "
                f"cifar-10-python.tar.gz (or its extracted cifar-10-batches-py) into {root} yourself, "
                f"or {wording().point_at} a copy of CIFAR-10 or at an image folder."
            ) from error
    safe_extract(archive, root)
    if not (batches / "data_batch_1").is_file():
        raise DataError(f"{archive} did not contain cifar-10-batches-py/data_batch_1.")
    return batches


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels (N,)) from one batch file, every problem naming the file."""
    try:
        batch = restricted_load(path.read_bytes())
    except pickle.UnpicklingError as error:
        if str(error).startswith("Refusing"):  # RestrictedUnpickler: a pickle that names other code
            raise DataError(f"{path}: {error}") from error
        raise DataError(f"{path} is not a readable CIFAR-10 batch file ({error}).") from error
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise DataError(f"{path} is not a readable CIFAR-10 batch file ({type(error).__name__}: {error}).") from error
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch file (no data/labels entries).")
    data = check_images(np.asarray(batch[b"data"]), str(path))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: expected data of shape (N, 3072), got {data.shape}.")
    labels = check_labels(np.asarray(batch[b"labels"]), len(CIFAR10_CLASSES), str(path))
    if len(labels) != len(data):
        raise DataError(f"{path} holds {len(data)} images but {len(labels)} labels.")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(batches_dir: str | Path, split: str, progress: bool = True) -> Dataset:
    """Decode the batch files of ``split``; later loads read a cache checked against the batch files
    (announced in one line when written, unless ``progress=False``).

    The cache alone serves the split when the batch files are gone.
    """
    batches_dir = Path(batches_dir)
    names = TRAIN_FILES if split == "train" else TEST_FILES
    sources = [batches_dir / name for name in names]
    present = [path for path in sources if path.is_file()]
    cache = cache_file(batches_dir, f"minivit-cache-{split}.npz")
    record = source_record(present, batches_dir) if present else None
    cached = read_cache(cache, record)
    if cached is not None:
        images, labels, _ = cached
        return Dataset(images, labels, CIFAR10_CLASSES)
    missing = [path.name for path in sources if path not in present]
    if missing:
        raise DataError(f"{batches_dir} lacks {', '.join(missing)}: the CIFAR-10 folder is incomplete. "
                        f"{wording().get_again} or {wording().point_at} a complete copy.")
    start = time.perf_counter()
    parts = [_read_batch(path) for path in sources]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    if write_cache(cache, images, labels, CIFAR10_CLASSES, record) and progress:
        announce(cache, images, time.perf_counter() - start, batches_dir)
    return Dataset(images, labels, CIFAR10_CLASSES)
