"""Finetune a pretrained ViT: ``python -m minivit.finetune --init-from SOURCE ...`` or ``finetune_model``.

    python -m minivit.finetune --init-from runs/pretrain/checkpoint-best.npz --data-dir data/cifar10-jpg \\
        --classes dog,frog,horse,ship,truck --train-per-class 100 --image-size 48

is ``python -m minivit.train --recipe finetune ...``: the training command with the
finetuning recipe (minivit.training.options.RECIPES["finetune"]: short, a lower peak rate
than pretraining, a short warmup). Every training flag works; ``--freeze`` keeps parts
fixed (name prefixes, or "backbone": all but the head), and ``--layer-decay`` gives layer
l of L the learning rate lr * decay^(L + 1 - l), so that the early, general layers move
less than the late ones (BEiT, MAE).

What happens to the pretrained weights (a new head, position embeddings resized to a new
resolution) is ``minivit.adapt``; which parameters train, and how fast, ``minivit.optim``.
SOURCE is anything ``minivit.convert.read_pretrained`` reads: a minivit checkpoint, a
transformers folder or hub name, a Google .npz, a timm state dict.
"""

from __future__ import annotations

import sys

from minivit.adapt import FinetuneError, adapt_state_dict, build_from_pretrained, finetune_model
from minivit.optim import frozen_names, layer_decay_scales, layer_index
from minivit.train import main as train_main
from minivit.training.options import FINETUNING, RECIPES

__all__ = ["FINETUNE_RECIPE", "FinetuneError", "adapt_state_dict", "build_from_pretrained", "finetune_model",
           "frozen_names", "layer_decay_scales", "layer_index", "main"]

FINETUNE_RECIPE = RECIPES[FINETUNING]  # the options the recipe sets (lesson 10 shows them)


def main(argv=None) -> int:
    """``python -m minivit.train --recipe finetune`` under its own name (its --help shows the recipe's defaults)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return train_main(argv, prog="python -m minivit.finetune", recipe=FINETUNING)


if __name__ == "__main__":
    sys.exit(main())
