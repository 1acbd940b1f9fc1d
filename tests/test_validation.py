"""Every option checked before any work, data checked with the file named, caches that cannot go stale,
weight files read without trust, and every refusal as one ``error:`` line.
"""

import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
from synthetic_data import write_cifar_batches, write_image_folder
from tiny_runs import TINY_FLAGS

from minivit import convert
from minivit.data import DataError, Dataset, load_split
from minivit.evaluate import main as evaluate_main
from minivit.finetune import main as finetune_main
from minivit.train import main as train_main
from minivit.visualize import main as visualize_main
from minivit.weight_readers import WeightFileError, read_npz, read_safetensors


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"), per_class=16, size=8)


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    assert train_main(["--data-dir", str(data_dir), "--out", str(out), "--max-steps", "2", *TINY_FLAGS]) == 0
    return out / "checkpoint-last.npz"


def one_error_line(capsys) -> str:
    """The command's stderr, which must be exactly one 'error:' line."""
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and "Traceback" not in error, error
    return error


# --- options -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags,expected", [
    (["--lr", "nan"], "--lr must be a finite number > 0; got nan"),
    (["--lr", "0"], "--lr must be a finite number > 0; got 0"),
    (["--lr", "1e-3", "--min-lr", "1e-2"], "--min-lr (0.01), where the cosine ends, must not exceed --lr (0.001)"),
    (["--min-lr", "-1"], "--min-lr must be a finite number >= 0"),
    (["--seed", "-1"], "--seed must be a whole number in [0, 4294967295]; got -1"),
    (["--seed", str(2**40)], "--seed must be a whole number in [0, 4294967295]"),
    (["--max-steps", "0"], "--max-steps must be at least 1"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be at least 1"),
    (["--train-per-class", "0"], "--train-per-class must be at least 1"),
    (["--time-budget", "inf"], "--time-budget must be a finite number > 0"),
    (["--time-budget", "0"], "--time-budget must be a finite number > 0"),
    (["--warmup-epochs", "-1"], "--warmup-epochs must be a finite number >= 0"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0"),
    (["--lr", "0.5", "--weight-decay", "2"], "--lr x --weight-decay must be below 1 for adamw"),
    (["--grad-clip", "inf"], "--grad-clip must be a finite number >= 0"),
    (["--momentum", "1"], "--momentum must be in [0, 1)"),
    (["--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    (["--val-fraction", "1"], "--val-fraction must be in (0, 1)"),
    (["--val-fraction", "0"], "--val-fraction must be in (0, 1)"),
    (["--layer-decay", "0"], "--layer-decay must be in (0, 1]"),
    (["--layer-norm-eps", "0"], "--layer-norm-eps must be in (0, 1]"),
    (["--layer-norm-eps", "nan"], "--layer-norm-eps must be in (0, 1]; got nan"),
    (["--initializer-range", "inf"], "--initializer-range must be in (0, 1]; got inf"),
    (["--initializer-range", "0"], "--initializer-range must be in (0, 1]"),
    (["--hidden-dropout-prob", "nan"], "--hidden-dropout-prob must be in [0, 1)"),
    (["--mixup-alpha", "nan"], "--mixup-alpha must be a finite number >= 0; got nan"),
    (["--cutmix-alpha", "-1"], "--cutmix-alpha must be a finite number >= 0"),
    (["--mix-prob", "2"], "--mix-prob must be in [0, 1]"),
    (["--randaugment-magnitude", "11"], "--randaugment-magnitude must be in [0, 10]"),
    (["--randaugment-ops", "100"], "--randaugment-ops must be a whole number in [0, 13]"),
    (["--crop-padding", "-1"], "--crop-padding must be at least 0"),
    (["--classes", "red"], "--classes must name at least two classes"),
    (["--classes", ","], "--classes must name at least two classes"),
    (["--classes", "red,red"], "--classes lists a class twice"),
    (["--freeze", "embeddings,,layernorm"], "--freeze 'embeddings,,layernorm' has an empty name"),
    (["--recipe", "finetune"], "--recipe finetune needs --init-from"),
    (["--backend", "tpu"], "argument --backend: invalid choice: 'tpu'"),
    (["--epochs", "1.5"], "argument --epochs: invalid int value: '1.5'"),
])
def test_bad_options_are_refused_before_any_work(data_dir, tmp_path, capsys, flags, expected):
    assert train_main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), *TINY_FLAGS, *flags]) == 2
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_every_bad_option_is_listed_at_once(data_dir, tmp_path, capsys):
    assert train_main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--lr", "-1", "--epochs", "0",
                       "--momentum", "5"]) == 2
    error = one_error_line(capsys)
    assert "--lr" in error and "--epochs" in error and "--momentum" in error


