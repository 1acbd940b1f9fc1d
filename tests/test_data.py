"""Data: the official CIFAR-10 format read safely, image folders, splits, clear errors."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from synthetic_data import write_cifar_archive, write_cifar_batches, write_image_folder

from minivit.data import DataError, cifar10, find_data, load_split, stratified_split


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_a_pickle_that_would_run_code():
    with pytest.raises(pickle.UnpicklingError, match=r"Refusing to unpickle (posix|os)\.system"):
        cifar10.restricted_load(pickle.dumps(RunsCode()))


def test_restricted_unpickler_reads_a_real_batch(tmp_path):
    folder = write_cifar_batches(tmp_path)
    batch = cifar10.restricted_load((folder / "data_batch_1").read_bytes())
    assert batch[b"data"].shape == (20, 3072) and len(batch[b"labels"]) == 20


def test_load_cifar10_layout_and_cache(tmp_path):
    folder = write_cifar_batches(tmp_path, per_batch=20, test_size=30)
    train = load_split(tmp_path, "train")
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == np.uint8
    assert train.class_names[0] == "airplane" and train.labels.max() < 10
    raw = pickle.loads((folder / "data_batch_1").read_bytes())
    np.testing.assert_array_equal(train.images[0].reshape(-1), raw[b"data"][0])  # (C, H, W) order
    assert (folder / "minivit-cache-train.npz").is_file()
    for name in cifar10.TRAIN_FILES:  # the cache alone now serves the split
        (folder / name).unlink()
    np.testing.assert_array_equal(load_split(folder, "train").images, train.images)
    assert len(load_split(tmp_path, "test")) == 30


def _tar_with(path, name, data=b"x", kind=tarfile.REGTYPE, linkname=""):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


@pytest.mark.parametrize("member", ["../escape.txt", "cifar-10-batches-py/../../escape.txt", "/tmp/abs.txt"])
def test_archive_members_outside_the_target_are_refused(tmp_path, member):
    archive = _tar_with(tmp_path / "evil.tar.gz", member)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(DataError, match="would land outside"):
        cifar10.safe_extract(archive, target)
    assert not (tmp_path / "escape.txt").exists()


def test_archive_links_are_refused(tmp_path):
    archive = _tar_with(tmp_path / "link.tar.gz", "cifar-10-batches-py/data_batch_1",
                        kind=tarfile.SYMTYPE, linkname="/etc/passwd")
    with pytest.raises(DataError, match="is a link"):
        cifar10.safe_extract(archive, tmp_path)


def test_download_verifies_the_checksum(tmp_path):
    archive = write_cifar_archive(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(DataError, match="Checksum mismatch"):
        cifar10.download_cifar10(root, url=archive.as_uri(), md5="0" * 32)
    assert not any(root.glob("*.tar.gz")) and not any(root.glob("*.part"))


def test_download_extracts_and_loads(tmp_path):
    archive = write_cifar_archive(tmp_path)
    root = tmp_path / "data"
    folder = cifar10.download_cifar10(root, url=archive.as_uri(), md5=cifar10.md5sum(archive))
    assert folder == root / "cifar-10-batches-py"
    assert len(load_split(root, "train")) == 100


def test_the_official_checksum_is_the_documented_one():
    assert cifar10.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"


def test_image_folder(tmp_path):
    write_image_folder(tmp_path, per_class=5, size=8, test_per_class=2)
    train = load_split(tmp_path, "train")
    assert train.class_names == ["blue", "green", "red"]
    assert train.images.shape == (15, 3, 8, 8)
    np.testing.assert_array_equal(np.bincount(train.labels), [5, 5, 5])
    assert train.images[train.labels == 2][:, 0].mean() > 150  # "red" images are red
    assert list(tmp_path.glob(".minivit-cache-train-*.npz"))
    assert len(load_split(tmp_path, "test")) == 6


def test_image_folder_with_mixed_sizes_needs_image_size(tmp_path):
    from PIL import Image

    write_image_folder(tmp_path, per_class=2, size=8)
    Image.new("RGB", (12, 12)).save(tmp_path / "train" / "red" / "big.png")
    with pytest.raises(DataError, match="different sizes"):
        load_split(tmp_path, "train")
    assert load_split(tmp_path, "train", image_size=8).images.shape == (7, 3, 8, 8)


def test_stratified_split_is_deterministic_and_stratified():
    labels = np.repeat(np.arange(4), 50)
    train, val = stratified_split(labels, 0.2, seed=3)
    again_train, again_val = stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(np.bincount(labels[val]), [10, 10, 10, 10])
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == 200
    assert not np.array_equal(stratified_split(labels, 0.2, seed=4)[1], val)


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="does not exist.*--download"):
        find_data(tmp_path / "nowhere")
    with pytest.raises(DataError, match="holds nothing usable.*--data-dir"):
        find_data(tmp_path)
