"""minivit: a Vision Transformer in NumPy (and CuPy), every forward and backward written by hand."""

from minivit import backend
from minivit.config import PRESETS, ViTConfig, preset
from minivit.model import ViTForImageClassification

__version__ = "0.1.0"

__all__ = ["PRESETS", "ViTConfig", "ViTForImageClassification", "backend", "preset"]
