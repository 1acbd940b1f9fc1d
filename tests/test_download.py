"""--download: refused beside --data-dir (it would be recorded but mean nothing), and a failed
download leaves nothing behind: no empty data/ and no empty runs/."""

import pytest
from synthetic_data import write_cifar_archive, write_image_folder

from minivit.data import DataError, cifar10
from minivit.train import main as train_main
from minivit.training.data import resolve_data_dir


def test_download_with_data_dir_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = write_image_folder(tmp_path / "images", per_class=4, size=8)
    assert train_main(["--download", "--data-dir", str(data), "--max-steps", "1", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --download fetches CIFAR-10 into ./data, and --data-dir names data you "
                            "already have: give one of them") and error.count("\n") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images"]  # no runs/, no data/
    with pytest.raises(ValueError, match="give one of them"):  # and from Python
        resolve_data_dir(str(data), download=True)


def test_a_failed_download_leaves_no_folders_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def unreachable(url, destination, expected_md5):
        destination.parent.mkdir(parents=True, exist_ok=True)
        raise OSError("Name or service not known")

    monkeypatch.setattr(cifar10, "download", unreachable)
    assert train_main(["--download", "--max-steps", "1", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "Could not download CIFAR-10" in error and "--data-dir" in error
    assert list(tmp_path.iterdir()) == []  # neither data/ nor runs/ (nor runs/cifar-tiny)


def test_a_failed_extraction_removes_what_it_made_and_keeps_what_was_there(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("the user's")
    archive = tmp_path / "not-cifar.tar.gz"
    import tarfile

    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "data" / "notes.txt", arcname="something-else.txt")
    with pytest.raises(DataError, match="did not contain cifar-10-batches-py"):
        cifar10.download_cifar10(tmp_path / "data" / "deeper" / "cifar", url=archive.as_uri(),
                                 md5=cifar10.md5sum(archive))
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == ["notes.txt"]


def test_a_download_that_works_is_kept(tmp_path):
    archive = write_cifar_archive(tmp_path)
    folder = cifar10.download_cifar10(tmp_path / "new" / "data", url=archive.as_uri(), md5=cifar10.md5sum(archive))
    assert (folder / "data_batch_1").is_file()
