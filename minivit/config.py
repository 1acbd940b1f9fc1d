"""ViTConfig: the shape of a ViT, with transformers' field names, and named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from minivit.ops.embeddings import POSITION_EMBEDDING_TYPES
from minivit.ops.gelu import APPROXIMATIONS
from minivit.ops.pooling import POOLINGS
from minivit.option_checks import number_problem

# The vocabularies of a ViTConfig are those of the operations that implement them.
HIDDEN_ACTS = tuple(APPROXIMATIONS)  # the GELU forms minivit.ops.gelu computes
__all__ = ["HIDDEN_ACTS", "POOLINGS", "POSITION_EMBEDDING_TYPES", "PRESETS", "ViTConfig", "preset"]


@dataclass
class ViTConfig:
    """The fields and defaults of transformers' ``ViTConfig`` (ViT-Base/16 at 224 px), plus:

    patch_stride: distance between patches; None means patch_size (non-overlapping
        patches, the ViT recipe). A smaller stride gives overlapping patches.
    pooling: "cls" classifies from the CLS token (ViT, transformers); "mean" from
        the average of all tokens.
    position_embedding_type: "learned" adds a learned table of position embeddings to the
        tokens (ViT, transformers); "none" adds nothing, so the encoder sees the patches as a
        set, without knowing where each came from (an ablation: lessons/support/ablations.py).
    """

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True
    initializer_range: float = 0.02
    num_labels: int = 2
    patch_stride: int | None = None
    pooling: str = "cls"
    position_embedding_type: str = "learned"

    def __post_init__(self) -> None:
        for field in ("image_size", "patch_size", "num_channels", "hidden_size",
                      "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_labels"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ViTConfig.{field} must be a positive integer; got {value!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"The hidden size ({self.hidden_size}) is not a multiple of the number of attention "
                f"heads ({self.num_attention_heads}): each head gets hidden_size / num_attention_heads "
                "features. Choose num_attention_heads that divides hidden_size."
            )
        if self.hidden_act not in HIDDEN_ACTS:
            raise ValueError(
                f"Unknown hidden_act {self.hidden_act!r}: minivit implements {', '.join(HIDDEN_ACTS)} "
                "('gelu' is the exact erf form, 'gelu_new' and 'gelu_pytorch_tanh' the tanh form)."
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}.")
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(f"ViTConfig.position_embedding_type must be one of {', '.join(POSITION_EMBEDDING_TYPES)} "
                             f"('none' leaves the tokens without positions); got {self.position_embedding_type!r}.")
        problems = [
            number_problem("ViTConfig.hidden_dropout_prob", self.hidden_dropout_prob, 0, 1, high_open=True),
            number_problem("ViTConfig.attention_probs_dropout_prob", self.attention_probs_dropout_prob, 0, 1,
                           high_open=True),
            number_problem("ViTConfig.layer_norm_eps", self.layer_norm_eps, 0, 1, low_open=True),
            # the spread of the initial weights: 0 would start every weight at zero, where no gradient
            # separates one feature from another
            number_problem("ViTConfig.initializer_range", self.initializer_range, 0, 1, low_open=True),
        ]
        problems = [problem for problem in problems if problem]
        if problems:
            raise ValueError("; ".join(problems) + ".")
        if not isinstance(self.qkv_bias, bool):
            raise ValueError(f"ViTConfig.qkv_bias must be True or False; got {self.qkv_bias!r}.")
        if self.patch_size > self.image_size:
            raise ValueError(
                f"patch_size ({self.patch_size}) is larger than image_size ({self.image_size})."
            )
        stride = self.stride
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"ViTConfig.patch_stride must be a positive integer or None; got {stride!r}.")
        if (self.image_size - self.patch_size) % stride != 0:
            raise ValueError(
                f"image_size ({self.image_size}) does not fit a whole number of patches of size "
                f"{self.patch_size} at stride {stride}: (image_size - patch_size) must be a multiple "
                f"of the stride. Choose an image_size such as "
                f"{self.patch_size + stride * ((self.image_size - self.patch_size) // stride)}."
            )

    @property
    def stride(self) -> int:
        return self.patch_size if self.patch_stride is None else self.patch_stride

    @property
    def grid_size(self) -> int:
        """Patches along one side of the image."""
        return (self.image_size - self.patch_size) // self.stride + 1

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> ViTConfig:
        """Build from a dict; keys that are not ViTConfig fields (transformers' extras) are ignored."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in fields.items() if key in known})

    def replace(self, **changes) -> ViTConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, dict] = {
    # A ViT for ten minutes of a laptop's CPU (chosen by benchmarks/cpu_recipe_sweep.py,
    # benchmarks/results/cpu-recipe-sweep.md): CIFAR-10 at 32 px, 4x4 patches of 8 px (16 tokens,
    # so several times the images per second of 4-px patches), a narrow and shallow encoder. 3 layers
    # with an MLP of 256 since 2026-12-07 (4 layers with an MLP of 512 before): about half the work
    # of the linear layers, so 1.5 to 1.8 times the epochs, and ahead of the larger model at every
    # budget measured up to about 50 of its epochs (rounds 7 and 8 of that file).
    "cifar-cpu": dict(image_size=32, patch_size=8, hidden_size=128, num_hidden_layers=3,
                      num_attention_heads=4, intermediate_size=256, num_labels=10),
    # A ViT that trains on a laptop CPU: CIFAR-10 at 32 px, 8x8 patches of 4 px.
    "cifar-tiny": dict(image_size=32, patch_size=4, hidden_size=192, num_hidden_layers=6,
                       num_attention_heads=3, intermediate_size=768, num_labels=10),
    # The vanilla-ViT baseline of "Vision Transformer for Small-Size Datasets"
    # (Lee, Lee, Song 2021): 9 layers, hidden 192, 12 heads, MLP ratio 2, patch 4. No dropout: with
    # dropout 0.1 the five-minute H200 run under-fit (benchmarks/results/gpu-h200-2026-12-04/).
    "cifar-gpu": dict(image_size=32, patch_size=4, hidden_size=192, num_hidden_layers=9,
                      num_attention_heads=12, intermediate_size=384, num_labels=10),
    # ViT-Base/16, as google/vit-base-patch16-224 (ImageNet-1k head).
    "vit-base-patch16-224": dict(num_labels=1000),
}


def preset(name: str, **overrides) -> ViTConfig:
    """A named configuration, e.g. ``preset("cifar-tiny", num_labels=5)``."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}: choose one of {', '.join(PRESETS)}.")
    return ViTConfig(**{**PRESETS[name], **overrides})
