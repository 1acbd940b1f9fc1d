"""The tiny training runs that the tests share: a one-layer ViT of width 16 on 8x8 images.

With ``write_image_folder(per_class=16)`` (3 classes, 48 images) and a quarter held out for
validation: 36 training images, 4 steps of 8 an epoch, a second or two a run.
"""

from __future__ import annotations

from minivit.train import TrainConfig

TINY_ARCHITECTURE = dict(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)
TINY_MODEL = dict(TINY_ARCHITECTURE, num_labels=3, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
TINY_FLAGS = ["--hidden-size", "16", "--num-hidden-layers", "1", "--num-attention-heads", "2",
              "--intermediate-size", "32", "--image-size", "8", "--patch-size", "4", "--batch-size", "8",
              "--no-progress"]  # TINY_ARCHITECTURE on the command line


def tiny_config(data_dir, out, model=TINY_MODEL, **changes) -> TrainConfig:
    """Three epochs of the tiny model on ``data_dir``, written to ``out``; ``changes`` override any field."""
    values = dict(model=model, data_dir=str(data_dir), out=str(out), epochs=3, batch_size=8,
                  val_fraction=0.25, warmup_epochs=1, lr=3e-3, progress=False, eval_batch_size=16)
    values.update(changes)
    return TrainConfig(**values)