def test_a_validation_split_that_leaves_a_class_without_images_is_refused(data_dir, tmp_path, capsys):
    """16 images per class: 0.02 gives each class round(0.32) = 0 validation images."""
    assert train_main(["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--val-fraction", "0.02",
                       *TINY_FLAGS]) == 2
    error = one_error_line(capsys)
    assert "--val-fraction 0.02 leaves class(es) blue, green, red without validation images" in error
    assert "choose --val-fraction in [0.0625, 0.938]" in error
    assert not (tmp_path / "run" / "checkpoint-last.npz").exists()


@pytest.mark.parametrize("flags,expected", [
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--batch-size", "-5"], "--batch-size must be at least 1"),
    (["--figure", "no/such/folder/confusion.png"], "the folder no/such/folder does not exist"),
    (["--figure", "confusion.txt"], ".txt is no image format matplotlib writes"),
    (["--split", "validation"], "argument --split: invalid choice"),
])
def test_evaluate_refuses_bad_options_before_any_work(checkpoint, data_dir, tmp_path, capsys, monkeypatch, flags,
                                                     expected):
    monkeypatch.chdir(tmp_path)
    assert evaluate_main(["--checkpoint", str(checkpoint), "--data-dir", str(data_dir), *flags]) == 2
    assert expected in one_error_line(capsys)
    assert not list(checkpoint.parent.glob("confusion-*.png"))  # refused before evaluating


def test_evaluate_reports_a_test_class_the_model_does_not_know(checkpoint, data_dir, tmp_path, capsys):
    test_data = write_image_folder(tmp_path / "data", per_class=2, size=8, classes=("blue", "green", "red",
                                                                                   "black"))
    assert evaluate_main(["--checkpoint", str(checkpoint), "--data-dir", str(test_data)]) == 2
    assert "has class(es) black that the model does not know: it was trained on blue, green, red" in \
        one_error_line(capsys)


def test_evaluate_labels_a_test_split_missing_a_class_by_name(checkpoint, data_dir, tmp_path, capsys):
    """Class folders are numbered by their sorted names: without 'green', 'red' would become class 1."""
    from minivit.evaluate import evaluate_checkpoint

    test_data = write_image_folder(tmp_path / "data", per_class=2, size=8, classes=("blue", "red"))
    result = evaluate_checkpoint(checkpoint, test_data)
    assert result["class_names"] == ["blue", "green", "red"] and result["per_class"]["green"] is None
    assert np.array(result["confusion_matrix"]).sum(axis=1).tolist() == [6, 0, 6]


@pytest.mark.parametrize("flags,expected", [(["--images", "0"], "--images must be at least 1"),
                                            (["--seed", "-2"], "--seed must be a whole number")])
def test_visualize_refuses_bad_options(checkpoint, data_dir, tmp_path, capsys, flags, expected):
    assert visualize_main(["--checkpoint", str(checkpoint), "--data-dir", str(data_dir),
                           "--out", str(tmp_path / "figures"), *flags]) == 2
    assert expected in one_error_line(capsys)


def test_finetune_alias_is_the_training_command_with_the_finetune_recipe(checkpoint, data_dir, tmp_path):
    from minivit.training.arguments import config_from_args
    from minivit.training.options import RECIPES

    config, resume = config_from_args(["--recipe", "finetune", "--init-from", str(checkpoint), "--data-dir",
                                       str(data_dir)])
    assert not resume and config.lr == RECIPES["finetune"]["lr"] and config.out == "runs/finetune"
    assert finetune_main(["--init-from", str(checkpoint), "--data-dir", str(data_dir), "--out", str(tmp_path / "ft"),
                          "--epochs", "1", "--batch-size", "8", "--no-progress"]) == 0
    saved = json.loads((tmp_path / "ft" / "train_config.json").read_text())
    assert saved["lr"] == RECIPES["finetune"]["lr"] and saved["init_from"] == str(checkpoint)


