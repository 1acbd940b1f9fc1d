"""Weights in and out: transformers' ViT, timm's, Google's original checkpoints.

    from_hf(d) / to_hf(d)         transformers names <-> minivit names (weights or gradients)
    from_timm(d)                  timm's vision_transformer state dict -> minivit names
    from_google_npz(path)         the original ViT .npz (Flax arrays) -> minivit names
    read_pretrained(source)       (config, state dict, meta) from any of these, or a minivit checkpoint
    load_pretrained(source)       -> a ready ViTForImageClassification
    load_hf_pretrained(folder_or_name), save_hf_pretrained(model, folder)
                                  transformers' save_pretrained folders (config.json + safetensors)

from_hf and to_hf take and return plain dicts of NumPy arrays, keyed by the
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

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np  # host side: conversion works on NumPy dicts

from minivit.atomic import atomic_write_path, atomic_write_text
from minivit.outputs import check_new_files
from minivit.weight_readers import read_json, read_npz, read_safetensors, read_torch_file

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
    if (config.patch_stride not in (None, config.patch_size) or config.pooling != "cls"
            or config.position_embedding_type != "learned"):
        raise ValueError(
            "transformers' ViT has no overlapping patches, classifies from the CLS token and learns position "
            "embeddings: this config (patch_stride / pooling / position_embedding_type) has no transformers "
            "equivalent."
        )
    fields = config.to_dict()
    del fields["patch_stride"], fields["pooling"], fields["position_embedding_type"]
    return fields


# --- timm and Google layouts -------------------------------------------------------------------

# timm's vision_transformer names, per layer, for the tensors that map one to one.
# (qkv.weight / qkv.bias hold q, k and v stacked and are split apart below.)
_TIMM_TABLE = [
    ("embeddings.cls_token", "cls_token"),
    ("embeddings.position_embeddings", "pos_embed"),
    ("embeddings.patch_embeddings.projection.{p}", "patch_embed.proj.{p}"),
    ("encoder.layers.{i}.layernorm_before.{p}", "blocks.{i}.norm1.{p}"),
    ("encoder.layers.{i}.attention.o_proj.{p}", "blocks.{i}.attn.proj.{p}"),
    ("encoder.layers.{i}.layernorm_after.{p}", "blocks.{i}.norm2.{p}"),
    ("encoder.layers.{i}.mlp.fc1.{p}", "blocks.{i}.mlp.fc1.{p}"),
    ("encoder.layers.{i}.mlp.fc2.{p}", "blocks.{i}.mlp.fc2.{p}"),
    ("layernorm.{p}", "norm.{p}"),
    ("classifier.{p}", "head.{p}"),
]
_TIMM_QKV = re.compile(r"blocks\.(?P<i>\d+)\.attn\.qkv\.(?P<p>weight|bias)$")


def from_timm(state_dict: dict) -> dict:
    """timm's ``vision_transformer`` state dict (NumPy or torch tensors) -> minivit names and layouts.

    timm computes q, k and v with one fused linear layer, ``blocks.{i}.attn.qkv``, whose
    (3D, D) weight stacks the three (D, D) weights; minivit keeps them apart, as transformers.
    A timm model without a head (num_classes=0) gives a dict without ``classifier.*``.
    """
    converted, unknown = {}, []
    for name, array in state_dict.items():
        array = _to_numpy(array)
        qkv = _TIMM_QKV.match(name)
        if qkv:
            prefix = f"encoder.layers.{qkv['i']}.attention"
            for projection, part in zip(("q_proj", "k_proj", "v_proj"), np.split(array, 3, axis=0)):
                converted[f"{prefix}.{projection}.{qkv['p']}"] = part.T.copy() if qkv["p"] == "weight" else part.copy()
            continue
        for minivit_pattern, timm_pattern in _TIMM_TABLE:
            match = _pattern_to_regex(timm_pattern).match(name)
            if match:
                target = minivit_pattern.format(**match.groupdict())
                converted[target] = array.T.copy() if _LINEAR_WEIGHT.search(target) else array.copy()
                break
        else:
            unknown.append(name)
    if unknown:
        shown = ", ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        raise KeyError(
            f"{len(unknown)} key(s) of this timm state dict have no place in a ViT as transformers (and "
            f"minivit) build it: {shown}. The plain ViT (vit_tiny/small/base/large_patch*) converts; "
            "variants with layer scale (ls1/ls2), a distillation token, register tokens, fc_norm "
            "(average pooling) or q/k norms do not."
        )
    position = converted.get("embeddings.position_embeddings")
    patches = converted.get("embeddings.patch_embeddings.projection.weight")
    if position is not None and patches is not None and not _is_square(position.shape[1] - 1):
        raise ValueError(
            f"timm's pos_embed has {position.shape[1]} rows, not 1 + a square grid: this model keeps no "
            "position for the class token (no_embed_class) or has extra tokens; minivit cannot load it."
        )
    return converted


def _google_keys(npz, prefix: str, num_layers: int):
    """(minivit name, Google key, how to reshape) for every tensor of a Google ViT .npz."""
    yield "embeddings.cls_token", f"{prefix}cls", None
    yield "embeddings.position_embeddings", f"{prefix}Transformer/posembed_input/pos_embedding", None
    # Flax convolution kernel (p, p, C, D) -> Conv2d layout (D, C, p, p)
    yield "embeddings.patch_embeddings.projection.weight", f"{prefix}embedding/kernel", "conv"
    yield "embeddings.patch_embeddings.projection.bias", f"{prefix}embedding/bias", None
    for i in range(num_layers):
        block = f"{prefix}Transformer/encoderblock_{i}/"
        attention = block + "MultiHeadDotProductAttention_1/"
        layer = f"encoder.layers.{i}."
        for p, flax_p in (("weight", "scale"), ("bias", "bias")):
            yield layer + f"layernorm_before.{p}", block + f"LayerNorm_0/{flax_p}", None
            yield layer + f"layernorm_after.{p}", block + f"LayerNorm_2/{flax_p}", None
        for projection, flax_name in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value")):
            # per-head kernels (D, H, head_dim) and biases (H, head_dim): flatten the heads
            yield layer + f"attention.{projection}.weight", attention + f"{flax_name}/kernel", "heads_out"
            yield layer + f"attention.{projection}.bias", attention + f"{flax_name}/bias", "flat"
        yield layer + "attention.o_proj.weight", attention + "out/kernel", "heads_in"  # (H, head_dim, D)
        yield layer + "attention.o_proj.bias", attention + "out/bias", None
        for index, fc in ((0, "fc1"), (1, "fc2")):  # Flax Dense kernels are (in, out), as minivit's
            yield layer + f"mlp.{fc}.weight", block + f"MlpBlock_3/Dense_{index}/kernel", None
            yield layer + f"mlp.{fc}.bias", block + f"MlpBlock_3/Dense_{index}/bias", None
    for p, flax_p in (("weight", "scale"), ("bias", "bias")):
        yield f"layernorm.{p}", f"{prefix}Transformer/encoder_norm/{flax_p}", None
    if f"{prefix}head/kernel" in npz:
        yield "classifier.weight", f"{prefix}head/kernel", None
        yield "classifier.bias", f"{prefix}head/bias", None


def from_google_npz(path) -> dict:
    """The original ViT checkpoints (google-research/vision_transformer, .npz of Flax arrays)
    -> a minivit state dict. The number of heads is in the per-head kernels: see
    ``config_from_state_dict`` / ``load_pretrained``, which read it from the same file."""
    state, _ = _read_google_npz(path)
    return state


def _read_google_npz(path) -> tuple[dict, int]:
    arrays = read_npz(path)
    prefix = "opt/target/" if "opt/target/embedding/kernel" in arrays else ""
    if f"{prefix}embedding/kernel" not in arrays:
        raise KeyError(f"{path} is not a Google ViT checkpoint: it has no 'embedding/kernel' "
                       f"(its first keys: {', '.join(list(arrays)[:5])}).")
    if f"{prefix}pre_logits/kernel" in arrays:
        raise ValueError(
            f"{path} has a pre-logits (representation) layer before its head, which transformers' ViT and "
            "minivit do not have. Use a checkpoint without one (the ImageNet-1k finetuned or 'augreg' "
            "files), as transformers' own conversion does."
        )
    blocks = f"{prefix}Transformer/encoderblock_"
    num_layers = len({key[len(blocks):].split("/")[0] for key in arrays if key.startswith(blocks)})
    state, used = {}, set()
    for name, key, reshape in _google_keys(arrays, prefix, num_layers):
        if key not in arrays:
            raise KeyError(f"{path} lacks {key!r}: not the layout of the original ViT checkpoints.")
        array = arrays[key]
        used.add(key)
        if reshape == "conv":
            array = array.transpose(3, 2, 0, 1)
        elif reshape == "heads_out":
            array = array.reshape(array.shape[0], -1)
        elif reshape == "heads_in":
            array = array.reshape(-1, array.shape[-1])
        elif reshape == "flat":
            array = array.reshape(-1)
        state[name] = np.ascontiguousarray(array)
    unknown = sorted(key for key in arrays if key not in used and key.startswith(prefix)
                     and not key.startswith("opt/state"))
    if unknown:
        raise KeyError(f"{path}: {len(unknown)} key(s) have no place in a ViT: {', '.join(unknown[:8])}.")
    num_heads = arrays[f"{prefix}Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"].shape[1]
    return state, num_heads


# --- configs from weights, and loading any layout ---------------------------------------------

def config_from_state_dict(state: dict, num_attention_heads: int | None = None, **fields):
    """The ViTConfig that a minivit state dict (from any layout) describes.

    The shapes give everything but the number of heads (q, k and v are (D, D) whatever it
    is): pass ``num_attention_heads``, or get the ViT family's head size of 64 (Tiny 3,
    Small 6, Base 12, Large 16 heads). ``fields`` override the rest (e.g. layer_norm_eps).
    """
    from minivit.config import ViTConfig

    required = ("embeddings.patch_embeddings.projection.weight", "embeddings.position_embeddings",
                "encoder.layers.0.mlp.fc1.weight")
    missing = [name for name in required if name not in state]
    if missing:
        raise KeyError(f"Cannot read a ViT's shape from these weights: {', '.join(missing)} missing.")
    hidden, channels, patch, _ = state["embeddings.patch_embeddings.projection.weight"].shape
    grid = _square_side(state["embeddings.position_embeddings"].shape[1] - 1)
    if num_attention_heads is None:
        if hidden % 64:
            raise ValueError(f"The weights do not say how many attention heads there are and the hidden size "
                             f"{hidden} is not a multiple of 64: pass num_attention_heads.")
        num_attention_heads = hidden // 64
    layers = len({name.split(".")[2] for name in state if name.startswith("encoder.layers.")})
    inferred = dict(image_size=grid * patch, patch_size=patch, num_channels=channels, hidden_size=hidden,
                    num_hidden_layers=layers, num_attention_heads=num_attention_heads,
                    intermediate_size=state["encoder.layers.0.mlp.fc1.weight"].shape[1],
                    qkv_bias="encoder.layers.0.attention.q_proj.bias" in state)
    if "classifier.weight" in state:
        inferred["num_labels"] = state["classifier.weight"].shape[1]
    return ViTConfig(**{**inferred, **fields})


def read_pretrained(source, num_attention_heads: int | None = None) -> tuple:
    """(ViTConfig, minivit state dict, meta) from any supported source, on the host:

        a minivit checkpoint (.npz written by minivit.train)
        a transformers folder (config.json + model.safetensors), or a hub name such as
          "google/vit-base-patch16-224" (needs huggingface_hub and the network)
        a Google ViT .npz (google-research/vision_transformer)
        a timm state dict (.safetensors, or .pth/.bin when torch is installed)

    ``meta`` carries what the source says besides weights: class names, and the
    normalisation (mean, std) the model was trained with, where known; "assumed" lists the
    config fields the source did not record (guessed here). A local path that does not exist
    is a missing file, never looked up on the hub; weights holding NaN or infinity are refused.
    """
    config, state, meta = _read_any(source, num_attention_heads)
    bad = [name for name, array in state.items()
           if np.asarray(array).dtype.kind == "f" and not np.isfinite(array).all()]
    if bad:
        raise ValueError(f"{source} holds non-finite weights (NaN or infinity in {', '.join(bad[:4])}"
                         f"{' ...' if len(bad) > 4 else ''}): they are no model to start from.")
    return config, state, meta


def _read_any(source, num_attention_heads: int | None) -> tuple:
    from minivit.checkpoint import read_checkpoint
    from minivit.config import ViTConfig

    path = Path(source).expanduser()
    if path.is_dir() or (not path.exists() and _looks_like_hub_name(str(source))):
        return _read_hf(source)
    if not path.is_file():
        raise FileNotFoundError(f"No such file or folder: {source} (give a minivit checkpoint, a transformers "
                                "folder or hub name, a Google .npz or a timm .safetensors/.pth file).")
    if path.suffix == ".npz":
        if "meta" in read_npz(path):
            meta, state, _ = read_checkpoint(path)
            return ViTConfig.from_dict(meta["config"]), state, meta
        state, heads = _read_google_npz(path)
        # Google's ViTs: exact GELU, LayerNorm eps 1e-6, mean = std = 0.5 in [0, 1] pixels
        return (config_from_state_dict(state, heads, layer_norm_eps=1e-6), state,
                {"mean": [0.5] * 3, "std": [0.5] * 3, "source": str(path)})
    if path.suffix in (".safetensors", ".pth", ".pt", ".bin"):
        tensors = _read_tensor_file(path)
        # a bare state dict records no LayerNorm eps or activation: these may be set when finetuning
        meta = {"source": str(path), "assumed": ["layer_norm_eps", "hidden_act"]}
        if any(name.startswith("blocks.") for name in tensors):
            state = from_timm(tensors)
            return config_from_state_dict(state, num_attention_heads, layer_norm_eps=1e-6), state, meta
        try:
            state = from_hf(tensors)
        except KeyError as error:
            raise KeyError(f"{path}: unknown key layout, neither timm's (blocks.*) nor transformers' (vit.*). "
                           f"{error.args[0]}") from error
        return config_from_state_dict(state, num_attention_heads), state, meta
    raise ValueError(f"Unknown weights file {path}: expected .npz (minivit or Google), .safetensors, .pth or "
                     "a transformers folder.")


def load_pretrained(source, num_attention_heads: int | None = None, dtype: str = "float32"):
    """A ViTForImageClassification with the weights of ``source`` (any layout of ``read_pretrained``),
    in eval mode; ``model.checkpoint_meta`` holds the source's class names and normalisation."""
    from minivit.model import ViTForImageClassification

    config, state, meta = read_pretrained(source, num_attention_heads)
    model = ViTForImageClassification(config, dtype=dtype)
    if "classifier.weight" not in state:  # a backbone without a head: keep the fresh one
        warnings.warn(f"{source} has no classification head: the classifier is freshly initialised "
                      "(finetune it before use).", stacklevel=2)
        state = {**state, **{name: p for name, p in model.state_dict().items() if name.startswith("classifier.")}}
    model.load_state_dict(state)
    model.checkpoint_meta = meta
    return model.eval()


