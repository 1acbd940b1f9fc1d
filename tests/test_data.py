"""Data: the official CIFAR-10 format read safely, image folders, splits, clear errors."""

import io
import os
import pickle
import sys
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


# --- caches: where, how big, proportionate, announced, movable, removable -------------------------

def _pillow_resized(path, size):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC)).transpose(2, 0, 1)


def test_one_cache_at_the_stored_size_serves_every_larger_size(tmp_path):
    """CIFAR-10's 32-px JPEGs once took one cache per resolution (759 MB for 236 MB of JPEGs)."""
    from minivit.data.imagefolder import load_image_folder

    write_image_folder(tmp_path, per_class=3, size=8, test_per_class=1)
    (tmp_path / ".minivit-cache-train-12.npz").write_bytes(b"a per-resolution cache of an older minivit")
    at_12 = load_image_folder(tmp_path, "train", image_size=12)
    assert sorted(path.name for path in tmp_path.glob(".minivit-cache-*")) == [".minivit-cache-train-native.npz"]
    first = sorted((tmp_path / "train" / "blue").iterdir())[0]
    np.testing.assert_array_equal(at_12.images[0], _pillow_resized(first, 12))  # as decoding at 12 px would
    assert load_image_folder(tmp_path, "train", image_size=16).images.shape == (9, 3, 16, 16)
    assert load_image_folder(tmp_path, "train").images.shape == (9, 3, 8, 8)
    assert len(list(tmp_path.glob(".minivit-cache-*"))) == 1  # no cache per size


def test_images_larger_than_the_run_are_cached_at_the_run_size(tmp_path):
    from minivit.data.imagefolder import load_image_folder

    write_image_folder(tmp_path, per_class=2, size=16, test_per_class=1)
    assert load_image_folder(tmp_path, "train", image_size=8).images.shape == (6, 3, 8, 8)
    assert [path.name for path in tmp_path.glob(".minivit-cache-*")] == [".minivit-cache-train-8.npz"]


def test_the_first_load_shows_progress_and_announces_its_cache(tmp_path, capsys):
    write_image_folder(tmp_path, per_class=5, size=8, test_per_class=1)
    load_split(tmp_path, "train")
    error = capsys.readouterr().err
    assert f"decoding {tmp_path / 'train'} (first load; cached for the next)" in error  # the bar
    cache = tmp_path / ".minivit-cache-train-native.npz"
    line = error.strip().splitlines()[-1]
    assert line.startswith("cached 15 decoded images at 8x8 (") and f" in {cache} after " in line
    assert "MINIVIT_CACHE_DIR=DIR" in line and f"python -m minivit.data {tmp_path} --clear-cache" in line
    from minivit.data.cache import size_text

    assert size_text(cache.stat().st_size) in line
    load_split(tmp_path, "train")
    assert capsys.readouterr().err == ""  # read from the cache: nothing to say


def test_progress_false_is_silent(tmp_path, capsys):
    write_image_folder(tmp_path, per_class=2, size=8, test_per_class=1)
    write_cifar_batches(tmp_path / "cifar")
    load_split(tmp_path, "train", progress=False)
    load_split(tmp_path / "cifar", "train", progress=False)
    assert capsys.readouterr().err == ""


def test_training_says_what_the_first_load_does_unless_no_progress(tmp_path, capsys):
    from minivit.train import main as train_main

    flags = ["--max-steps", "1", "--hidden-size", "16", "--num-hidden-layers", "1", "--num-attention-heads", "2",
             "--intermediate-size", "32", "--image-size", "8", "--patch-size", "4", "--batch-size", "8"]
    quiet = write_image_folder(tmp_path / "quiet", per_class=8, size=8)
    assert train_main(["--data-dir", str(quiet), "--out", str(tmp_path / "run1"), "--no-progress", *flags]) == 0
    assert "decoding" not in capsys.readouterr().err
    data = write_image_folder(tmp_path / "data", per_class=8, size=8)
    assert train_main(["--data-dir", str(data), "--out", str(tmp_path / "run2"), *flags]) == 0
    error = capsys.readouterr().err
    assert "decoding" in error and "cached 24 decoded images at 8x8" in error


