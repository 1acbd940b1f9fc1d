"""The PyTorch side of the parity tests: transformers' ViTForImageClassification.

``reference_run`` builds transformers' model with random weights, runs a forward
and a backward, and returns every tensor by its transformers name. The golden
files in tests/golden/ are its output, saved by ``make_golden.py``, so the parity
tests run where torch is not installed; where it is, they also run it live.
"""

from __future__ import annotations

import numpy as np

# Configs chosen to break things: odd sizes, one channel, one and several heads,
# both GELU forms, no q/k/v bias, another LayerNorm eps.
PARITY_CONFIGS = {
    "odd-sizes": dict(image_size=15, patch_size=5, num_channels=3, hidden_size=12, num_hidden_layers=2,
                      num_attention_heads=3, intermediate_size=20, hidden_act="gelu", num_labels=7),
    "one-channel-one-head": dict(image_size=8, patch_size=2, num_channels=1, hidden_size=8,
                                 num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
                                 hidden_act="gelu_new", qkv_bias=False, num_labels=3),
    "four-heads": dict(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=3,
                       num_attention_heads=4, intermediate_size=24, hidden_act="gelu",
                       layer_norm_eps=1e-6, num_labels=10),
}
BATCH_SIZE = 3


def reference_run(config_fields: dict, seed: int = 0, dtype: str = "float64",
                  input_size: tuple[int, int] | None = None) -> dict:
    """Returns {"weights": {hf_name: array}, "pixel_values", "dlogits", "logits",
    "grads": {hf_name: array}, "dpixel_values"}, all NumPy.

    input_size: (height, width) of images of another size than the config's, run with
    ``interpolate_pos_encoding=True``.
    """
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    # "sdpa", not "eager": transformers' eager attention computes its softmax in float32
    # even for a float64 model (about 5e-8 off), while PyTorch's SDPA stays in float64.
    config = ViTConfig(**config_fields, initializer_range=0.2, attn_implementation="sdpa")
    model = ViTForImageClassification(config).to(getattr(torch, dtype)).eval()
    # Perturb the LayerNorms and biases too, so that no parameter is at a special value.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))

    rng = np.random.default_rng(seed)
    size, channels = config.image_size, config.num_channels
    height, width = input_size or (size, size)
    pixel_values = rng.standard_normal((BATCH_SIZE, channels, height, width)).astype(dtype)
    dlogits = rng.standard_normal((BATCH_SIZE, config.num_labels)).astype(dtype)

    pixel_tensor = torch.tensor(pixel_values, requires_grad=True)
    logits = model(pixel_values=pixel_tensor, interpolate_pos_encoding=input_size is not None).logits
    logits.backward(torch.tensor(dlogits))
    return {
        "weights": {name: p.detach().numpy().copy() for name, p in model.named_parameters()},
        "pixel_values": pixel_values,
        "dlogits": dlogits,
        "logits": logits.detach().numpy().copy(),
        "grads": {name: p.grad.numpy().copy() for name, p in model.named_parameters()},
        "dpixel_values": pixel_tensor.grad.numpy().copy(),
    }


def flatten(run: dict) -> dict:
    """One flat dict for np.savez: weights/<name>, grads/<name> and the rest."""
    flat = {f"weights/{k}": v for k, v in run["weights"].items()}
    flat.update({f"grads/{k}": v for k, v in run["grads"].items()})
    flat.update({k: run[k] for k in ("pixel_values", "dlogits", "logits", "dpixel_values")})
    return flat


def unflatten(flat) -> dict:
    run = {"weights": {}, "grads": {}}
    for key in flat.files if hasattr(flat, "files") else flat:
        if "/" in key:
            group, name = key.split("/", 1)
            run[group][name] = flat[key]
        else:
            run[key] = flat[key]
    return run
