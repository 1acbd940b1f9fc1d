"""Move weights (and gradients) between minivit and transformers' ViTForImageClassification.

Both directions take and return plain dicts of NumPy arrays, keyed by the
other side's names and laid out in the other side's shapes:

    minivit name                                    transformers name (5.x)                    layout
    embeddings.cls_token                            vit.embeddings.cls_token                   same
    embeddings.position_embeddings                  vit.embeddings.position_embeddings         same
    embeddings.patch_embeddings.projection.weight   vit.embeddings.patch_embeddings.projection.weight  same (D, C, p, p)
    encoder.layers.{i}.attention.q_proj.weight      vit.layers.{i}.attention.q_proj.weight      transposed
      (k_proj, v_proj, o_proj, mlp.fc1, mlp.fc2 likewise)
    encoder.layers.{i}.layernorm_before.weight      vit.layers.{i}.layernorm_before.weight      same
    layernorm.weight                                vit.layernorm.weight                       same
    classifier.weight                               classifier.weight                          transposed

minivit stores linear weights as (in, out), so that a layer reads ``x @ W + b``;
PyTorch's nn.Linear stores (out, in). ``from_hf`` also reads the names that
transformers 4.x wrote (``vit.encoder.layer.{i}.attention.attention.query`` ...),
which most checkpoints on the hub still use; ``to_hf(..., legacy=True)`` writes them.
"""

from __future__ import annotations

import re

import numpy as np  # host side: conversion works on NumPy dicts

# (minivit pattern, transformers 5.x pattern, transformers 4.x pattern); {i} is a layer index.
_NAME_TABLE = [
    ("embeddings.cls_token", "vit.embeddings.cls_token", "vit.embeddings.cls_token"),
    ("embeddings.position_embeddings", "vit.embeddings.position_embeddings",
     "vit.embeddings.position_embeddings"),
    ("embeddings.patch_embeddings.projection.{p}", "vit.embeddings.patch_embeddings.projection.{p}",
     "vit.embeddings.patch_embeddings.projection.{p}"),
    ("encoder.layers.{i}.layernorm_before.{p}", "vit.layers.{i}.layernorm_before.{p}",
     "vit.encoder.layer.{i}.layernorm_before.{p}"),
    ("encoder.layers.{i}.attention.q_proj.{p}", "vit.layers.{i}.attention.q_proj.{p}",
     "vit.encoder.layer.{i}.attention.attention.query.{p}"),
    ("encoder.layers.{i}.attention.k_proj.{p}", "vit.layers.{i}.attention.k_proj.{p}",
     "vit.encoder.layer.{i}.attention.attention.key.{p}"),
    ("encoder.layers.{i}.attention.v_proj.{p}", "vit.layers.{i}.attention.v_proj.{p}",
     "vit.encoder.layer.{i}.attention.attention.value.{p}"),
    ("encoder.layers.{i}.attention.o_proj.{p}", "vit.layers.{i}.attention.o_proj.{p}",
     "vit.encoder.layer.{i}.attention.output.dense.{p}"),
    ("encoder.layers.{i}.layernorm_after.{p}", "vit.layers.{i}.layernorm_after.{p}",
     "vit.encoder.layer.{i}.layernorm_after.{p}"),
    ("encoder.layers.{i}.mlp.fc1.{p}", "vit.layers.{i}.mlp.fc1.{p}",
     "vit.encoder.layer.{i}.intermediate.dense.{p}"),
    ("encoder.layers.{i}.mlp.fc2.{p}", "vit.layers.{i}.mlp.fc2.{p}",
     "vit.encoder.layer.{i}.output.dense.{p}"),
    ("layernorm.{p}", "vit.layernorm.{p}", "vit.layernorm.{p}"),
    ("classifier.{p}", "classifier.{p}", "classifier.{p}"),
]

# Linear weights, whose layouts are transposes of each other.
_LINEAR_WEIGHT = re.compile(r"(q_proj|k_proj|v_proj|o_proj|fc1|fc2|classifier)\.weight$")


def _pattern_to_regex(pattern: str) -> re.Pattern:
    regex = re.escape(pattern).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(regex + "$")


def _translate(name: str, source_column: int, target_column: int) -> str | None:
    for row in _NAME_TABLE:
        match = _pattern_to_regex(row[source_column]).match(name)
        if match:
            return row[target_column].format(**match.groupdict())
    return None


def _unknown_keys_error(unknown: list[str], side: str) -> KeyError:
    shown = ", ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else "")
    return KeyError(
        f"{len(unknown)} key(s) are not {side} ViTForImageClassification names: {shown}. "
        "This looks like another key layout (a timm or Google checkpoint, or a model with a pooler); "
        "only transformers' ViTForImageClassification names are converted here."
    )


def _convert(arrays: dict, rename, side: str) -> dict:
    """Rename every key with ``rename`` (None: unknown) and transpose linear weights."""
    converted, unknown = {}, []
    for name, array in arrays.items():
        new_name = rename(name)
        if new_name is None:
            unknown.append(name)
            continue
        minivit_name = new_name if side == "transformers" else name
        array = np.asarray(array)
        converted[new_name] = array.T.copy() if _LINEAR_WEIGHT.search(minivit_name) else array.copy()
    if unknown:
        raise _unknown_keys_error(unknown, side)
    return converted


def from_hf(hf_dict: dict) -> dict:
    """transformers names and layouts -> minivit names and layouts (weights or gradients)."""
    return _convert(hf_dict, lambda name: _translate(name, 1, 0) or _translate(name, 2, 0), "transformers")


def to_hf(minivit_dict: dict, legacy: bool = False) -> dict:
    """minivit names and layouts -> transformers names and layouts (weights or gradients).

    legacy=True writes the transformers 4.x names instead of the 5.x ones.
    """
    return _convert(minivit_dict, lambda name: _translate(name, 0, 2 if legacy else 1), "minivit")


def hf_config_kwargs(config) -> dict:
    """The keyword arguments for ``transformers.ViTConfig`` that describe the same model."""
    if config.patch_stride not in (None, config.patch_size) or config.pooling != "cls":
        raise ValueError(
            "transformers' ViT has no overlapping patches and classifies from the CLS token: "
            "this config (patch_stride / pooling) has no transformers equivalent."
        )
    fields = config.to_dict()
    del fields["patch_stride"], fields["pooling"]
    return fields