def test_minivit_cache_dir_keeps_caches_out_of_the_data_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINIVIT_CACHE_DIR", str(tmp_path / "caches"))
    data = write_image_folder(tmp_path / "data", per_class=2, size=8, test_per_class=1)
    before = sorted(path.relative_to(data) for path in data.rglob("*"))
    load_split(data, "train")
    assert sorted(path.relative_to(data) for path in data.rglob("*")) == before  # the data folder untouched
    caches = list((tmp_path / "caches").glob("data-*/minivit-cache-train-native.npz"))
    assert len(caches) == 1 and str(caches[0]) in capsys.readouterr().err
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(data / "train" / "red" / "new.png")
    assert len(load_split(data, "train")) == 7  # still checked against its images, and rebuilt

    batches = write_cifar_batches(tmp_path / "cifar")
    train = load_split(tmp_path / "cifar", "train")
    for name in cifar10.TRAIN_FILES:  # the cache alone serves the split, from MINIVIT_CACHE_DIR too
        (batches / name).unlink()
    assert not list(batches.glob("*cache*"))
    np.testing.assert_array_equal(load_split(tmp_path / "cifar", "train").images, train.images)


@pytest.mark.parametrize("elsewhere", [False, True])
def test_the_data_command_lists_and_clears_caches_and_keeps_the_data(tmp_path, monkeypatch, capsys, elsewhere):
    from minivit.data.__main__ import main as data_main

    if elsewhere:
        monkeypatch.setenv("MINIVIT_CACHE_DIR", str(tmp_path / "caches"))
    data = write_image_folder(tmp_path / "data", per_class=2, size=8, test_per_class=1)
    load_split(data, "train", progress=False)
    load_split(data, "test", progress=False)
    images = sorted(data.rglob("*.png"))
    assert data_main([str(data)]) == 0
    listing = capsys.readouterr().out
    assert "an image folder" in listing and "2 cache file(s)" in listing and "--clear-cache" in listing
    assert data_main([str(data), "--clear-cache"]) == 0
    assert "removed 2 cache file(s)" in capsys.readouterr().out
    assert sorted(data.rglob("*.png")) == images and not list(data.glob(".minivit-cache-*"))
    if elsewhere:
        assert not list((tmp_path / "caches").iterdir())


# --- messages in the words of the caller: flags on the command line, MINIVIT_DATA_DIR in a notebook ----

@pytest.mark.parametrize("notebook", [False, True])
def test_missing_data_messages_name_what_the_caller_can_set(tmp_path, monkeypatch, notebook):
    from minivit.data import wording

    monkeypatch.setattr(wording, "in_notebook", lambda: notebook)
    messages = []
    for action in (lambda: find_data(tmp_path / "nowhere"), lambda: find_data(tmp_path),
                   lambda: cifar10.download_cifar10(tmp_path / "get", url=(tmp_path / "none.tar.gz").as_uri())):
        with pytest.raises(DataError) as caught:
            action()
        messages.append(str(caught.value))
    incomplete = write_cifar_batches(tmp_path / "part")
    (incomplete / "data_batch_3").unlink()
    with pytest.raises(DataError) as caught:
        load_split(tmp_path / "part", "train")
    messages.append(str(caught.value))
    for message in messages:
        if notebook:
            assert "MINIVIT_DATA_DIR" in message and "--data-dir" not in message and "--download" not in message
        else:
            assert "--data-dir" in message and "MINIVIT_DATA_DIR" not in message
    assert ("leave MINIVIT_DATA_DIR unset" if notebook else "pass --download") in messages[0]


def test_a_jupyter_kernel_is_recognised(monkeypatch):
    import types

    from minivit.data import wording

    class ZMQInteractiveShell:
        pass

    assert not wording.in_notebook()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=ZMQInteractiveShell))
    assert wording.in_notebook() and wording.wording() is wording.NOTEBOOK


def test_in_a_notebook_the_cache_line_shows_no_machine_path(tmp_path, monkeypatch, capsys):
    """A notebook's outputs are committed and shared: no absolute path of the machine in them."""
    import re

    from minivit.data import wording

    monkeypatch.setattr(wording, "in_notebook", lambda: True)
    write_image_folder(tmp_path, per_class=2, size=8, test_per_class=1)
    load_split(tmp_path, "train")
    error = capsys.readouterr().err
    assert "cached 6 decoded images" in error and "python -m minivit.data DATA_DIR --clear-cache" in error
    assert str(tmp_path) not in error and not re.search(r"(?<![\w.~$])/(tmp|home|root|work)/", error)


def test_resizing_on_load_shows_progress_and_equals_pillow(tmp_path, capsys):
    folder = write_cifar_batches(tmp_path, per_batch=4, test_size=4)
    at_40 = load_split(tmp_path, "test", image_size=40)
    assert "resizing 32x32 to 40x40" in capsys.readouterr().err
    raw = pickle.loads((folder / "test_batch").read_bytes())[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    from PIL import Image

    expected = np.asarray(Image.fromarray(raw).resize((40, 40), Image.BICUBIC)).transpose(2, 0, 1)
    np.testing.assert_array_equal(at_40.images[0], expected)
    load_split(tmp_path, "test", image_size=40, progress=False)
    assert capsys.readouterr().err == ""
