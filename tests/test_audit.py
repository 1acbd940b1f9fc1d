"""Data that would quietly mislead a run (minivit.data.audit): refused or named, with the classes and
the counts, before training starts; evaluate names the classes its split lacks."""

import json
import shutil

import numpy as np
import pytest
from synthetic_data import write_image_folder
from tiny_runs import TINY_ARCHITECTURE

from minivit.data import DataError, Dataset
from minivit.data.audit import audit_training_data, lacking_classes, refuse_empty_classes, small_class_warnings
from minivit.evaluate import main as evaluate_main
from minivit.train import TrainConfig, train
from minivit.training.data import split_for_validation

TINY_MODEL = TINY_ARCHITECTURE


def dataset(counts: dict, seed=0) -> Dataset:
    """Random 4x4 images, ``counts[name]`` of each class."""
    labels = np.concatenate([np.full(count, label) for label, count in enumerate(counts.values())]).astype(np.int64)
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 3, 4, 4)).astype(np.uint8)
    return Dataset(images, labels, list(counts))


def train_briefly(data_dir, out, capsys, **changes) -> list[str]:
    """Train one epoch on ``data_dir``; the warnings it printed."""
    values = dict(model=TINY_MODEL, data_dir=str(data_dir), out=str(out), epochs=1, batch_size=8,
                  val_fraction=0.25, progress=False, max_steps=1)
    train(TrainConfig(**{**values, **changes}))
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]


def test_a_class_without_training_images_is_refused_with_the_counts():
    data = dataset({"cat": 5, "dog": 0, "emu": 7})
    with pytest.raises(DataError, match=r"no images of class\(es\) 'dog' \(the other classes have 5 to 7\).*"
                                        r"--classes"):
        refuse_empty_classes(data)
    with pytest.raises(DataError, match=r"no images of class\(es\) 'dog'"):  # before the validation split
        split_for_validation(data, 0.25, 0)


def test_a_class_far_smaller_than_the_largest_is_named():
    assert small_class_warnings(dataset({"cat": 40, "dog": 5, "emu": 30})) == []  # 1/8 of the largest
    [warning] = small_class_warnings(dataset({"cat": 40, "dog": 4, "emu": 3}))
    assert "class(es) 'dog' (4), 'emu' (3) have at most 1/10 of the training images of 'cat' (40)" in warning
    assert "--train-per-class 3" in warning


def test_a_test_split_that_lacks_a_class_or_has_one_more_is_named():
    train_set = dataset({"cat": 6, "dog": 6, "emu": 6})
    test = dataset({"cat": 3, "emu": 3, "fox": 2}, seed=1)
    warnings = audit_training_data(train_set, test=test)
    assert any("the test split has no images of class(es) 'dog' (the training split has 6)" in w for w in warnings)
    assert any("the test split has class(es) 'fox' (2) that the training split lacks" in w for w in warnings)
    assert audit_training_data(train_set, test=dataset({"cat": 2, "dog": 2, "emu": 2}, seed=1)) == []


def test_copies_of_training_images_in_the_validation_or_test_split_are_counted():
    train_set, validation, test = dataset({"cat": 6, "dog": 6}), dataset({"cat": 2, "dog": 2}, seed=1), \
        dataset({"cat": 3, "dog": 3}, seed=2)
    validation.images[1] = train_set.images[2]
    test.images[4] = train_set.images[7]  # a 'dog' of training, labelled 'dog' in test
    test.images[0] = validation.images[3]
    warnings = audit_training_data(train_set, validation, test)
    assert len(warnings) == 2
    assert "1 of the 4 validation images are exact copies of training data (validation image 1 ('cat') = a " \
           "training image ('cat'))" in warnings[0]
    assert "2 of the 6 test images are exact copies of training data (test image 0 ('cat') = a validation image " \
           "('dog'), test image 4 ('dog') = a training image ('dog'))" in warnings[1]
    assert audit_training_data(train_set, validation, test, warn=False) == []  # (ranks other than 0)


def test_training_names_what_would_mislead_it_before_it_starts(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data", per_class=30, size=8, test_per_class=4)
    for path in sorted((root / "train" / "red").iterdir())[3:]:  # 3 red images beside 30 of the others
        path.unlink()
    shutil.rmtree(root / "test" / "green")
    shutil.copy(root / "train" / "blue" / "0005.png", root / "test" / "blue" / "copy.png")
    warnings = train_briefly(root, tmp_path / "run", capsys)
    assert len(warnings) == 3, warnings
    assert "class(es) 'red' (2) have at most 1/10 of the training images of" in warnings[0]
    assert "the test split has no images of class(es) 'green' (the training split has 22)" in warnings[1]
    assert "1 of the 9 test images are exact copies of training data" in warnings[2]
    # --test-every-epoch loads the test split anyway: the same warnings
    assert train_briefly(root, tmp_path / "run2", capsys, test_every_epoch=True) == warnings


def test_a_test_split_that_cannot_be_read_is_named_not_refused(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data", per_class=8, size=8, test_per_class=2)
    for path in (root / "test" / "red").iterdir():
        path.unlink()
    [warning] = train_briefly(root, tmp_path / "run", capsys)
    assert f"the test split of {root} was not checked:" in warning and "red hold no .png/.jpg images" in warning


def test_evaluate_names_the_classes_its_split_lacks(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data", per_class=8, size=8, test_per_class=3)
    train_briefly(root, tmp_path / "run", capsys)
    shutil.rmtree(root / "test" / "red")
    checkpoint = str(tmp_path / "run" / "checkpoint-last.npz")
    assert evaluate_main(["--checkpoint", checkpoint, "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "the test split has no images of 1 of the model's 3 classes (red): the accuracy covers the others" in out
    assert evaluate_main(["--checkpoint", checkpoint, "--data-dir", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["lacking_classes"] == ["red"]
    assert lacking_classes(dataset({"cat": 1, "dog": 0}), ["cat", "dog", "emu"]) == ["dog", "emu"]
