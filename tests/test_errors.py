"""Bad input gets a clear error that says what was wrong and how to fix it."""

import numpy as np
import pytest

import minivit
from minivit import backend

TINY = dict(image_size=8, patch_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=8, num_labels=3)


@pytest.fixture
def model():
    return minivit.ViTForImageClassification(minivit.ViTConfig(**TINY))


def images(*shape, dtype="float32"):
    return np.zeros(shape, dtype=dtype)


def test_wrong_image_size_as_transformers_words_it(model):
    with pytest.raises(ValueError, match=r"^Input image size \(16\*12\) doesn.t match model \(8\*8\)\. "
                                         r"Pass interpolate_pos_encoding=True"):
        model.forward(images(1, 3, 16, 12))


def test_wrong_channel_count(model):
    with pytest.raises(ValueError, match="channel dimension .* Expected 3 but got 1"):
        model.forward(images(2, 1, 8, 8))


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 1, 3, 8, 8)])
def test_wrong_rank(model, shape):
    with pytest.raises(ValueError, match=r"4 dimensions \(batch, channels, height, width\)"):
        model.forward(images(*shape))


def test_integer_images(model):
    with pytest.raises(TypeError, match="must be floating point; got uint8"):
        model.forward(images(1, 3, 8, 8, dtype="uint8"))


def test_float64_images_into_a_float32_model(model):
    with pytest.raises(TypeError, match=r"dtype float64 but the model is float32: cast it with"):
        model.forward(images(1, 3, 8, 8, dtype="float64"))


def test_not_an_array(model):
    with pytest.raises(TypeError, match="must be a numpy.ndarray .* got builtins.list"):
        model.forward([[0.0]])


def test_hidden_size_not_divisible_by_heads():
    message = r"hidden size \(10\) is not a multiple of the number of attention heads \(3\)"
    with pytest.raises(ValueError, match=message):
        minivit.ViTConfig(**{**TINY, "hidden_size": 10, "num_attention_heads": 3})


def test_image_size_not_divisible_by_patch_size():
    message = r"image_size \(10\) does not fit a whole number of patches of size 4 at stride 4"
    with pytest.raises(ValueError, match=message):
        minivit.ViTConfig(**{**TINY, "image_size": 10})


def test_image_size_that_an_overlapping_stride_allows():
    config = minivit.ViTConfig(**{**TINY, "image_size": 10, "patch_stride": 2})
    assert config.num_patches == 16


def test_unknown_hidden_act():
    with pytest.raises(ValueError, match="Unknown hidden_act 'relu'"):
        minivit.ViTConfig(**{**TINY, "hidden_act": "relu"})


def test_unknown_preset():
    with pytest.raises(ValueError, match="Unknown preset .cifar-huge.: choose one of cifar-cpu, cifar-tiny"):
        minivit.preset("cifar-huge")


def test_unknown_dtype():
    with pytest.raises(ValueError, match="Unknown dtype 'int8'"):
        minivit.ViTForImageClassification(minivit.ViTConfig(**TINY), dtype="int8")


def test_backward_before_forward(model):
    with pytest.raises(RuntimeError, match=r"backward\(\) was called before forward\(\)"):
        model.backward(np.zeros((1, 3), dtype="float32"))


def test_second_backward_without_forward(model):
    logits = model.forward(images(2, 3, 8, 8))
    model.backward(np.ones_like(logits))
    with pytest.raises(RuntimeError, match="before forward"):
        model.backward(np.ones_like(logits))


def test_dlogits_of_the_wrong_shape(model):
    model.forward(images(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"dlogits must have the logits' shape \(2, 3\); got \(2, 4\)"):
        model.backward(np.zeros((2, 4), dtype="float32"))


def test_state_dict_with_missing_extra_and_misshapen_tensors(model):
    state = model.state_dict()
    del state["classifier.bias"]
    state["pooler.dense.weight"] = np.zeros((8, 8))
    state["layernorm.weight"] = np.zeros(9)
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "missing tensors: classifier.bias" in message
    assert "unexpected tensors: pooler.dense.weight" in message
    assert "layernorm.weight: expected (8,), got (9,)" in message


def test_unknown_backend():
    with pytest.raises(ValueError, match="Unknown backend 'jax': choose one of numpy, cupy"):
        backend.use("jax")
