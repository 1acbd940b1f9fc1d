"""Forward/backward pairs, one operation per file.

Every operation follows one contract (CS231n's):

    out, cache = op_forward(inputs...)      # cache: exactly what the backward needs
    dinputs...  = op_backward(dout, cache)  # gradients of a scalar loss w.r.t. the inputs

Backward functions return gradients; they never accumulate into parameters.
The modules in ``minivit.model`` hold the parameters and do the accumulating.

Besides the pairs: the optimizers' updates (updates.py) and the input's normalisation
(pixels.py), plain elementwise math too; and two compositions the model runs at inference
only (no cache, no backward), so that a fast kernel can fuse them: linear_gelu.py and
residual_layernorm.py.

This package is the reference: plain array math through ``minivit.backend.xp``, what
the gradient checks prove. Faster implementations with the same names live in
``minivit/kernels/``; ``minivit.dispatch`` chooses which one the model runs.

``OPERATIONS`` (every name of ``__all__`` but the helpers) is the list of operations the engine
runs through ``minivit.dispatch``: adding an operation is its file here, its import and its name
in ``__all__``; the dispatcher, ``use_mine`` and the kernels' registry read the list from here.
"""

from minivit.ops.attention import (
    AttentionCache,
    attention_backward,
    attention_forward,
    attention_heads_backward,
    attention_heads_forward,
    merge_heads,
    multi_head_attention_backward,
    multi_head_attention_forward,
    split_heads,
)
from minivit.ops.counter_random import sample_uniform
from minivit.ops.dropout import dropout_backward, dropout_forward
from minivit.ops.embeddings import (
    cls_concat_backward,
    cls_concat_forward,
    position_add_backward,
    position_add_forward,
)
from minivit.ops.gelu import gelu_backward, gelu_forward
from minivit.ops.interpolate import interpolate_position_backward, interpolate_position_forward
from minivit.ops.layernorm import layernorm_backward, layernorm_forward
from minivit.ops.linear import linear_backward, linear_forward
from minivit.ops.linear_gelu import linear_gelu_inference
from minivit.ops.losses import cross_entropy_backward, cross_entropy_forward
from minivit.ops.patches import col2im, im2col, patch_grid_size
from minivit.ops.pixels import crop_flip_normalize, normalize
from minivit.ops.pooling import pool_backward, pool_forward
from minivit.ops.randaugment import rand_augment
from minivit.ops.residual import residual_backward, residual_forward
from minivit.ops.residual_layernorm import residual_layernorm_inference
from minivit.ops.softmax import softmax_backward, softmax_forward
from minivit.ops.updates import adamw_update, clip_by_norm, sgd_update, unscale_gradients, update_loss_scale

__all__ = [
    "AttentionCache",
    "attention_backward",
    "attention_forward",
    "attention_heads_backward",
    "attention_heads_forward",
    "adamw_update",
    "clip_by_norm",
    "cls_concat_backward",
    "cls_concat_forward",
    "col2im",
    "crop_flip_normalize",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "dropout_backward",
    "dropout_forward",
    "gelu_backward",
    "gelu_forward",
    "im2col",
    "interpolate_position_backward",
    "interpolate_position_forward",
    "layernorm_backward",
    "layernorm_forward",
    "linear_backward",
    "linear_forward",
    "linear_gelu_inference",
    "merge_heads",
    "multi_head_attention_backward",
    "multi_head_attention_forward",
    "normalize",
    "patch_grid_size",
    "pool_backward",
    "pool_forward",
    "position_add_backward",
    "position_add_forward",
    "rand_augment",
    "sample_uniform",
    "residual_backward",
    "residual_forward",
    "residual_layernorm_inference",
    "sgd_update",
    "softmax_backward",
    "softmax_forward",
    "split_heads",
    "unscale_gradients",
    "update_loss_scale",
]

# Names above that are not operations of their own (a cache's type, layout helpers, a size): the
# engine calls them directly, not through minivit.dispatch.
HELPERS = ("AttentionCache", "merge_heads", "normalize", "patch_grid_size", "split_heads")

# The operations minivit.dispatch runs (and a fast kernel may replace), by name.
OPERATIONS = tuple(name for name in __all__ if name not in HELPERS)
