"""The ablation lab's runner (lessons/support/ablations.py) at toy size, and the check of a learner's
conclusions against a measured table: right answers pass, each named slip fails by name."""

import sys
from pathlib import Path

import pytest
from synthetic_data import write_image_folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lessons"))

from support import ablations  # noqa: E402
from support.diagnosis import NotYet  # noqa: E402

TOY_MODEL = dict(image_size=16, hidden_size=16, num_attention_heads=2, intermediate_size=32, num_labels=3)
TOY_RECIPE = dict(max_steps=2, batch_size=8, epochs=1, warmup_epochs=0.5, val_fraction=0.25, eval_batch_size=16)


def test_the_lab_trains_every_setting_and_seed_once(tmp_path, monkeypatch):
    data_dir = write_image_folder(tmp_path / "images", per_class=16, size=16)
    rows = ablations.run_lab(tmp_path / "runs", data_dir, seeds=(0, 1), time_budget=60, model=TOY_MODEL,
                             recipe=TOY_RECIPE, log=lambda line: None)
    assert [(row["label"], row["seed"]) for row in rows] == [
        (label, seed) for label in ablations.settings() for seed in (0, 1)]
    assert len(rows) == 10 and all(row["steps"] == 2 and 0 <= row["val_accuracy"] <= 1 for row in rows)
    from minivit.checkpoint import load_checkpoint

    variant = load_checkpoint(tmp_path / "runs" / "position_embedding_type=none-seed1" / "checkpoint-last.npz")
    assert variant.config.position_embedding_type == "none" and variant.config.pooling == "cls"
    import minivit.train

    monkeypatch.setattr(minivit.train, "train", lambda *args, **kwargs: pytest.fail("a finished run was retrained"))
    again = ablations.run_lab(tmp_path / "runs", data_dir, seeds=(0, 1), time_budget=60, model=TOY_MODEL,
                              recipe=TOY_RECIPE, log=lambda line: None)
    assert again == rows
    with pytest.raises(ValueError, match="another configuration"):  # e.g. the preset at its earlier size
        ablations.run_lab(tmp_path / "runs", data_dir, seeds=(0, 1), time_budget=60,
                          model={**TOY_MODEL, "intermediate_size": 64}, recipe=TOY_RECIPE, log=lambda line: None)
    table = ablations.summarise(rows)
    assert set(table["ablations"]) == {ablation.name for ablation in ablations.ABLATIONS}
    assert "variant - baseline" in ablations.format_table(table)
    with pytest.raises(ValueError, match="at least two seeds"):
        ablations.run_lab(tmp_path / "runs", data_dir, seeds=(0,))


def test_an_interrupted_lab_stops_and_its_run_continues_where_it_stopped(tmp_path, monkeypatch):
    """Ctrl-C (a notebook's interrupt) during a run: the trainer saves it and returns; the lab must stop
    rather than record the partial run as a result and start the next, and the next call resumes it."""
    import os
    import signal

    import minivit.train

    data_dir = write_image_folder(tmp_path / "images", per_class=16, size=16)
    train = minivit.train.train

    def interrupted_after_one_step(config, resume=False, on_step=None):
        return train(config, resume=resume, on_step=lambda trainer, step: os.kill(os.getpid(), signal.SIGINT))

    monkeypatch.setattr(minivit.train, "train", interrupted_after_one_step)
    with pytest.raises(KeyboardInterrupt, match="run the lab again"):
        ablations.run_lab(tmp_path / "runs", data_dir, seeds=(0, 1), time_budget=60, model=TOY_MODEL,
                          recipe=TOY_RECIPE, log=lambda line: None)
    first = tmp_path / "runs" / "baseline-seed0"
    assert (first / "checkpoint-last.npz").is_file() and not (first / ablations.RESULT_FILE).exists()
    assert not (tmp_path / "runs" / "baseline-seed1").exists()  # the lab did not go on to the next run

    monkeypatch.setattr(minivit.train, "train", train)
    lines = []
    rows = ablations.run_lab(tmp_path / "runs", data_dir, seeds=(0, 1), time_budget=60, model=TOY_MODEL,
                             recipe=TOY_RECIPE, log=lines.append)
    assert "continuing the interrupted run" in lines[0]
    assert rows[0]["steps"] == 2 and len(rows) == 10  # the resumed run trained its second step, not two more
    from minivit.checkpoint import read_checkpoint

    assert read_checkpoint(first / "checkpoint-last.npz")[2]["step"] == 2

    # Ctrl-C on a run's last step: that run is complete (resuming it would have nothing to train), so
    # its result is kept and the lab stops before the next run
    monkeypatch.setattr(minivit.train, "train", interrupted_after_one_step)
    with pytest.raises(KeyboardInterrupt, match="go on with the next"):
        ablations.run_lab(tmp_path / "more", data_dir, seeds=(0, 1), time_budget=60, model=TOY_MODEL,
                          recipe={**TOY_RECIPE, "max_steps": 1}, log=lambda line: None)
    assert (tmp_path / "more" / "baseline-seed0" / ablations.RESULT_FILE).is_file()
    assert not (tmp_path / "more" / "baseline-seed1").exists()


