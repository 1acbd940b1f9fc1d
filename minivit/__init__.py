"""minivit: a Vision Transformer in NumPy (and CuPy), every forward and backward written by hand."""

from minivit import backend
from minivit.config import PRESETS, ViTConfig, preset
from minivit.model import ViTForImageClassification
from minivit.nn import no_grad


def load_checkpoint(path, dtype=None):
    """The model saved by ``minivit.train`` at ``path``, weights loaded, in eval mode."""
    from minivit.checkpoint import load_checkpoint as _load

    return _load(path, dtype)


__version__ = "0.1.0"

__all__ = ["PRESETS", "ViTConfig", "ViTForImageClassification", "backend", "load_checkpoint", "no_grad", "preset"]