# --- transformers folders (save_pretrained / from_pretrained) -----------------------------------

def load_hf_pretrained(folder_or_name, dtype: str = "float32"):
    """transformers' ViT (a ``save_pretrained`` folder, or a hub name) as a minivit model."""
    return load_pretrained(folder_or_name, dtype=dtype)


EXPORT_FILES = ("model.safetensors", "config.json", "preprocessor_config.json")


def save_hf_pretrained(model, folder, class_names: list[str] | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` as a folder that ``transformers.ViTForImageClassification.from_pretrained``
    loads: config.json and model.safetensors (transformers 5.x names, float32).

    A folder that already holds one of those files (another model's export) is refused, nothing
    written, unless ``overwrite=True``.
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"save_hf_pretrained: {folder} is a file; the export needs a folder.")
    check_new_files([folder / name for name in EXPORT_FILES], "folder", overwrite, flag="overwrite=True")
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    meta = model.checkpoint_meta
    class_names = class_names or meta.get("class_names") or [f"LABEL_{i}" for i in range(config.num_labels)]
    if len(class_names) != config.num_labels:
        raise ValueError(f"{len(class_names)} class names for a model with {config.num_labels} labels.")
    hf_config = {
        "architectures": ["ViTForImageClassification"], "model_type": "vit", **hf_config_kwargs(config),
        "encoder_stride": config.patch_size, "dtype": "float32",
        "id2label": {str(i): name for i, name in enumerate(class_names)},
        "label2id": {name: i for i, name in enumerate(class_names)},
    }
    tensors = {name: np.ascontiguousarray(array, dtype=np.float32)
               for name, array in to_hf(model.state_dict()).items()}
    atomic_write_path(folder / "model.safetensors",
                      lambda path: save_file(tensors, str(path), metadata={"format": "pt"}))
    atomic_write_text(folder / "config.json", json.dumps(hf_config, indent=2))
    if "mean" in meta:  # the normalisation, as transformers' image processor reads it
        processor = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "do_rescale": True,
                     "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": meta["mean"],
                     "image_std": meta["std"], "size": {"height": config.image_size, "width": config.image_size}}
        atomic_write_text(folder / "preprocessor_config.json", json.dumps(processor, indent=2))
    return folder


def _read_hf(folder_or_name) -> tuple:
    from minivit.config import ViTConfig

    folder = Path(folder_or_name).expanduser()
    if not folder.is_dir():
        folder = _download_from_hub(str(folder_or_name))
    config_path = folder / "config.json"
    if not config_path.is_file():
        hint = "".join(f" It holds a minivit run: give its checkpoint, {folder / name}." for name in
                       ("checkpoint-best.npz",) if (folder / name).is_file())
        raise FileNotFoundError(f"{folder} has no config.json: not a transformers save_pretrained folder.{hint}")
    hf_config = read_json(config_path)
    if hf_config.get("model_type") != "vit":
        raise ValueError(f"{folder} holds a {hf_config.get('model_type')!r} model; minivit loads model_type 'vit'.")
    tensors = {}
    for file in _safetensors_files(folder):
        tensors.update(_read_tensor_file(file))
    if not any(name.startswith("vit.") for name in tensors):  # ViTModel: the backbone alone
        tensors = {(name if name.startswith("classifier.") else f"vit.{name}"): array
                   for name, array in tensors.items()}
    tensors = {name: array for name, array in tensors.items() if ".pooler." not in name}  # unused by the classifier
    fields = dict(hf_config)
    if "id2label" in hf_config:
        fields["num_labels"] = len(hf_config["id2label"])
    if "classifier.weight" in tensors:
        fields["num_labels"] = tensors["classifier.weight"].shape[0]
    config = ViTConfig.from_dict(fields)
    meta = {"source": str(folder_or_name)}
    if "id2label" in hf_config and len(hf_config["id2label"]) == config.num_labels:
        meta["class_names"] = [hf_config["id2label"][str(i)] for i in range(config.num_labels)]
    processor = folder / "preprocessor_config.json"
    if processor.is_file():
        settings = read_json(processor)
        if "image_mean" in settings:
            meta["mean"], meta["std"] = settings["image_mean"], settings["image_std"]
    return config, from_hf(tensors), meta


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} has no weight_map: not a transformers index of safetensors shards.")
        return sorted({folder / shard for shard in weight_map.values()})
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    if (folder / "pytorch_model.bin").is_file():
        raise FileNotFoundError(f"{folder} has only pytorch_model.bin (a pickle). Re-save it with transformers: "
                                "ViTForImageClassification.from_pretrained(folder).save_pretrained(new_folder), "
                                "which writes model.safetensors.")
    raise FileNotFoundError(f"{folder} has no model.safetensors.")


def _download_from_hub(name: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:
        raise FileNotFoundError(f"{name} is neither a folder nor a file here, and huggingface_hub is not installed "
                                "to fetch it from the hub: pip install huggingface_hub, or pass a local folder "
                                "written by save_pretrained.") from error
    try:
        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as error:  # network, unknown repository, gated model: say which
        raise FileNotFoundError(f"Could not fetch {name!r} from the Hugging Face hub "
                                f"({type(error).__name__}: {error}).") from error


def _read_tensor_file(path: Path) -> dict:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return read_torch_file(path)


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().float().numpy() if str(array.dtype) == "torch.bfloat16" else \
            array.detach().cpu().numpy()
    return np.asarray(array)


def _is_square(n: int) -> bool:
    return math.isqrt(n) ** 2 == n


def _square_side(n: int) -> int:
    if not _is_square(n):
        raise ValueError(f"The position table has {n} patch rows, not a square grid: minivit needs square images.")
    return math.isqrt(n)


def _looks_like_hub_name(name: str) -> bool:
    """"owner/model", and nothing that reads as a local path: no leading ./ ~ or /, a single slash, no
    weights-file suffix, and no local folder named like the owner (runs/x is a missing local file)."""
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]", name):
        return False
    owner, model = name.split("/")
    if Path(owner).exists() or Path(model).suffix.lower() in {".npz", ".safetensors", ".pth", ".pt", ".bin",
                                                               ".json", ".npy", ".ckpt"}:
        return False
    return True