def test_the_command_line_prints_one_line_not_a_traceback(tmp_path):
    """As a user sees it: a separate process, an argparse error and a data error."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for argv in (["--lr", "x"], ["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]):
        finished = subprocess.run([sys.executable, "-m", "minivit.train", *argv], capture_output=True, text=True,
                                  env=env, timeout=120)
        assert finished.returncode == 2
        assert finished.stderr.startswith("error: ") and finished.stderr.count("\n") == 1, finished.stderr


# --- data --------------------------------------------------------------------------------------------

def rewrite_batch(folder, name="data_batch_1", **changes):
    path = folder / "cifar-10-batches-py" / name
    batch = pickle.loads(path.read_bytes())
    for key, change in changes.items():
        batch[key.encode()] = change(batch[key.encode()])
    time.sleep(0.01)  # a new modification time, even on a coarse clock
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return path


@pytest.mark.parametrize("label", [-1, 10])
def test_cifar_labels_outside_the_classes_are_refused_by_file(tmp_path, label):
    write_cifar_batches(tmp_path)
    rewrite_batch(tmp_path, labels=lambda labels: [label] + labels[1:])
    with pytest.raises(DataError, match=rf"data_batch_1: 1 label\(s\) outside \[0, 9\].*{label} \(image 0\)"):
        load_split(tmp_path, "train")


def test_cifar_float_pixels_are_refused_not_turned_black(tmp_path):
    write_cifar_batches(tmp_path)
    rewrite_batch(tmp_path, data=lambda data: data.astype(np.float32) / 255)
    with pytest.raises(DataError, match=r"data_batch_1: pixels are float32 .*scaled to \[0, 1\]"):
        load_split(tmp_path, "train")


def test_cifar_integer_pixels_out_of_range_are_refused(tmp_path):
    write_cifar_batches(tmp_path)
    rewrite_batch(tmp_path, data=lambda data: data.astype(np.int32) * 2)
    with pytest.raises(DataError, match=r"data_batch_1: pixel values must lie in \[0, 255\]"):
        load_split(tmp_path, "train")


def test_a_cifar_batch_that_is_not_one_is_named(tmp_path):
    folder = write_cifar_batches(tmp_path)
    (folder / "data_batch_2").write_bytes(b"\x80\x02 truncated")
    with pytest.raises(DataError, match="data_batch_2 is not a readable CIFAR-10 batch file"):
        load_split(tmp_path, "train")


def test_the_cifar_cache_follows_its_source(tmp_path):
    folder = write_cifar_batches(tmp_path)
    before = load_split(tmp_path, "train")
    rewrite_batch(tmp_path, data=lambda data: 255 - data)  # an edited batch
    after = load_split(tmp_path, "train")
    np.testing.assert_array_equal(after.images[:20], 255 - before.images[:20])
    (folder / "minivit-cache-train.npz").write_bytes(b"PK\x03\x04 garbage")  # an unreadable cache
    np.testing.assert_array_equal(load_split(tmp_path, "train").images, after.images)
    with np.load(folder / "minivit-cache-train.npz") as cache:  # rebuilt, and readable again
        assert "source" in cache.files


def test_caches_are_readable_by_whoever_may_read_the_data(tmp_path):
    previous = os.umask(0o077)  # a private umask: new files 0600
    try:
        folder = write_cifar_batches(tmp_path)
        folder.chmod(0o755)
        load_split(tmp_path, "train")
    finally:
        os.umask(previous)
    assert (folder / "minivit-cache-train.npz").stat().st_mode & 0o044 == 0o044


def test_image_folder_skips_hidden_entries_and_refuses_empty_classes(tmp_path, data_dir):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data_dir, root, ignore=shutil.ignore_patterns(".minivit-cache-*"))
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / "red" / "._0000.png").write_bytes(b"AppleDouble")  # macOS's resource fork
    assert load_split(root, "train").class_names == ["blue", "green", "red"]
    (root / "train" / "purple").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) purple hold no .png/.jpg images"):
        load_split(root, "train")
    (root / "train" / "purple").rmdir()
    (root / "train" / "loose.png").write_bytes((root / "train" / "red" / "0000.png").read_bytes())
    with pytest.raises(DataError, match=r"holds images outside any class folder \(loose.png\)"):
        load_split(root, "train")


def test_an_image_folder_cache_follows_its_images(tmp_path):
    from PIL import Image

    root = write_image_folder(tmp_path, per_class=4, size=8)
    assert len(load_split(root, "train")) == 12
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "train" / "red" / "new.png")
    assert len(load_split(root, "train")) == 13
    assert len(list(root.glob(".minivit-cache-train-*.npz"))) == 1  # replaced, not one more


def test_decompression_bombs_are_refused_by_name(tmp_path, monkeypatch):
    from PIL import Image

    root = write_image_folder(tmp_path, per_class=2, size=8)
    Image.new("RGB", (16, 16)).save(root / "train" / "red" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 8x8 = 64 passes, 16x16 = 256 does not
    with pytest.raises(DataError, match=r"Refusing .*bomb.png.*(MAX_IMAGE_PIXELS|decompression bomb)"):
        load_split(root, "train", image_size=8)


def test_a_broken_image_is_named(tmp_path):
    root = write_image_folder(tmp_path, per_class=2, size=8)
    (root / "train" / "green" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="Cannot decode .*broken.png"):
        load_split(root, "train")


def test_a_dataset_made_in_python_is_checked_too():
    with pytest.raises(DataError, match=r"label\(s\) outside \[0, 1\].*-1"):
        Dataset(np.zeros((2, 3, 4, 4), np.uint8), np.array([0, -1]), ["a", "b"])


# --- weight files --------------------------------------------------------------------------------------

def test_bfloat16_safetensors_load_as_float32(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    values = torch.tensor([[1.5, -2.25], [3.0e38, 1e-3]], dtype=torch.bfloat16)
    safetensors_torch.save_file({"weight": values}, str(tmp_path / "w.safetensors"))
    loaded = read_safetensors(tmp_path / "w.safetensors")["weight"]
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, values.float().numpy())


def test_a_timm_file_in_bfloat16_loads_as_a_model(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    import minivit

    model = minivit.ViTForImageClassification(minivit.ViTConfig(image_size=8, patch_size=4, hidden_size=64,
                                                                num_hidden_layers=1, num_attention_heads=1,
                                                                intermediate_size=32, num_labels=3))
    state = model.state_dict()
    timm = {"cls_token": state["embeddings.cls_token"], "pos_embed": state["embeddings.position_embeddings"],
            "patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
            "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
            "norm.weight": state["layernorm.weight"], "norm.bias": state["layernorm.bias"],
            "head.weight": state["classifier.weight"].T, "head.bias": state["classifier.bias"]}
    prefix = "encoder.layers.0."
    timm["blocks.0.attn.qkv.weight"] = np.concatenate([state[prefix + f"attention.{x}_proj.weight"].T for x in "qkv"])
    timm["blocks.0.attn.qkv.bias"] = np.concatenate([state[prefix + f"attention.{x}_proj.bias"] for x in "qkv"])
    for ours, theirs in (("attention.o_proj", "attn.proj"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
        timm[f"blocks.0.{theirs}.weight"] = state[f"{prefix}{ours}.weight"].T
        timm[f"blocks.0.{theirs}.bias"] = state[f"{prefix}{ours}.bias"]
    for ours, theirs in (("layernorm_before", "norm1"), ("layernorm_after", "norm2")):
        timm[f"blocks.0.{theirs}.weight"] = state[f"{prefix}{ours}.weight"]
        timm[f"blocks.0.{theirs}.bias"] = state[f"{prefix}{ours}.bias"]
    tensors = {name: torch.from_numpy(np.ascontiguousarray(array)).to(torch.bfloat16) for name, array in timm.items()}
    safetensors_torch.save_file(tensors, str(tmp_path / "vit.safetensors"))
    loaded = convert.load_pretrained(tmp_path / "vit.safetensors", num_attention_heads=1)
    for name, array in loaded.state_dict().items():
        np.testing.assert_allclose(array, state[name], rtol=1e-2, atol=1e-2, err_msg=name)  # bfloat16's precision


def test_a_config_that_is_not_json_is_named(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{model_type: vit,")
    with pytest.raises(WeightFileError, match=r"hf/config.json is not valid JSON"):
        convert.read_pretrained(folder)


@pytest.mark.parametrize("missing", ["runs/nothing/checkpoint.npz", "./nothing", "nothing/model.safetensors",
                                     "~/no-such-folder-here/x"])
def test_a_missing_path_is_a_missing_file_not_a_hub_name(missing, monkeypatch, tmp_path):
    def no_hub(name):
        raise AssertionError(f"{name} was looked up on the hub")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(convert, "_download_from_hub", no_hub)
    with pytest.raises(FileNotFoundError, match="No such file or folder"):
        convert.read_pretrained(missing)


def test_a_hub_name_is_still_a_hub_name(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(convert, "_download_from_hub", lambda name: (_ for _ in ()).throw(FileNotFoundError(
        f"looked up {name}")))
    with pytest.raises(FileNotFoundError, match="looked up google/vit-base-patch16-224"):
        convert.read_pretrained("google/vit-base-patch16-224")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_torch_pickle_that_needs_code_is_refused_with_a_reason(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"weight": torch.zeros(2), "extra": RunsCode()}, tmp_path / "model.pth")
    with pytest.raises(WeightFileError) as error:
        convert.read_pretrained(tmp_path / "model.pth")
    message = str(error.value)
    assert "Refusing" in message and "more than tensors" in message and "would run" in message
    assert "weights_only=False" not in message and "trust" not in message  # never advice to allow it


def test_an_npz_with_pickled_objects_is_refused_without_advice_to_allow_it(tmp_path):
    np.savez(tmp_path / "objects.npz", meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightFileError) as error:
        read_npz(tmp_path / "objects.npz")
    assert "pickled Python objects" in str(error.value) and "allow_pickle" not in str(error.value)


def test_an_image_given_as_a_checkpoint_is_named(data_dir, tmp_path, capsys):
    image = next((data_dir / "test" / "red").iterdir())
    assert evaluate_main(["--checkpoint", str(image), "--data-dir", str(data_dir)]) == 2
    error = one_error_line(capsys)
    assert "is not an .npz archive" in error and "allow_pickle" not in error
