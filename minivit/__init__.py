"""minivit: a Vision Transformer in NumPy (and CuPy), every forward and backward written by hand."""

from minivit import backend
from minivit.config import PRESETS, ViTConfig, preset
from minivit.model import ViTForImageClassification
from minivit.nn import no_grad


def load_checkpoint(path, dtype=None, allow_non_finite=False):
    """The model saved by ``minivit.train`` at ``path``, weights loaded, in eval mode.

    Weights holding NaN or infinity are refused unless ``allow_non_finite`` (to inspect them).
    """
    from minivit.checkpoint import load_checkpoint as _load

    return _load(path, dtype, allow_non_finite)


__version__ = "0.1.0"

__all__ = ["PRESETS", "ViTConfig", "ViTForImageClassification", "backend", "load_checkpoint", "no_grad", "preset"]
