"""Pretrained weights made to fit the model a finetuning run asks for.

    classification head   a fresh one (zero weights, as the ViT paper) when the classes change
    position embeddings   resampled bicubically to the new patch grid, CLS position kept apart
                          (minivit.ops.interpolate: what transformers' interpolate_pos_encoding does)
    everything else       copied; a shape that still differs is an error that names it

Only the head (num_labels), the resolution (image_size) and what does not change the
weights' meaning (dropout, the initializer of the new head) may differ from the pretrained
model; any other field a finetuning run asks for (a different number of attention heads, a
different activation, ...) is refused, even where the weights would fit, because the
pretrained weights would compute something else. The command line is ``python -m
minivit.train --recipe finetune`` (or its alias ``python -m minivit.finetune``).
"""

from __future__ import annotations

import sys

from minivit import backend
from minivit.config import ViTConfig
from minivit.model import ViTForImageClassification
from minivit.ops import interpolate_position_forward


class FinetuneError(ValueError):
    """Pretrained weights that cannot become the requested model."""


# Fields a finetuned model may have differently from its pretrained one.
FINETUNE_MAY_CHANGE = ("num_labels", "image_size", "hidden_dropout_prob", "attention_probs_dropout_prob",
                       "initializer_range")


def check_finetune_changes(source: ViTConfig, target: ViTConfig, assumed: tuple = ()) -> None:
    """Refuse a target model that differs from the pretrained ``source`` in a field other than
    FINETUNE_MAY_CHANGE. ``assumed``: fields the source did not record (guessed when reading it),
    which the target may set."""
    source_fields, target_fields = source.to_dict(), target.to_dict()
    changed = [f"{name}: pretrained {source_fields[name]!r}, requested {target_fields[name]!r}"
               for name in source_fields
               if name not in FINETUNE_MAY_CHANGE and name not in assumed
               and source_fields[name] != target_fields[name]]
    if changed:
        raise FinetuneError(
            "The requested model differs from the pretrained one (" + "; ".join(changed) + "). Only "
            + ", ".join(FINETUNE_MAY_CHANGE) + " may change when finetuning: leave the other model options "
            "out, and they come from the pretrained model."
        )


def adapt_state_dict(state: dict, source: ViTConfig, target: ViTConfig, fresh: dict,
                     new_head: bool | None = None) -> tuple[dict, list[str]]:
    """The pretrained ``state`` (of a ``source``-shaped model) made to fit a ``target``-shaped one.

    ``fresh`` is the target model's own initial state dict, which supplies a new head.
    ``new_head``: replace the classifier (True), keep it (False), or replace it only when the
    number of classes differs (None). Returns (state dict, notes on what was changed).
    """
    notes = []
    adapted = dict(state)
    # A new head for new classes (or when the source had none): zero-initialised, as the ViT
    # paper's finetuning does, so that the pretrained features start unchanged by a random head.
    head_shape = fresh["classifier.weight"].shape
    if new_head is None:
        new_head = "classifier.weight" not in state or state["classifier.weight"].shape != head_shape
    if new_head:
        adapted["classifier.weight"] = fresh["classifier.weight"] * 0
        adapted["classifier.bias"] = fresh["classifier.bias"] * 0
        notes.append(f"new classification head for {target.num_labels} classes (zero-initialised)")
    # Position embeddings for the new patch grid.
    if source.grid_size != target.grid_size and "embeddings.position_embeddings" in state:
        positions = backend.asarray(state["embeddings.position_embeddings"].astype("float64"))
        resized, _ = interpolate_position_forward(positions, (source.grid_size,) * 2, (target.grid_size,) * 2)
        adapted["embeddings.position_embeddings"] = backend.to_numpy(resized).astype(
            state["embeddings.position_embeddings"].dtype)
        notes.append(f"position embeddings resized from a {source.grid_size}x{source.grid_size} to a "
                     f"{target.grid_size}x{target.grid_size} patch grid (bicubic)")
    misfits = [f"{name}: pretrained {tuple(adapted[name].shape)}, model {tuple(fresh[name].shape)}"
               for name in fresh if name in adapted and tuple(adapted[name].shape) != tuple(fresh[name].shape)]
    missing = [name for name in fresh if name not in adapted]
    if misfits or missing:
        raise FinetuneError(
            "The pretrained weights do not fit the requested model"
            + (f"; shapes differ: {'; '.join(misfits[:6])}" if misfits else "")
            + (f"; missing: {', '.join(missing[:6])}" if missing else "")
            + ". Only the head (--num-labels) and the resolution (--image-size) may change when finetuning; "
            "keep the other model options as the checkpoint has them."
        )
    return {name: adapted[name] for name in fresh}, notes


def finetune_model(source, seed: int = 0, dtype: str = "float32", num_attention_heads: int | None = None,
                   new_head: bool | None = None, **config_changes) -> ViTForImageClassification:
    """A model for finetuning: pretrained weights from ``source``, with ``config_changes``
    (e.g. num_labels=5, image_size=48, hidden_dropout_prob=0.1) applied. In training mode.

    new_head: a fresh classifier (True), the pretrained one (False), or a fresh one only
        when num_labels changes (None). Pass True for new classes that happen to be as many.
    """
    from minivit.convert import read_pretrained

    source_config, state, meta = read_pretrained(source, num_attention_heads)
    model = build_from_pretrained(source_config, state, source_config.replace(**config_changes), seed, dtype,
                                  new_head=new_head, assumed=tuple(meta.get("assumed", ())))
    model.checkpoint_meta = meta
    return model.train()


def build_from_pretrained(source_config: ViTConfig, state: dict, target_config: ViTConfig, seed: int = 0,
                          dtype: str = "float32", new_head: bool | None = None, verbose: bool = False,
                          assumed: tuple = ()) -> ViTForImageClassification:
    """A ``target_config`` model holding the pretrained ``state`` (of a ``source_config`` model),
    adapted by ``adapt_state_dict``; refused when the target changes more than finetuning may."""
    model = ViTForImageClassification(target_config, seed=seed, dtype=dtype)
    adapted, notes = adapt_state_dict(state, source_config, target_config, model.state_dict(), new_head)
    check_finetune_changes(source_config, target_config, assumed)  # the shapes fit; does the meaning?
    model.load_state_dict(adapted)
    if verbose:
        for note in notes:
            print(f"finetune: {note}", file=sys.stderr)
    return model
