"""Finetuning: a new head, position embeddings for another resolution, freezing, layer-wise decay."""

import json

import numpy as np
import pytest
from synthetic_data import write_image_folder

import minivit
from minivit import backend, ops
from minivit.checkpoint import read_checkpoint, save_checkpoint
from minivit.finetune import (
    FinetuneError,
    adapt_state_dict,
    finetune_model,
    frozen_names,
    layer_decay_scales,
)
from minivit.optim import SGD, AdamW
from minivit.train import TrainConfig, main, train

SMALL = dict(image_size=8, patch_size=2, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=24, num_labels=4)


def saved_model(tmp_path, seed=0, **changes):
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**{**SMALL, **changes}), seed=seed)
    path = save_checkpoint(tmp_path / "pretrained.npz", model)
    return model, path


def test_a_larger_resolution_gives_what_interpolate_pos_encoding_gives(tmp_path):
    """Finetuning at 12 px resamples the 4x4 position grid to 6x6 once; the result is the model
    that the pretrained one is at 12 px with interpolate_pos_encoding=True."""
    pretrained, path = saved_model(tmp_path)
    finetuned = finetune_model(path, image_size=12, new_head=False).eval()
    x = backend.asarray(np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype("float32"))
    np.testing.assert_allclose(backend.to_numpy(finetuned.forward(x)),
                               backend.to_numpy(pretrained.eval().forward(x, interpolate_pos_encoding=True)),
                               atol=1e-5)
    assert finetuned.embeddings.position_embeddings.shape == (1, 37, 16)


def test_new_classes_get_a_zero_head_and_everything_else_is_copied(tmp_path):
    pretrained, path = saved_model(tmp_path)
    finetuned = finetune_model(path, num_labels=7)
    state, before = finetuned.state_dict(), pretrained.state_dict()
    assert state["classifier.weight"].shape == (16, 7)
    assert not state["classifier.weight"].any() and not state["classifier.bias"].any()
    for name in before:
        if not name.startswith("classifier."):
            np.testing.assert_array_equal(state[name], before[name], err_msg=name)


def test_position_table_is_resized_by_the_interpolation_op(tmp_path):
    source, target = minivit.ViTConfig(**SMALL), minivit.ViTConfig(**{**SMALL, "image_size": 16})
    pretrained = minivit.ViTForImageClassification(source)
    fresh = minivit.ViTForImageClassification(target).state_dict()
    adapted, notes = adapt_state_dict(pretrained.state_dict(), source, target, fresh)
    expected, _ = ops.interpolate_position_forward(
        backend.asarray(pretrained.state_dict()["embeddings.position_embeddings"].astype("float64")), (4, 4), (8, 8))
    np.testing.assert_allclose(adapted["embeddings.position_embeddings"], backend.to_numpy(expected), atol=1e-6)
    assert any("4x4 to a 8x8" in note for note in notes)


def test_weights_that_do_not_fit_are_named(tmp_path):
    _, path = saved_model(tmp_path)
    with pytest.raises(FinetuneError, match=r"encoder\.layers\.0\.mlp\.fc1\.weight: pretrained \(16, 24\), "
                                            r"model \(16, 32\).*Only the head"):
        finetune_model(path, intermediate_size=32)
    with pytest.raises(ValueError, match="patch_size"):
        finetune_model(path, image_size=9)  # 2 px patches do not tile 9 px


def test_a_resolution_the_patches_do_not_divide_is_refused_at_forward():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**{**SMALL, "patch_size": 4}))
    x = backend.asarray(np.zeros((1, 3, 10, 12), dtype="float32"))
    with pytest.raises(ValueError, match=r"image height \(10\) does not fit whole patches.*e\.g\. to 8 pixels"):
        model.forward(x, interpolate_pos_encoding=True)


def test_frozen_names():
    names = [name for name, _ in minivit.ViTForImageClassification(minivit.ViTConfig(**SMALL)).named_parameters()]
    assert frozen_names(names, "") == set()
    assert frozen_names(names, "backbone") == {n for n in names if not n.startswith("classifier.")}
    frozen = frozen_names(names, "embeddings, encoder.layers.0")
    assert "embeddings.cls_token" in frozen and "encoder.layers.0.mlp.fc2.bias" in frozen
    assert "encoder.layers.1.mlp.fc2.bias" not in frozen and "layernorm.weight" not in frozen
    with pytest.raises(ValueError, match="'encoder.layer.0' names no parameter"):
        frozen_names(names, "encoder.layer.0")
    with pytest.raises(ValueError, match="nothing to train"):
        frozen_names(names, "backbone,classifier")


def test_layer_decay_scales():
    names = ["embeddings.cls_token", "encoder.layers.0.mlp.fc1.weight", "encoder.layers.1.mlp.fc1.weight",
             "layernorm.weight", "classifier.weight"]
    scales = layer_decay_scales(names, num_layers=2, decay=0.5)
    assert scales == {"embeddings.cls_token": 0.125, "encoder.layers.0.mlp.fc1.weight": 0.25,
                      "encoder.layers.1.mlp.fc1.weight": 0.5, "layernorm.weight": 1.0, "classifier.weight": 1.0}


@pytest.mark.parametrize("make", [lambda named, scales: AdamW(named, lr=0.1, weight_decay=0.1, lr_scales=scales),
                                  lambda named, scales: SGD(named, lr=0.1, weight_decay=0.1, lr_scales=scales)])
