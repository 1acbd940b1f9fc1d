"""Stage parity: CPU against GPU, the model's logits, input gradient and every parameter gradient by
name, and the parameters after AdamW steps on the same gradients; float64 tight, float32 within a
stated tolerance."""

from __future__ import annotations

import json

import numpy as np

from gpu_session.common import rehearsal_config
from minivit import backend


def _model_pass(config, dtype: str, images: np.ndarray, dlogits: np.ndarray) -> dict:
    """logits, the input gradient and every parameter gradient, by name, on the active backend."""
    import minivit

    model = minivit.ViTForImageClassification(config, seed=0, dtype=dtype)
    logits = model.forward(backend.asarray(images.astype(dtype)))
    dpixels = model.backward(backend.asarray(dlogits.astype(dtype)))
    tensors = {"logits": backend.to_numpy(logits), "dpixel_values": backend.to_numpy(dpixels)}
    tensors.update({f"grad/{name}": backend.to_numpy(p.grad) for name, p in model.named_parameters()})
    return tensors


def _optimizer_steps(config, dtype: str, gradients: list[dict]) -> dict:
    """Parameters after AdamW steps on given host gradients (the same on both sides)."""
    import minivit
    from minivit import optim

    model = minivit.ViTForImageClassification(config, seed=0, dtype=dtype)
    optimizer = optim.AdamW(model.named_parameters(), lr=1e-3, weight_decay=0.05)
    for step, grads in enumerate(gradients, start=1):
        for name, parameter in model.named_parameters():
            parameter.grad[...] = backend.asarray(grads[name].astype(dtype))
        optimizer.lr = 1e-3 * step / len(gradients)
        optimizer.step()
    return {f"param/{name}": value for name, value in model.state_dict().items()}


def _largest_errors(ours: dict, reference: dict) -> dict:
    """{name: max |ours - reference| / max(1, max |reference|)} for every reference tensor (a missing one fails)."""
    errors = {}
    for name, expected in reference.items():
        if name not in ours:
            raise AssertionError(f"{name} is missing on the GPU side")
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        errors[name] = float(np.abs(ours[name].astype(np.float64) - expected).max(initial=0.0)) / scale
    return errors


PARITY_TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


def stage_parity(args) -> dict:
    import minivit

    config = minivit.preset("cifar-tiny") if not args.rehearse else rehearsal_config()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((8, 3, config.image_size, config.image_size))
    dlogits = rng.standard_normal((8, config.num_labels))
    gradients = []
    results = {}
    for dtype in ("float64", "float32"):
        backend.use("numpy")
        cpu = _model_pass(config, dtype, images, dlogits)
        if not gradients:
            gradients = [{name[5:]: value * scale for name, value in cpu.items() if name.startswith("grad/")}
                         for scale in (1.0, -0.5, 2.0)]
        cpu.update(_optimizer_steps(config, dtype, gradients))
        backend.use(args.device_backend)
        device = _model_pass(config, dtype, images, dlogits)
        device.update(_optimizer_steps(config, dtype, gradients))
        backend.use("numpy")
        errors = _largest_errors(device, cpu)
        worst = max(errors, key=errors.get)
        results[dtype] = {"tensors": len(errors), "max_error": errors[worst], "worst_tensor": worst,
                          "tolerance": PARITY_TOLERANCE[dtype], "passed": errors[worst] <= PARITY_TOLERANCE[dtype]}
    (args.out / "parity.json").write_text(json.dumps(results, indent=2))
    return results
