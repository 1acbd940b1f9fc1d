"""Each module, and the whole model, against finite differences (float64).

Modules: 1e-6. Whole model: 1e-5 (errors compound through the layers).
Configs use initializer_range 0.5 so that no gradient is tiny enough to sink
into finite-difference noise. Everything here runs on the reference (minivit/ops):
the fast kernels are proven equal to it by tests/test_kernels_*.py.
"""

import pytest

import minivit
from minivit import backend
from minivit.gradcheck import check_gradients, check_model, directional_check

pytestmark = pytest.mark.usefixtures("reference_kernels")

SMALL = dict(image_size=8, patch_size=4, num_channels=3, hidden_size=8, num_hidden_layers=2,
             num_attention_heads=2, intermediate_size=12, num_labels=3, initializer_range=0.5)


def make_model(**overrides):
    config = minivit.ViTConfig(**{**SMALL, **overrides})
    return minivit.ViTForImageClassification(config, seed=0, dtype="float64")


def normal(seed, *shape):
    return backend.default_rng(seed).standard_normal(shape)


def check_module(module, x, tolerance=1e-6, seed=0):
    """f = sum(module(x) * dout); check every parameter of the module and its input."""
    xp = backend.xp
    out = module.forward(x)
    dout = normal(seed + 100, *out.shape)
    module.zero_grad()
    dx = module.backward(dout)

    def f():
        with minivit.no_grad():
            y = module.forward(x)
        return xp.sum(y * dout)

    inputs = {name: p.data for name, p in module.named_parameters()}
    analytic = {name: p.grad.copy() for name, p in module.named_parameters()}
    inputs["input"], analytic["input"] = x, dx
    report = check_gradients(f, inputs, analytic)
    report.assert_close(tolerance)
    return report


def test_patch_embeddings(backend_name):
    model = make_model()
    check_module(model.embeddings.patch_embeddings, normal(0, 2, 3, 8, 8))  # about 1e-10


def test_patch_embeddings_overlapping(backend_name):
    model = make_model(image_size=10, patch_stride=2)
    check_module(model.embeddings.patch_embeddings, normal(0, 2, 3, 10, 10))  # about 1e-10


def test_vit_embeddings(backend_name):
    model = make_model()
    check_module(model.embeddings, normal(0, 2, 3, 8, 8))  # about 1e-10


def test_self_attention(backend_name):
    model = make_model()
    check_module(model.encoder.layers[0].attention, normal(0, 2, 5, 8))  # about 1e-9


def test_mlp(backend_name):
    model = make_model()
    check_module(model.encoder.layers[0].mlp, normal(0, 2, 5, 8))  # about 1e-9


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_encoder_layer(backend_name, hidden_act):
    model = make_model(hidden_act=hidden_act)
    check_module(model.encoder.layers[0], normal(0, 2, 5, 8))  # about 1e-8


def test_encoder(backend_name):
    model = make_model()
    check_module(model.encoder, normal(0, 2, 5, 8))  # about 1e-8


def test_classifier_head(backend_name):
    model = make_model()
    check_module(model.classifier, normal(0, 2, 8))  # about 1e-10


@pytest.mark.parametrize("overrides", [
    {},
    {"pooling": "mean"},
    {"position_embedding_type": "none"},
    {"hidden_act": "gelu_new", "qkv_bias": False, "num_attention_heads": 1},
    {"image_size": 10, "patch_stride": 2},
    {"num_channels": 1, "image_size": 6, "patch_size": 3},
])
def test_whole_model(backend_name, overrides):
    model = make_model(**overrides).eval()
    config = model.config
    x = normal(0, 2, config.num_channels, config.image_size, config.image_size)
    report = check_model(model, x)
    report.assert_close(1e-5)  # about 1e-7 for the worst tensor, 1e-9 typical


def test_whole_model_with_dropout_in_training_mode():
    """With the dropout generator rewound before every forward, the masks are fixed, and the
    gradient through them must check out too."""
    model = make_model(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2).train()
    report = check_model(model, normal(0, 2, 3, 8, 8))
    report.assert_close(1e-5)  # about 1e-7


def test_a_model_whose_dropout_draws_per_image_checks_too():
    """A model that went through a Trainer draws its dropout masks from a per-image stream
    (minivit.sample_random): the check rewinds that stream's draws, as it rewinds a generator."""
    import numpy as np

    from minivit.sample_random import SampleStream, install_dropout_stream

    model = make_model(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2).train()
    install_dropout_stream(model, SampleStream(key=7, samples=np.arange(2)))
    report = check_model(model, normal(0, 2, 3, 8, 8))
    report.assert_close(1e-5)  # about 1e-7


def test_directional_derivative(backend_name):
    model = make_model(num_hidden_layers=3).eval()
    assert directional_check(model, normal(0, 2, 3, 8, 8), num_directions=4) < 1e-6  # about 1e-9


def test_directional_check_catches_a_wrong_gradient():
    model = make_model().eval()
    original = model.encoder.layers[1].mlp.fc1.backward

    def broken_backward(dout):
        dx = original(dout)
        model.encoder.layers[1].mlp.fc1.weight.grad *= 2.0
        return dx

    model.encoder.layers[1].mlp.fc1.backward = broken_backward
    assert directional_check(model, normal(0, 2, 3, 8, 8)) > 1e-3


def test_a_broken_reference_backward_fails_the_check(monkeypatch):
    """The checks prove minivit/ops itself: break LayerNorm's backward there and they fail,
    however right the fast kernel that replaces it is."""
    from minivit import ops

    def layernorm_backward_without_the_variance_term(dout, cache):
        xhat, rstd, gamma = cache
        D = dout.shape[-1]
        dxhat = dout * gamma
        dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True))  # the xhat * mean(dxhat * xhat) term dropped
        return dx, (dout * xhat).reshape(-1, D).sum(axis=0), dout.reshape(-1, D).sum(axis=0)

    monkeypatch.setattr(ops, "layernorm_backward", layernorm_backward_without_the_variance_term)
    model = make_model()
    with pytest.raises(AssertionError, match="gradient check failed"):
        check_module(model.encoder.layers[0].layernorm_before, normal(0, 2, 5, 8))
