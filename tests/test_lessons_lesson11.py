"""Lesson 11's model and numbers (lessons/support/lesson11.py): the model is trained once into its
cache folder and reused after, an interrupted run is continued, a checkpoint of the learner's own is
taken as given (a missing one named); the baseline is the trained run's own initial weights; and each
summary the lesson's conclusions cite tells structure from its absence.

The lesson itself runs top to bottom in fast mode in tests/test_lessons.py (the same code path as
its full run: a tiny model, one epoch on a few images)."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lessons"))

from support import lesson11 as L11  # noqa: E402

TINY = ["--hidden-size", "16", "--num-hidden-layers", "1", "--num-attention-heads", "2",
        "--intermediate-size", "32", "--batch-size", "16", "--no-progress"]


# --- the numbers behind the figures ---------------------------------------------------------------

def test_spectrum_summary_tells_a_flat_spectrum_from_a_concentrated_one():
    flat = L11.spectrum_summary(np.full(40, 1 / 40))
    assert flat["effective"] == pytest.approx(40) and flat["first"] == pytest.approx(5 / 40)
    one = L11.spectrum_summary(np.eye(40)[0])
    assert one["effective"] == pytest.approx(1) and one["first"] == pytest.approx(1)
    # random filters (what the initialisation draws) have a nearly flat spectrum; low-rank ones do not
    rng = np.random.default_rng(0)
    random_filters = rng.standard_normal((128, 192))
    low_rank = rng.standard_normal((128, 3)) @ rng.standard_normal((3, 192)) + 0.01 * random_filters
    shares = [np.linalg.svd(f - f.mean(axis=0), compute_uv=False) ** 2 for f in (random_filters, low_rank)]
    assert L11.spectrum_summary(shares[0])["effective"] > 60
    assert L11.spectrum_summary(shares[1])["effective"] < 4 and L11.spectrum_summary(shares[1])["first"] > 0.99


def _similarity(positions, g):
    unit = positions / np.linalg.norm(positions, axis=1, keepdims=True)
    return (unit @ unit.T).reshape(g, g, g, g)


def test_similarity_by_distance_sees_2d_structure_and_its_absence():
    g = 4
    random_positions = np.random.default_rng(1).standard_normal((g * g, 512))
    distances, means, correlation = L11.similarity_by_distance(_similarity(random_positions, g))
    assert distances[0] == pytest.approx(1) and distances[1] == pytest.approx(np.sqrt(2))
    assert distances[-1] == pytest.approx(np.hypot(g - 1, g - 1)) and len(distances) == len(means)
    assert abs(correlation) < 0.2 and np.all(np.abs(means) < 0.15)  # random: no structure
    # smooth 2-D embeddings (sines and cosines of the row and the column): near positions are alike
    rows, columns = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    frequencies = np.array([0.3, 0.6, 0.9])
    smooth = np.concatenate([f(np.outer(axis.ravel(), frequencies)) for axis in (rows, columns)
                             for f in (np.sin, np.cos)], axis=1)
    _, means, correlation = L11.similarity_by_distance(_similarity(smooth, g))
    assert correlation < -0.8 and means[0] > means[-1] + 0.5


def test_rollout_peak_is_one_for_a_flat_map_and_n_for_one_patch():
    flat = np.full((2, 3, 3), 0.05)
    one = np.zeros((1, 3, 3))
    one[0, 1, 2] = 0.4
    assert np.allclose(L11.rollout_peak(flat), 1.0)
    assert np.allclose(L11.rollout_peak(one), 9.0)


# --- the model: trained once, reused, continued, or the learner's ----------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from synthetic_data import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("lesson11-data") / "images")


def test_the_command_is_the_readme_recipe():
    assert L11.training_command("runs/x", "DATA", 10) == [
        "--preset", "cifar-cpu", "--data-dir", "DATA", "--out", "runs/x", "--epochs", "10", "--warmup-epochs", "1"]


@pytest.mark.slow
def test_the_model_is_trained_once_then_reused(data, tmp_path, capsys):
    folder = tmp_path / "cache"
    checkpoint = L11.trained_checkpoint(folder, data, 2, TINY)
    assert "Training the lesson's model once" in capsys.readouterr().out
    assert checkpoint == folder / "checkpoint-last.npz" and checkpoint.is_file()
    written = checkpoint.stat().st_mtime_ns
    assert L11.trained_checkpoint(folder, data, 2, TINY) == checkpoint
    assert "Reusing the model trained in" in capsys.readouterr().out
    assert checkpoint.stat().st_mtime_ns == written  # not trained again
    assert "not the lesson's" not in capsys.readouterr().out  # the same size as asked: no warning
    smaller = ["--hidden-size", "8", *TINY[2:]]  # the cache now holds a model of another size
    assert L11.trained_checkpoint(folder, data, 2, smaller) == checkpoint  # still reused, never overwritten
    said = capsys.readouterr().out
    assert "not the lesson's cifar-cpu as it is now" in said and "hidden_size 16 (the lesson's model: 8)" in said, said
    assert checkpoint.stat().st_mtime_ns == written


@pytest.mark.slow
def test_an_interrupted_run_is_continued_to_its_budget(data, tmp_path, capsys):
    from minivit.checkpoint import read_checkpoint
    from minivit.train import train
    from minivit.training.arguments import config_from_args

    folder = tmp_path / "cache"
    config, _ = config_from_args(L11.training_command(folder, data, 2, [*TINY, "--max-steps", "1"]))
    train(config)  # stopped after one step, as Ctrl-C would stop it
    assert read_checkpoint(folder / "checkpoint-last.npz")[0]["step"] == 1
    capsys.readouterr()
    checkpoint = L11.trained_checkpoint(folder, data, 2, TINY)
    assert "Continuing the interrupted run" in capsys.readouterr().out
    meta = read_checkpoint(checkpoint)[0]
    assert meta["step"] > 1 and meta["epoch"] == pytest.approx(2)


def test_ctrl_c_stops_the_lesson_rather_than_look_into_a_half_trained_model(data, tmp_path, monkeypatch):
    import os
    import signal

    import minivit.train

    train = minivit.train.train
    monkeypatch.setattr(minivit.train, "train", lambda config, resume=False: train(
        config, resume=resume, on_step=lambda trainer, step: os.kill(os.getpid(), signal.SIGINT)))
    with pytest.raises(KeyboardInterrupt, match="run this cell again"):
        L11.trained_checkpoint(tmp_path / "cache", data, 2, TINY, progress=False)
    assert (tmp_path / "cache" / "checkpoint-last.npz").is_file()  # saved, for the next call to continue


def test_your_checkpoint_is_taken_and_a_missing_one_named(tmp_path, capsys):
    yours = tmp_path / "mine.npz"
    with pytest.raises(FileNotFoundError, match="your_checkpoint = .*mine.npz.*no such file.*None"):
        L11.trained_checkpoint(tmp_path / "cache", "unused", 10, yours=yours)
    yours.write_bytes(b"")
    assert L11.trained_checkpoint(tmp_path / "cache", "unused", 10, yours=yours) == yours
    assert not (tmp_path / "cache").exists()  # nothing trained


def test_missing_data_names_minivit_data_dir(tmp_path, monkeypatch):
    from support import data_dir

    from minivit.data import DataError

    monkeypatch.setenv("MINIVIT_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="MINIVIT_DATA_DIR"):
        L11.trained_checkpoint(tmp_path / "cache", data_dir(), 10)


def test_the_baseline_is_the_runs_own_initial_weights():
    from minivit import ViTConfig, ViTForImageClassification, backend

    config = ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, num_labels=3)
    trained = ViTForImageClassification(config, seed=5)
    for parameter in trained.parameters():
        parameter.data += 1.0  # "training"
    trained.checkpoint_meta = {"train_config": {"seed": 5}, "class_names": ["a", "b", "c"]}
    initial = L11.initial_model(trained)
    at_seed = ViTForImageClassification(config, seed=5).state_dict()
    other_seed = ViTForImageClassification(config, seed=0).state_dict()
    state = initial.state_dict()
    assert set(state) == set(at_seed)
    for name in state:
        assert np.array_equal(backend.to_numpy(state[name]), backend.to_numpy(at_seed[name])), name
    assert any(not np.array_equal(backend.to_numpy(state[n]), backend.to_numpy(other_seed[n])) for n in state)
    assert initial.checkpoint_meta["class_names"] == ["a", "b", "c"]


def test_a_finetuned_models_baseline_says_it_is_random(capsys):
    from minivit import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, num_labels=3)
    finetuned = ViTForImageClassification(config)
    finetuned.checkpoint_meta = {"train_config": {"seed": 0, "init_from": "runs/pretrain/checkpoint-last.npz"}}
    L11.initial_model(finetuned)
    assert "random initialisation" in capsys.readouterr().out
