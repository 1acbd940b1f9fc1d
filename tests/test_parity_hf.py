"""Parity with transformers' ViTForImageClassification, tensor by tensor, by name.

Weights move with minivit.convert; logits, the input gradient and every
parameter gradient must match. Golden files (tests/golden/, made by
make_golden.py from PyTorch) let this run without torch; with torch installed
the same comparison also runs live.
"""

from pathlib import Path

import numpy as np
import pytest
from hf_reference import PARITY_CONFIGS, reference_run, unflatten

import minivit
from minivit import backend, convert

GOLDEN = Path(__file__).resolve().parent / "golden"

# Every parity test runs twice: on the pure reference (MINIVIT_KERNELS=reference) and on the
# fast kernels (the default).
pytestmark = pytest.mark.usefixtures("kernel_mode")


def minivit_run(reference: dict, fields: dict, dtype: str, interpolate_pos_encoding: bool = False) -> dict:
    config = minivit.ViTConfig(**fields)
    model = minivit.ViTForImageClassification(config, dtype=dtype).eval()
    model.load_state_dict(convert.from_hf(reference["weights"]))
    logits = model.forward(backend.asarray(reference["pixel_values"].astype(dtype)), interpolate_pos_encoding)
    dpixel_values = model.backward(backend.asarray(reference["dlogits"].astype(dtype)))
    grads = convert.to_hf({name: backend.to_numpy(p.grad) for name, p in model.named_parameters()})
    return {"logits": backend.to_numpy(logits), "dpixel_values": backend.to_numpy(dpixel_values),
            "grads": grads}


def assert_same_tensors(ours: dict, reference: dict, atol: float, rtol: float = 0.0) -> None:
    """Every reference tensor by name; a name missing on either side fails."""
    assert sorted(ours["grads"]) == sorted(reference["grads"]), (
        f"names differ: only minivit {sorted(set(ours['grads']) - set(reference['grads']))}, "
        f"only transformers {sorted(set(reference['grads']) - set(ours['grads']))}"
    )
    compared = []
    for name in ["logits", "dpixel_values"] + [f"grads/{n}" for n in reference["grads"]]:
        if name.startswith("grads/"):
            a, b = ours["grads"][name[6:]], reference["grads"][name[6:]]
        else:
            a, b = ours[name], reference[name]
        assert a.shape == b.shape, f"{name}: shape {a.shape} != {b.shape}"
        np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, err_msg=name)
        compared.append(name)
    assert len(compared) == 2 + len(reference["grads"])


@pytest.mark.parametrize("config_name", list(PARITY_CONFIGS))
def test_golden_parity_float64(config_name):
    reference = unflatten(np.load(GOLDEN / f"parity-{config_name}.npz"))
    ours = minivit_run(reference, PARITY_CONFIGS[config_name], "float64")
    assert_same_tensors(ours, reference, atol=1e-9)  # float64: max abs difference <= 1e-9


@pytest.mark.parametrize("config_name", list(PARITY_CONFIGS))
def test_golden_parity_float32(config_name):
    """minivit in float32 against PyTorch's float64 truth: within 1e-4."""
    reference = unflatten(np.load(GOLDEN / f"parity-{config_name}.npz"))
    ours = minivit_run(reference, PARITY_CONFIGS[config_name], "float32")
    assert_same_tensors(ours, reference, atol=1e-4)


@pytest.mark.parametrize("dtype,atol", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("config_name", list(PARITY_CONFIGS))
def test_live_parity(config_name, dtype, atol):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    reference = reference_run(PARITY_CONFIGS[config_name], seed=1, dtype=dtype)
    ours = minivit_run(reference, PARITY_CONFIGS[config_name], dtype)
    assert_same_tensors(ours, reference, atol=atol)


# Larger, smaller, non-square, and square with the same patch count (no interpolation at all).
INTERPOLATION_SIZES = {"four-heads": [(24, 24), (8, 8), (12, 20)], "odd-sizes": [(25, 25), (10, 35)],
                       "one-channel-one-head": [(14, 14), (4, 16)]}


@pytest.mark.parametrize("dtype,atol", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("config_name,input_size",
                         [(name, size) for name, sizes in INTERPOLATION_SIZES.items() for size in sizes])
def test_live_parity_interpolated_positions(config_name, input_size, dtype, atol):
    """Images of another size, with the position table resized bicubically: transformers'
    interpolate_pos_encoding, forward and backward, every tensor by name."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    reference = reference_run(PARITY_CONFIGS[config_name], seed=2, dtype=dtype, input_size=input_size)
    ours = minivit_run(reference, PARITY_CONFIGS[config_name], dtype, interpolate_pos_encoding=True)
    assert_same_tensors(ours, reference, atol=atol)


def test_golden_files_match_live_pytorch():
    """The golden files are still what PyTorch computes (regenerate with make_golden.py if not)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    name = "odd-sizes"
    golden = unflatten(np.load(GOLDEN / f"parity-{name}.npz"))
    live = reference_run(PARITY_CONFIGS[name], seed=0)
    for key in ("logits", "dpixel_values"):
        np.testing.assert_allclose(golden[key], live[key], atol=1e-12, err_msg=key)


def test_legacy_transformers_names_round_trip():
    reference = unflatten(np.load(GOLDEN / "parity-four-heads.npz"))
    minivit_weights = convert.from_hf(reference["weights"])
    legacy = convert.to_hf(minivit_weights, legacy=True)
    assert "vit.encoder.layer.2.attention.attention.query.weight" in legacy
    assert "vit.encoder.layer.0.intermediate.dense.bias" in legacy
    back = convert.from_hf(legacy)
    assert sorted(back) == sorted(minivit_weights)
    for name in back:
        np.testing.assert_array_equal(back[name], minivit_weights[name])


def test_from_hf_refuses_unknown_keys():
    with pytest.raises(KeyError, match="not transformers ViTForImageClassification names"):
        convert.from_hf({"blocks.0.attn.qkv.weight": np.zeros((3, 3))})
