"""Finetune a pretrained ViT: ``python -m minivit.finetune --init-from SOURCE ...`` or ``finetune_model``.

    python -m minivit.finetune --init-from runs/pretrain/checkpoint-best.npz --data-dir data/cifar10-jpg \\
        --classes dog,frog,horse,ship,truck --train-per-class 100 --image-size 48

The second half of the ViT recipe. From the pretrained model to the finetuned one:

    classification head   a fresh one (zero weights, as the ViT paper) when the classes change
    position embeddings   resampled bicubically to the new patch grid, CLS position kept apart
                          (minivit.ops.interpolate: what transformers' interpolate_pos_encoding does)
    everything else       copied; a shape that still differs is an error that names it

``--freeze`` keeps parts fixed (name prefixes, or "backbone": all but the head), and
``--layer-decay`` gives layer l of L the learning rate lr * decay^(L + 1 - l), so that
the early, general layers move less than the late ones (BEiT, MAE).

SOURCE is anything ``minivit.convert.read_pretrained`` reads: a minivit checkpoint,
a transformers folder or hub name, a Google .npz, a timm state dict.
"""

from __future__ import annotations

import sys

from minivit import backend
from minivit.config import ViTConfig
from minivit.model import ViTForImageClassification
from minivit.ops import interpolate_position_forward


class FinetuneError(ValueError):
    """Pretrained weights that cannot become the requested model."""


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
    if source.grid_size != target.grid_size:
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
                                  new_head=new_head)
    model.checkpoint_meta = meta
    return model.train()


def build_from_pretrained(source_config: ViTConfig, state: dict, target_config: ViTConfig, seed: int = 0,
                          dtype: str = "float32", new_head: bool | None = None,
                          verbose: bool = False) -> ViTForImageClassification:
    model = ViTForImageClassification(target_config, seed=seed, dtype=dtype)
    adapted, notes = adapt_state_dict(state, source_config, target_config, model.state_dict(), new_head)
    model.load_state_dict(adapted)
    if verbose:
        for note in notes:
            print(f"finetune: {note}", file=sys.stderr)
    return model


# --- what trains, and how fast ------------------------------------------------------------------

def frozen_names(names: list[str], freeze: str) -> set[str]:
    """The parameter names that ``freeze`` holds fixed.

    ``freeze``: comma-separated name prefixes ("embeddings,encoder.layers.0"), or "backbone"
    for everything but the classifier (a linear probe); "" freezes nothing.
    """
    frozen = set()
    for prefix in filter(None, (item.strip() for item in freeze.split(","))):
        if prefix == "backbone":
            matched = {name for name in names if not name.startswith("classifier.")}
        else:
            matched = {name for name in names if name == prefix or name.startswith(prefix + ".")}
        if not matched:
            roots = sorted({".".join(name.split(".")[:3]) if name.startswith("encoder.") else name.split(".")[0]
                            for name in names})
            raise ValueError(f"--freeze {prefix!r} names no parameter. Use 'backbone' or prefixes such as "
                             f"{', '.join(roots[:8])} ...")
        frozen |= matched
    if frozen == set(names):
        raise ValueError("--freeze leaves nothing to train.")
    return frozen


def layer_index(name: str, num_layers: int) -> int:
    """0 for the embeddings, l + 1 for encoder layer l, num_layers + 1 for the final norm and head."""
    if name.startswith("embeddings."):
        return 0
    if name.startswith("encoder.layers."):
        return int(name.split(".")[2]) + 1
    return num_layers + 1


def layer_decay_scales(names: list[str], num_layers: int, decay: float) -> dict[str, float]:
    """{name: decay ** (num_layers + 1 - layer_index)}: the head learns at the full rate,
    each layer below it at ``decay`` times the rate of the layer above."""
    if not 0 < decay <= 1:
        raise ValueError(f"--layer-decay must be in (0, 1]; got {decay}.")
    return {name: decay ** (num_layers + 1 - layer_index(name, num_layers)) for name in names}


# --- command line --------------------------------------------------------------------------------

# The finetuning recipe: short, a lower peak rate than pretraining, a short warmup.
FINETUNE_RECIPE = dict(epochs=30, batch_size=64, lr=5e-4, min_lr=1e-6, weight_decay=0.05, warmup_epochs=3,
                       label_smoothing=0.1)


def main(argv=None) -> int:
    from minivit.train import main as train_main

    argv = list(sys.argv[1:] if argv is None else argv)
    wants_help = "-h" in argv or "--help" in argv
    has_source = any(arg == "--init-from" or arg.startswith("--init-from=") for arg in argv)
    if not (has_source or wants_help or "--resume" in argv):
        print("error: python -m minivit.finetune needs --init-from SOURCE (a minivit checkpoint, a transformers "
              "folder or hub name, a Google .npz or a timm file). See --help.", file=sys.stderr)
        return 2
    return train_main(argv, recipe=FINETUNE_RECIPE, prog="python -m minivit.finetune")


if __name__ == "__main__":
    sys.exit(main())
