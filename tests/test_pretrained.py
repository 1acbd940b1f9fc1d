"""Weights in and out: transformers folders, timm state dicts, Google .npz files.

Every source is made offline: transformers builds a model with random weights and
saves it; the timm and Google layouts are written from that model's tensors by the
mappings below (written here from those projects' layouts, independently of
minivit.convert). Loaded into minivit, each must give transformers' logits
(float32: within 1e-4).
"""

import json

import numpy as np
import pytest

import minivit
from minivit import backend, convert

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

FIELDS = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=48, num_labels=5, layer_norm_eps=1e-6)


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = transformers.ViTConfig(**FIELDS, initializer_range=0.2)
    model = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def pixels(size=16, batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


def hf_logits(model, pixel_values, **kwargs):
    with torch.no_grad():
        return model(pixel_values=torch.tensor(pixel_values), **kwargs).logits.numpy()


def minivit_logits(model, pixel_values, **kwargs):
    return backend.to_numpy(model.forward(backend.asarray(pixel_values), **kwargs))


def hf_weights(model) -> dict:
    """transformers 5.x names -> NumPy arrays."""
    return {name: p.detach().numpy().copy() for name, p in model.named_parameters()}


def as_timm(weights: dict, num_layers: int) -> dict:
    """timm's vision_transformer layout: fused qkv (3D, D), PyTorch (out, in) linears."""
    timm = {"cls_token": weights["vit.embeddings.cls_token"],
            "pos_embed": weights["vit.embeddings.position_embeddings"],
            "patch_embed.proj.weight": weights["vit.embeddings.patch_embeddings.projection.weight"],
            "patch_embed.proj.bias": weights["vit.embeddings.patch_embeddings.projection.bias"],
            "norm.weight": weights["vit.layernorm.weight"], "norm.bias": weights["vit.layernorm.bias"],
            "head.weight": weights["classifier.weight"], "head.bias": weights["classifier.bias"]}
    for i in range(num_layers):
        hf, block = f"vit.layers.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            timm[block + f"attn.qkv.{p}"] = np.concatenate(
                [weights[hf + f"attention.{x}_proj.{p}"] for x in "qkv"], axis=0)
            timm[block + f"attn.proj.{p}"] = weights[hf + f"attention.o_proj.{p}"]
            timm[block + f"norm1.{p}"] = weights[hf + f"layernorm_before.{p}"]
            timm[block + f"norm2.{p}"] = weights[hf + f"layernorm_after.{p}"]
            timm[block + f"mlp.fc1.{p}"] = weights[hf + f"mlp.fc1.{p}"]
            timm[block + f"mlp.fc2.{p}"] = weights[hf + f"mlp.fc2.{p}"]
    return timm


def as_google(weights: dict, num_layers: int, num_heads: int) -> dict:
    """The original ViT .npz: Flax kernels (in, out), per-head attention kernels."""
    D = weights["vit.embeddings.cls_token"].shape[-1]
    head_dim = D // num_heads
    npz = {"cls": weights["vit.embeddings.cls_token"],
           "Transformer/posembed_input/pos_embedding": weights["vit.embeddings.position_embeddings"],
           "embedding/kernel": weights["vit.embeddings.patch_embeddings.projection.weight"].transpose(2, 3, 1, 0),
           "embedding/bias": weights["vit.embeddings.patch_embeddings.projection.bias"],
           "Transformer/encoder_norm/scale": weights["vit.layernorm.weight"],
           "Transformer/encoder_norm/bias": weights["vit.layernorm.bias"],
           "head/kernel": weights["classifier.weight"].T, "head/bias": weights["classifier.bias"]}
    for i in range(num_layers):
        hf, block = f"vit.layers.{i}.", f"Transformer/encoderblock_{i}/"
        attention = block + "MultiHeadDotProductAttention_1/"
        for x, name in zip("qkv", ("query", "key", "value")):
            npz[attention + f"{name}/kernel"] = weights[hf + f"attention.{x}_proj.weight"].T.reshape(D, num_heads,
                                                                                                    head_dim)
            npz[attention + f"{name}/bias"] = weights[hf + f"attention.{x}_proj.bias"].reshape(num_heads, head_dim)
        npz[attention + "out/kernel"] = weights[hf + "attention.o_proj.weight"].T.reshape(num_heads, head_dim, D)
        npz[attention + "out/bias"] = weights[hf + "attention.o_proj.bias"]
        for flax, hf_norm in (("LayerNorm_0", "layernorm_before"), ("LayerNorm_2", "layernorm_after")):
            npz[block + f"{flax}/scale"] = weights[hf + f"{hf_norm}.weight"]
            npz[block + f"{flax}/bias"] = weights[hf + f"{hf_norm}.bias"]
        for index, fc in ((0, "fc1"), (1, "fc2")):
            npz[block + f"MlpBlock_3/Dense_{index}/kernel"] = weights[hf + f"mlp.{fc}.weight"].T
            npz[block + f"MlpBlock_3/Dense_{index}/bias"] = weights[hf + f"mlp.{fc}.bias"]
    return npz


