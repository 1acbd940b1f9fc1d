"""The model's public API: parameters, seeds, state dicts, train/eval, initialisation."""

import math

import numpy as np
import pytest

import minivit
from minivit import backend
from minivit.convert import hf_config_kwargs
from minivit.ops import cross_entropy_forward

TINY = dict(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=24, num_labels=10)


def images(seed=0, batch=4):
    return np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype("float32")


def test_cifar_tiny_preset():
    config = minivit.preset("cifar-tiny")
    assert (config.image_size, config.patch_size, config.hidden_size, config.num_hidden_layers,
            config.num_attention_heads, config.intermediate_size, config.num_labels) == (32, 4, 192, 6, 3, 768, 10)
    model = minivit.ViTForImageClassification("cifar-tiny")
    # 48*192+192 patch, 192 cls, 65*192 positions, 6 * (4*(192*192+192) + 2*2*192 + 192*768+768 + 768*192+192),
    # final LayerNorm 2*192, head 192*10+10
    expected = (48 * 192 + 192) + 192 + 65 * 192 + 6 * (4 * (192 * 192 + 192) + 4 * 192
               + 192 * 768 + 768 + 768 * 192 + 192) + 2 * 192 + 192 * 10 + 10
    assert model.num_parameters() == expected == 2_693_578


def test_named_parameters_follow_transformers_names():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY))
    names = [name for name, _ in model.named_parameters()]
    assert names[:4] == ["embeddings.cls_token", "embeddings.position_embeddings",
                         "embeddings.patch_embeddings.projection.weight",
                         "embeddings.patch_embeddings.projection.bias"]
    assert "encoder.layers.1.attention.q_proj.weight" in names
    assert "encoder.layers.0.mlp.fc2.bias" in names
    assert names[-2:] == ["classifier.weight", "classifier.bias"]
    assert len(names) == len(set(names)) == len(model.parameters())


def test_no_qkv_bias_means_no_such_parameters():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY, qkv_bias=False))
    names = {name for name, _ in model.named_parameters()}
    assert "encoder.layers.0.attention.q_proj.bias" not in names
    assert "encoder.layers.0.attention.o_proj.bias" in names


def test_same_seed_same_parameters_and_logits():
    a = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY), seed=7)
    b = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY), seed=7)
    c = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY), seed=8)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
    np.testing.assert_array_equal(a.forward(images()), b.forward(images()))
    assert not np.array_equal(a.classifier.weight.data, c.classifier.weight.data)


def test_initialisation_as_transformers_does_it():
    model = minivit.ViTForImageClassification(minivit.preset("cifar-tiny"), seed=0)
    std = model.config.initializer_range
    for name, parameter in model.named_parameters():
        data = backend.to_numpy(parameter.data)
        if "layernorm" in name and name.endswith("weight"):
            np.testing.assert_array_equal(data, 1.0, err_msg=name)
        elif name.endswith("bias"):
            np.testing.assert_array_equal(data, 0.0, err_msg=name)
        else:  # truncated normal, std initializer_range
            assert abs(data.std() - std) < 0.15 * std, name
            assert np.abs(data).max() <= 2.0


def test_initial_loss_is_close_to_ln_num_labels():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY)).eval()
    logits = model.forward(images(batch=64))
    loss, _ = cross_entropy_forward(logits, np.arange(64) % 10)
    assert abs(float(loss) - math.log(10)) < 0.1


def test_gradients_accumulate_until_zero_grad():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY)).eval()
    dlogits = np.ones((4, 10), dtype="float32")
    model.forward(images())
    model.backward(dlogits)
    once = model.classifier.weight.grad.copy()
    model.forward(images())
    model.backward(dlogits)
    np.testing.assert_allclose(model.classifier.weight.grad, 2 * once, rtol=1e-6)
    model.zero_grad()
    assert all(not p.grad.any() for p in model.parameters())


def test_state_dict_round_trip():
    a = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY), seed=1)
    b = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY), seed=2)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.forward(images()), b.forward(images()))
    state = a.state_dict()
    state["classifier.bias"][:] = 5.0  # a copy: changing it leaves the model alone
    assert not np.any(a.classifier.bias.data == 5.0)


def test_dropout_only_in_training_mode():
    config = minivit.ViTConfig(**TINY, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    model = minivit.ViTForImageClassification(config)
    model.train()
    assert not np.array_equal(model.forward(images()), model.forward(images()))
    model.eval()
    np.testing.assert_array_equal(model.forward(images()), model.forward(images()))


def test_attention_maps_are_probabilities():
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY)).eval()
    model.forward(images(batch=2))
    maps = model.attention_maps()
    assert len(maps) == 2 and maps[0].shape == (2, 2, 5, 5)  # (B, H, T, T), T = 4 patches + CLS
    np.testing.assert_allclose(maps[1].sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_overfits_one_batch(pooling):
    """The sanity check before any training run: 8 images, 8 labels, 100% after a few steps."""
    from minivit.ops import cross_entropy_backward

    model = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY, pooling=pooling), seed=0).train()
    x, labels = images(batch=8), np.arange(8)
    for _ in range(60):
        model.zero_grad()
        logits = model.forward(x)
        loss, cache = cross_entropy_forward(logits, labels)
        model.backward(cross_entropy_backward(1.0, cache))
        for p in model.parameters():
            p.data -= 0.05 * p.grad / (np.sqrt((p.grad**2).mean()) + 1e-8) * 0.1
    assert float(loss) < 0.05
    assert (model.forward(x).argmax(axis=1) == labels).all()


# --- no position embeddings (position_embedding_type "none", lesson 13's ablation) ------------------

def test_without_position_embeddings_the_patches_are_a_set():
    """With no position table and mean pooling, the logits cannot depend on where a patch is: swapping
    two patches of the image leaves them unchanged (with the table they change). Every other weight is
    the learned model's of the same seed, and the table is neither a parameter nor in the state dict."""
    learned = minivit.ViTForImageClassification(minivit.ViTConfig(**TINY, pooling="mean"), seed=0).eval()
    none = minivit.ViTForImageClassification(
        minivit.ViTConfig(**TINY, pooling="mean", position_embedding_type="none"), seed=0).eval()
    learned_state, none_state = learned.state_dict(), none.state_dict()
    assert set(learned_state) - set(none_state) == {"embeddings.position_embeddings"}
    assert all(np.array_equal(none_state[name], learned_state[name]) for name in none_state)
    assert none.num_parameters() == learned.num_parameters() - 5 * 16
    x = images()
    swapped = x.copy()
    swapped[:, :, :4, :4], swapped[:, :, 4:, 4:] = x[:, :, 4:, 4:], x[:, :, :4, :4]  # patches 0 and 3 trade places
    np.testing.assert_allclose(none.forward(swapped), none.forward(x), rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(learned.forward(swapped) - learned.forward(x))) > 1e-4


def test_a_bad_position_embedding_type_is_refused_by_name():
    with pytest.raises(ValueError, match="position_embedding_type must be one of learned, none .* got 'sincos'"):
        minivit.ViTConfig(**TINY, position_embedding_type="sincos")
    with pytest.raises(ValueError, match="no transformers equivalent"):
        hf_config_kwargs(minivit.ViTConfig(**TINY, position_embedding_type="none"))