def test_each_ablation_starts_from_the_presets_own_value():
    """The lab's table names each baseline by its value: it must be the value the baseline run trains
    with (the preset's, since the baseline run changes nothing), or the table would mislabel it."""
    from minivit.config import ViTConfig, preset

    baseline = preset(ablations.PRESET)
    for ablation in ablations.ABLATIONS:
        assert getattr(baseline, ablation.field) == ablation.baseline, ablation.name
        assert ablation.variant != ablation.baseline and hasattr(ViTConfig, ablation.field), ablation.name


def measured():
    """A table as the lab makes it: position embeddings help by 6 points, pooling within the spread
    (1.2 points), 4-px patches hurt under the same budget, depth within the spread."""
    rows = []
    accuracies = {"baseline": [50.0, 51.2, 50.6], "position_embedding_type=none": [44.0, 45.0, 44.6],
                  "pooling=mean": [50.8, 51.5, 51.1], "patch_size=4": [40.0, 41.0, 40.2],
                  "num_hidden_layers=2": [50.1, 49.9, 50.3]}
    for label, values in accuracies.items():
        rows += [{"label": label, "val_accuracy": value / 100} for value in values]
    return ablations.summarise(rows)


RIGHT = {"position embeddings": ("learned", 6.07), "pooling": ("neither", 0), "patch size": ("8", 10.2),
         "depth": ("neither", 0)}


def test_right_conclusions_pass(capsys):
    table = measured()
    assert table["spread"] == pytest.approx(1.2)
    assert {name: row["better"] for name, row in table["ablations"].items()} == {
        "position embeddings": "learned", "pooling": "neither", "patch size": "8", "depth": "neither"}
    ablations.check_conclusions(RIGHT, table)
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("name, answer, words", [
    ("pooling", ("mean", 0.5), ["within the seed spread (1.2)", "neither"]),
    ("position embeddings", ("neither", 0), ["learned leads by 6.1 points", "beyond the seeds' noise"]),
    ("patch size", ("4", 10.2), ["the worse of the two"]),
    ("position embeddings", ("learned", 0.061), ["a fraction", "accuracy points"]),
    ("position embeddings", ("learned", 6.2), ["gap between the best seeds"]),
    ("position embeddings", ("learned", 3.0), ["the means differ by 6.1"]),
    ("depth", ("deeper", 1), ["not one of"]),
])
def test_wrong_conclusions_are_named(name, answer, words):
    with pytest.raises(NotYet) as failure:
        ablations.check_conclusions({**RIGHT, name: answer}, measured())
    for word in words:
        assert word in str(failure.value), str(failure.value)


def test_lesson_8s_solution_reads_the_table_and_its_check_passes(capsys):
    from support import lesson08

    conclusions = lesson08.ablation_conclusions(measured())
    assert conclusions["pooling"] == ("neither", 0) and conclusions["depth"] == ("neither", 0)
    assert conclusions["position embeddings"][0] == "learned"
    assert conclusions["position embeddings"][1] == pytest.approx(6.0667, abs=1e-3)
    assert conclusions["patch size"] == ("8", pytest.approx(10.2, abs=1e-9))
    lesson08.check_ablation_conclusions(lesson08.ablation_conclusions, measured())
    assert "PASS" in capsys.readouterr().out


def test_lesson_8s_check_names_a_reading_that_ignores_the_seed_spread():
    """The likeliest slip: the larger mean wins, however small the difference."""
    from support import lesson08

    def larger_mean_wins(table):
        return {name: (row["variant"][0] if row["difference"] > 0 else row["baseline"][0], abs(row["difference"]))
                for name, row in table["ablations"].items()}

    with pytest.raises(NotYet) as failure:
        lesson08.check_ablation_conclusions(larger_mean_wins, measured())
    assert "within the seed spread (1.2)" in str(failure.value), str(failure.value)