def test_a_scaled_parameter_moves_as_with_a_scaled_learning_rate(make):
    """lr_scales {name: s} gives the parameter exactly the update of an optimizer with lr * s."""
    def parameter():
        p = minivit.nn.Parameter(backend.asarray(np.linspace(-1, 1, 6).reshape(2, 3)))
        p.grad[...] = backend.asarray(np.linspace(0.5, -0.3, 6).reshape(2, 3))
        return p

    scaled, plain = parameter(), parameter()
    optimizer = make([("w", scaled)], {"w": 0.3})
    reference = make([("w", plain)], None)
    reference.lr = 0.1 * 0.3
    for _ in range(3):
        optimizer.step()
        reference.step()
    np.testing.assert_allclose(backend.to_numpy(scaled.data), backend.to_numpy(plain.data), rtol=1e-12)


@pytest.fixture
def colours(tmp_path_factory):
    """Four colour classes at 8 px: pretrain on three, finetune on the fourth against one of them."""
    return write_image_folder(tmp_path_factory.mktemp("colours"), per_class=16, size=8,
                              classes=("blue", "green", "red", "black"))


def test_pretrain_then_finetune_from_the_command_line(colours, tmp_path, capsys):
    tiny = ["--hidden-size", "16", "--num-hidden-layers", "2", "--num-attention-heads", "2",
            "--intermediate-size", "32", "--patch-size", "4", "--image-size", "8"]
    pretrain = ["--data-dir", str(colours), "--classes", "blue,green,red", "--epochs", "2", "--batch-size", "8",
                "--out", str(tmp_path / "pre"), "--no-progress", *tiny]
    assert main(pretrain) == 0
    pretrained = read_checkpoint(tmp_path / "pre" / "checkpoint-last.npz")
    assert pretrained[0]["class_names"] == ["blue", "green", "red"]
    assert pretrained[1]["classifier.weight"].shape == (16, 3)  # num_labels follows the classes

    from minivit.finetune import main as finetune_main

    finetune = ["--init-from", str(tmp_path / "pre" / "checkpoint-last.npz"), "--data-dir", str(colours),
                "--classes", "black,red", "--train-per-class", "8", "--image-size", "16", "--epochs", "2",
                "--batch-size", "8", "--freeze", "embeddings", "--layer-decay", "0.5", "--out",
                str(tmp_path / "ft"), "--no-progress"]
    assert finetune_main(finetune) == 0
    meta, state, _ = read_checkpoint(tmp_path / "ft" / "checkpoint-last.npz")
    assert meta["class_names"] == ["black", "red"] and meta["config"]["image_size"] == 16
    assert meta["mean"] == pretrained[0]["mean"]  # the pretrained model's normalisation is kept
    assert state["embeddings.position_embeddings"].shape == (1, 17, 16)
    # frozen: the patch embedding and CLS token are the pretrained ones, resampled positions as resampled
    for name in ("embeddings.patch_embeddings.projection.weight", "embeddings.cls_token"):
        np.testing.assert_array_equal(state[name], pretrained[1][name], err_msg=name)
    resized, _ = ops.interpolate_position_forward(
        backend.asarray(pretrained[1]["embeddings.position_embeddings"].astype("float64")), (2, 2), (4, 4))
    np.testing.assert_allclose(state["embeddings.position_embeddings"], backend.to_numpy(resized), atol=1e-6)
    trained = "encoder.layers.0.mlp.fc1.weight"
    assert not np.array_equal(state[trained], pretrained[1][trained])
    rows = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    # the test split is filtered to the checkpoint's classes
    from minivit.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(tmp_path / "ft" / "checkpoint-last.npz", colours)
    assert result["class_names"] == ["black", "red"] and result["num_images"] == 12


def test_finetune_needs_a_source(capsys):
    from minivit.finetune import main as finetune_main

    assert finetune_main(["--data-dir", "nowhere"]) == 2
    assert "needs --init-from" in capsys.readouterr().err


def test_unknown_classes_and_too_few_images_are_refused(colours, tmp_path):
    from minivit.data import DataError

    base = dict(data_dir=str(colours), out=str(tmp_path / "run"), epochs=1, batch_size=4, progress=False,
                model=dict(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32))
    with pytest.raises(DataError, match="Unknown class.*purple.*this data set has black, blue, green, red"):
        train(TrainConfig(**base, classes=["red", "purple"]))
    with pytest.raises(DataError, match="fewer than the 50 per class"):
        train(TrainConfig(**base, train_per_class=50))


def test_a_resumed_finetuning_run_keeps_the_pretrained_normalisation(colours, tmp_path):
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**{**SMALL, "num_labels": 2}))
    source = save_checkpoint(tmp_path / "pretrained.npz", model, meta={"mean": [0.1, 0.2, 0.3],
                                                                       "std": [0.5, 0.5, 0.5]})
    config = dict(data_dir=str(colours), out=str(tmp_path / "ft"), init_from=str(source), epochs=2, batch_size=8,
                  classes=["red", "blue"], progress=False)
    train(TrainConfig(**config, max_steps=2))
    train(TrainConfig(**config), resume=True)
    meta = read_checkpoint(tmp_path / "ft" / "checkpoint-last.npz")[0]
    np.testing.assert_allclose(meta["mean"], [0.1, 0.2, 0.3], rtol=1e-6)
    assert meta["step"] == 6  # 2 epochs of 3 steps (28 training images, batch 8)
