"""Nothing of the user's, or of the repository's, is overwritten without an explicit flag.

Every writer of a path the user names (visualize's --out, evaluate's --figure, the transformers
export, the benchmark scripts that write the repository's figures) refuses a file that is
already there, names it and the flag, and writes nothing; with the flag it replaces it. The
files a command names inside a minivit run folder are that run's own, and are refreshed.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_data import write_image_folder
from test_validation import one_error_line  # the same error check
from tiny_runs import TINY_FLAGS

import minivit
from minivit import convert
from minivit.evaluate import main as evaluate_main
from minivit.outputs import WouldOverwrite, check_new_files, in_run_folder
from minivit.train import main as train_main
from minivit.visualize import FIGURE_NAMES
from minivit.visualize import main as visualize_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=16, size=8)


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    assert train_main(["--data-dir", str(data_dir), "--out", str(out), "--max-steps", "2", *TINY_FLAGS]) == 0
    return out / "checkpoint-last.npz"




def test_check_new_files_names_the_file_and_the_flag(tmp_path):
    (tmp_path / "a.png").write_bytes(b"mine")
    with pytest.raises(WouldOverwrite, match=r"a\.png already exists: nothing was written\. Pass --overwrite "
                                             r"to replace it, or choose another --out\."):
        check_new_files([tmp_path / "a.png", tmp_path / "b.png"], "--out")
    assert check_new_files([tmp_path / "a.png"], "--out", overwrite=True) == [tmp_path / "a.png"]
    assert check_new_files([tmp_path / "b.png"], "--out") == [tmp_path / "b.png"]


def test_visualize_refuses_to_replace_figures_in_a_named_folder(checkpoint, data_dir, tmp_path, capsys):
    """The README's own command once replaced the repository's committed figures without a word."""
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "learned-filters.png").write_bytes(b"the user's figure")
    argv = ["--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--out", str(figures), "--images", "8"]
    assert visualize_main(argv) == 2
    error = one_error_line(capsys)
    assert f"{figures / 'learned-filters.png'} already exists" in error and "--overwrite" in error
    assert (figures / "learned-filters.png").read_bytes() == b"the user's figure"
    assert sorted(path.name for path in figures.iterdir()) == ["learned-filters.png"]  # nothing else written

    assert visualize_main([*argv, "--overwrite"]) == 0
    assert (figures / "learned-filters.png").read_bytes() != b"the user's figure"
    assert sorted(path.name for path in figures.iterdir()) == sorted(FIGURE_NAMES)


def test_visualize_draws_into_the_run_folder_by_default_and_refreshes_it(checkpoint, data_dir, capsys):
    argv = ["--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--images", "8"]
    assert visualize_main(argv) == 0
    assert visualize_main(argv) == 0  # the run's own figures: refreshed, not refused
    figures = checkpoint.parent / "figures"
    assert sorted(path.name for path in figures.iterdir()) == sorted(FIGURE_NAMES)
    assert str(figures / "learned-filters.png") in capsys.readouterr().out


def test_visualize_default_beside_a_checkpoint_outside_a_run_folder_is_not_replaced(checkpoint, data_dir,
                                                                                     tmp_path, capsys):
    copy = tmp_path / "mine" / "model.npz"
    copy.parent.mkdir()
    shutil.copy(checkpoint, copy)
    (copy.parent / "figures").mkdir()
    (copy.parent / "figures" / "attention-rollout.png").write_bytes(b"mine")
    assert not in_run_folder(copy)
    assert visualize_main(["--checkpoint", str(copy), "--data-dir", str(data_dir), "--images", "8"]) == 2
    assert "attention-rollout.png already exists" in one_error_line(capsys)
    assert (copy.parent / "figures" / "attention-rollout.png").read_bytes() == b"mine"


def test_evaluate_refuses_an_existing_figure_without_overwrite(checkpoint, data_dir, tmp_path, capsys):
    figure = tmp_path / "confusion.png"
    figure.write_bytes(b"the user's figure")
    argv = ["--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--figure", str(figure)]
    assert evaluate_main(argv) == 2
    error = one_error_line(capsys)
    assert f"{figure} already exists: nothing was written. Pass --overwrite" in error and "--figure" in error
    assert figure.read_bytes() == b"the user's figure"
    assert evaluate_main([*argv, "--overwrite"]) == 0
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_refreshes_its_own_figure_in_a_run_folder(checkpoint, data_dir):
    argv = ["--checkpoint", str(checkpoint), "--data-dir", str(data_dir), "--json"]
    assert evaluate_main(argv) == 0
    assert evaluate_main(argv) == 0
    assert (checkpoint.parent / "confusion-test.png").is_file()


def test_the_transformers_export_refuses_a_folder_holding_another_export(tmp_path):
    model = minivit.ViTForImageClassification(minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=16,
                                                                num_hidden_layers=1, num_attention_heads=2,
                                                                intermediate_size=32, num_labels=3))
    folder = convert.save_hf_pretrained(model, tmp_path / "export")
    before = (folder / "model.safetensors").read_bytes()
    other = minivit.ViTForImageClassification(model.config, seed=1)
    with pytest.raises(WouldOverwrite, match=r"model\.safetensors.*config\.json.*Pass overwrite=True"):
        convert.save_hf_pretrained(other, folder)
    assert (folder / "model.safetensors").read_bytes() == before
    convert.save_hf_pretrained(other, folder, overwrite=True)
    assert (folder / "model.safetensors").read_bytes() != before


@pytest.mark.parametrize("script,flags", [
    ("benchmarks/plot_cpu_training.py", []),
    ("benchmarks/finetune_demo.py", ["--data-dir", "no-such-data", "--pretrain-budget", "1"]),
    ("benchmarks/cpu_training_budget.py", ["--data-dir", "no-such-data", "--preset", "cifar-cpu"]),
])
def test_benchmark_scripts_keep_the_committed_results(script, flags):
    """They write the repository's figures and results: only with --overwrite, checked before any work."""
    committed = {path: path.read_bytes() for path in [*(ROOT / "figures").glob("*.png"),
                                                      *(ROOT / "benchmarks" / "results").glob("*.json")]}
    run = subprocess.run([sys.executable, str(ROOT / script), *flags], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode != 0
    assert "already exist" in run.stderr and "--overwrite" in run.stderr, run.stderr
    assert {path: path.read_bytes() for path in committed} == committed