def test_load_a_folder_that_transformers_saved(hf_model, tmp_path):
    hf_model.save_pretrained(tmp_path / "vit")
    model = convert.load_hf_pretrained(tmp_path / "vit")
    assert model.config.num_labels == 5 and model.config.layer_norm_eps == 1e-6
    x = pixels()
    np.testing.assert_allclose(minivit_logits(model, x), hf_logits(hf_model, x), atol=1e-4)
    assert model.checkpoint_meta["class_names"] == [f"LABEL_{i}" for i in range(5)]


def test_saved_folder_loads_in_transformers_with_the_same_logits(tmp_path):
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**FIELDS, initializer_range=0.2), seed=3)
    folder = convert.save_hf_pretrained(model, tmp_path / "out", class_names=list("abcde"))
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "model.safetensors"]
    reloaded = transformers.ViTForImageClassification.from_pretrained(folder).eval()
    x = pixels(seed=1)
    np.testing.assert_allclose(hf_logits(reloaded, x), minivit_logits(model, x), atol=1e-4)
    assert reloaded.config.id2label[4] == "e"
    # and at another resolution, through both interpolations
    x = pixels(size=24, seed=2)
    np.testing.assert_allclose(hf_logits(reloaded, x, interpolate_pos_encoding=True),
                               minivit_logits(model, x, interpolate_pos_encoding=True), atol=1e-4)


def test_a_trained_checkpoint_exports_its_normalisation(tmp_path):
    model = minivit.ViTForImageClassification(minivit.ViTConfig(**FIELDS), seed=0)
    model.checkpoint_meta = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.2, 0.3], "class_names": list("vwxyz")}
    folder = convert.save_hf_pretrained(model, tmp_path / "out")
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["image_mean"] == [0.4, 0.5, 0.6] and processor["image_std"] == [0.2, 0.2, 0.3]
    back = convert.load_hf_pretrained(folder)
    assert back.checkpoint_meta["mean"] == [0.4, 0.5, 0.6]
    assert back.checkpoint_meta["class_names"] == list("vwxyz")


def test_a_backbone_without_head_loads_with_a_fresh_classifier(hf_model, tmp_path):
    backbone = transformers.ViTModel(hf_model.config, add_pooling_layer=True)
    backbone.load_state_dict(hf_model.vit.state_dict(), strict=False)
    backbone.save_pretrained(tmp_path / "backbone")
    with pytest.warns(UserWarning, match="no classification head"):
        model = convert.load_pretrained(tmp_path / "backbone")
    ours = model.state_dict()
    theirs = convert.from_hf(hf_weights(hf_model))
    for name in theirs:
        if not name.startswith("classifier."):
            np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_timm_state_dict(hf_model, tmp_path):
    from safetensors.numpy import save_file

    timm = as_timm(hf_weights(hf_model), FIELDS["num_hidden_layers"])
    save_file(timm, str(tmp_path / "vit.safetensors"))
    model = convert.load_pretrained(tmp_path / "vit.safetensors", num_attention_heads=4)
    x = pixels(seed=3)
    np.testing.assert_allclose(minivit_logits(model, x), hf_logits(hf_model, x), atol=1e-4)
    # from_timm itself, from torch tensors, gives the same minivit state dict as from_hf
    state = convert.from_timm({name: torch.tensor(array) for name, array in timm.items()})
    reference = convert.from_hf(hf_weights(hf_model))
    assert sorted(state) == sorted(reference)
    for name in reference:
        np.testing.assert_array_equal(state[name], reference[name], err_msg=name)


def test_google_npz(hf_model, tmp_path):
    np.savez(tmp_path / "ViT-tiny.npz", **as_google(hf_weights(hf_model), FIELDS["num_hidden_layers"], 4))
    model = convert.load_pretrained(tmp_path / "ViT-tiny.npz")
    assert model.config.num_attention_heads == 4  # read from the per-head kernels
    x = pixels(seed=4)
    np.testing.assert_allclose(minivit_logits(model, x), hf_logits(hf_model, x), atol=1e-4)
    assert sorted(convert.from_google_npz(tmp_path / "ViT-tiny.npz")) == sorted(model.state_dict())


def test_unknown_layouts_are_refused_clearly(hf_model, tmp_path):
    from safetensors.numpy import save_file

    timm = as_timm(hf_weights(hf_model), FIELDS["num_hidden_layers"])
    timm["blocks.0.ls1.gamma"] = np.ones(32, np.float32)
    with pytest.raises(KeyError, match=r"blocks\.0\.ls1\.gamma.*layer scale"):
        convert.from_timm(timm)
    save_file({"encoder.weight": np.zeros((2, 2), np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(KeyError, match="unknown key layout"):
        convert.load_pretrained(tmp_path / "other.safetensors")
    google = as_google(hf_weights(hf_model), FIELDS["num_hidden_layers"], 4)
    np.savez(tmp_path / "prelogits.npz", **google, **{"pre_logits/kernel": np.zeros((32, 32))})
    with pytest.raises(ValueError, match="pre-logits"):
        convert.load_pretrained(tmp_path / "prelogits.npz")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="only pytorch_model.bin"):
        convert.load_hf_pretrained(tmp_path / "bin")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' model"):
        convert.load_hf_pretrained(tmp_path / "bert")


def test_hub_name_without_network_says_so(monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="Could not fetch 'nobody/no-such-vit'"):
        convert.load_hf_pretrained("nobody/no-such-vit")
