"""The Vision Transformer, as modules named after transformers' ViT.

    pixel_values (B, C, H, W)
      -> PatchEmbeddings   im2col + linear                      (B, N, D)
      -> ViTEmbeddings     prepend CLS, add positions, dropout  (B, N+1, D)
      -> ViTEncoder        L x ViTLayer (pre-norm):
                             h = h + dropout(attention(layernorm_before(h)))
                             h = h + dropout(mlp(layernorm_after(h)))
      -> layernorm, pool (CLS token or mean), classifier         (B, num_labels)

Each module's backward runs its forward's steps in reverse. Operations come from
``minivit.dispatch``: the reference math of ``minivit/ops`` or a fast kernel with the
same name and signature.
"""

from __future__ import annotations

from minivit import backend, init
from minivit.config import ViTConfig
from minivit.dispatch import (
    attention_heads_backward,
    attention_heads_forward,
    cls_concat_backward,
    cls_concat_forward,
    col2im,
    gelu_backward,
    gelu_forward,
    im2col,
    interpolate_position_backward,
    interpolate_position_forward,
    linear_backward,
    linear_forward,
    linear_gelu_inference,
    pool_backward,
    pool_forward,
    position_add_backward,
    position_add_forward,
    residual_backward,
    residual_forward,
)
from minivit.nn import (
    Dropout,
    FlatParameters,
    LayerNorm,
    Linear,
    Module,
    add_side_by_side,
    backward_of_linear,
    inference,
    new_parameter,
    side_by_side,
)
from minivit.ops.gelu import APPROXIMATIONS
from minivit.ops.patches import patch_grid_size

DTYPES = ("float32", "float64", "float16")  # float16: mixed precision on a GPU (minivit.amp)


class _Init:
    """Draws initial values in a fixed order from one host generator (transformers' scheme)."""

    def __init__(self, config: ViTConfig, seed: int, dtype: str):
        self.rng = init.host_rng(seed)
        self.std = config.initializer_range
        self.dtype = dtype

    def linear(self, in_features: int, out_features: int, bias: bool = True) -> Linear:
        weight = new_parameter(init.trunc_normal(self.rng, (in_features, out_features), self.std), self.dtype)
        return Linear(weight, new_parameter(init.zeros((out_features,)), self.dtype) if bias else None)

    def layernorm(self, size: int, eps: float) -> LayerNorm:
        return LayerNorm(new_parameter(init.ones((size,)), self.dtype),
                         new_parameter(init.zeros((size,)), self.dtype), eps)

    def trunc_normal(self, shape: tuple):
        return new_parameter(init.trunc_normal(self.rng, shape, self.std), self.dtype)

    def zeros(self, shape: tuple):
        return new_parameter(init.zeros(shape), self.dtype)


class PatchProjection(Module):
    """The patch projection, kept in Conv2d's layout: weight (D, C, p, p), bias (D,).

    Applied to im2col's patch rows it is a linear layer with W = weight.reshape(D, C*p*p).T,
    so a Conv2d with kernel = stride = patch size and this matrix product are one operation.
    """

    def __init__(self, weight, bias):
        self.weight = weight
        self.bias = bias

    def forward(self, cols):
        D = self.weight.shape[0]
        out, cache = linear_forward(cols, self.weight.data.reshape(D, -1).T, self.bias.data)
        self._keep(cache)
        return out

    def backward(self, dout, input_grad: bool = True):
        dcols, dweight_2d, dbias = backward_of_linear(dout, self._pop_cache(), input_grad)  # dweight_2d: (C*p*p, D)
        self.weight.grad += dweight_2d.T.reshape(self.weight.shape)
        self.bias.grad += dbias
        return dcols


class PatchEmbeddings(Module):
    """(B, C, H, W) -> (B, N, D): cut patches (im2col) and project each with one matrix.

    Equal to ``Conv2d(C, D, kernel_size=patch_size, stride=patch_stride)`` followed by
    flattening the output grid into a sequence, as transformers' ViTPatchEmbeddings does.
    """

    def __init__(self, config: ViTConfig, initializer: _Init):
        self.patch_size = config.patch_size
        self.stride = config.stride
        weight_shape = (config.hidden_size, config.num_channels, config.patch_size, config.patch_size)
        self.projection = PatchProjection(initializer.trunc_normal(weight_shape),
                                          initializer.zeros((config.hidden_size,)))

    def forward(self, pixel_values):
        cols = im2col(pixel_values, self.patch_size, self.stride)  # (B, N, C*p*p)
        self._keep(pixel_values.shape)
        return self.projection.forward(cols)  # (B, N, D)

    def backward(self, dout, input_grad: bool = True):
        """The projection's gradients; the image's gradient (col2im) only when ``input_grad``."""
        image_shape = self._pop_cache()
        dcols = self.projection.backward(dout, input_grad)  # (B, N, C*p*p), or None
        return col2im(dcols, image_shape, self.patch_size, self.stride) if input_grad else None


class ViTEmbeddings(Module):
    """Patch embeddings, with a learned CLS token in front and learned position embeddings added.

    With ``interpolate_pos_encoding=True`` an image of another size is embedded too:
    the position table's patch grid is resized bicubically to the image's grid
    (``minivit.ops.interpolate``), as transformers' ``interpolate_pos_encoding`` does.
    """

    def __init__(self, config: ViTConfig, initializer: _Init, rng):
        D = config.hidden_size
        self.grid_size = config.grid_size
        self.cls_token = initializer.trunc_normal((1, 1, D))
        # drawn either way, so that every other weight is the learned model's of the same seed
        positions = initializer.trunc_normal((1, config.num_patches + 1, D))
        self.position_embeddings = positions if config.position_embedding_type == "learned" else None
        self.patch_embeddings = PatchEmbeddings(config, initializer)
        self.dropout = Dropout(config.hidden_dropout_prob, rng)

    def forward(self, pixel_values, interpolate_pos_encoding: bool = False):
        patches = self.patch_embeddings.forward(pixel_values)  # (B, N, D)
        tokens, batch_size = cls_concat_forward(patches, self.cls_token.data)  # (B, N+1, D)
        if self.position_embeddings is None:  # position_embedding_type "none": the tokens as they are
            self._keep((batch_size, None))
            return self.dropout.forward(tokens)
        positions, interpolation = self.position_embeddings.data, None
        height, width = pixel_values.shape[2:]
        grid = (patch_grid_size(height, self.patch_embeddings.patch_size, self.patch_embeddings.stride),
                patch_grid_size(width, self.patch_embeddings.patch_size, self.patch_embeddings.stride))
        # transformers' rule: keep the table as it is when the token count matches and the image is square.
        if interpolate_pos_encoding and not (grid[0] * grid[1] == self.grid_size**2 and height == width):
            positions, interpolation = interpolate_position_forward(
                positions, (self.grid_size, self.grid_size), grid)
        tokens, _ = position_add_forward(tokens, positions)
        self._keep((batch_size, interpolation))
        return self.dropout.forward(tokens)

    def backward(self, dout, input_grad: bool = True):
        batch_size, interpolation = self._pop_cache()
        dtokens = self.dropout.backward(dout)
        if self.position_embeddings is not None:
            dtokens, dposition = position_add_backward(dtokens)
            if interpolation is not None:
                dposition = interpolate_position_backward(dposition, interpolation)
            self.position_embeddings.grad += dposition
        dpatches, dcls = cls_concat_backward(dtokens, batch_size)
        self.cls_token.grad += dcls
        return self.patch_embeddings.backward(dpatches, input_grad)


class ViTSelfAttention(Module):
    """Multi-head self-attention with its output projection.

    The query, key and value projections read the same input, so their weights are
    stored side by side, (D, 3D), and one matrix product computes all three.
    After each forward, ``attention_probs`` holds the (B, H, T, T) attention
    probabilities (before dropout), for plots.
    """

    def __init__(self, config: ViTConfig, initializer: _Init, rng):
        D = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.q_proj = initializer.linear(D, D, bias=config.qkv_bias)
        self.k_proj = initializer.linear(D, D, bias=config.qkv_bias)
        self.v_proj = initializer.linear(D, D, bias=config.qkv_bias)
        self.o_proj = initializer.linear(D, D)
        self.dropout_p = config.attention_probs_dropout_prob
        self.rng = rng
        self.attention_probs = None

    def _qkv(self):
        projections = (self.q_proj, self.k_proj, self.v_proj)
        weights = [projection.weight for projection in projections]
        biases = [projection.bias for projection in projections] if self.q_proj.bias is not None else None
        return weights, biases

    def stored_side_by_side(self):
        weights, biases = self._qkv()
        return [weights] + ([biases] if biases else [])

    def forward(self, hidden_states):
        weights, biases = self._qkv()
        qkv_weight = side_by_side(*weights)  # (D, 3D)
        qkv_bias = side_by_side(*biases) if biases else None
        qkv, qkv_cache = linear_forward(hidden_states, qkv_weight, qkv_bias)  # (B, T, 3D)
        context, heads_cache = attention_heads_forward(qkv, self.num_heads, self.dropout_p, self.rng,
                                                       self.training)  # (B, T, D), heads merged
        out, output_cache = linear_forward(context, self.o_proj.weight.data, self.o_proj.bias.data)
        self.attention_probs = heads_cache[0].probs
        self._keep((qkv_cache, heads_cache, output_cache))
        return out

    def backward(self, dout):
        qkv_cache, heads_cache, output_cache = self._pop_cache()
        dcontext, do_weight, do_bias = linear_backward(dout, output_cache)
        self.o_proj.weight.grad += do_weight
        self.o_proj.bias.grad += do_bias
        dqkv = attention_heads_backward(dcontext, heads_cache)  # (B, T, 3D)
        dx, dqkv_weight, dqkv_bias = linear_backward(dqkv, qkv_cache)
        weights, biases = self._qkv()
        add_side_by_side(weights, dqkv_weight)
        if biases:
            add_side_by_side(biases, dqkv_bias)
        return dx


class ViTMLP(Module):
    """fc1 (D -> intermediate), GELU, fc2 (intermediate -> D)."""

    def __init__(self, config: ViTConfig, initializer: _Init):
        self.fc1 = initializer.linear(config.hidden_size, config.intermediate_size)
        self.fc2 = initializer.linear(config.intermediate_size, config.hidden_size)
        self.approximate = APPROXIMATIONS[config.hidden_act]

    def forward(self, x):
        if inference(self, "linear_gelu_inference"):  # fc1, its bias and the GELU in one (nothing kept)
            activated = linear_gelu_inference(x, self.fc1.weight.data, self.fc1._bias_data(), self.approximate)
            return self.fc2.forward(activated)
        hidden = self.fc1.forward(x)
        activated, cache = gelu_forward(hidden, self.approximate)
        self._keep(cache)
        return self.fc2.forward(activated)

    def backward(self, dout):
        dactivated = self.fc2.backward(dout)
        dhidden = gelu_backward(dactivated, self._pop_cache())
        return self.fc1.backward(dhidden)


class ViTLayer(Module):
    """One pre-norm transformer block."""

    def __init__(self, config: ViTConfig, initializer: _Init, rng):
        self.layernorm_before = initializer.layernorm(config.hidden_size, config.layer_norm_eps)
        self.attention = ViTSelfAttention(config, initializer, rng)
        self.attention_dropout = Dropout(config.hidden_dropout_prob, rng)
        self.layernorm_after = initializer.layernorm(config.hidden_size, config.layer_norm_eps)
        self.mlp = ViTMLP(config, initializer)
        self.mlp_dropout = Dropout(config.hidden_dropout_prob, rng)

    def forward(self, hidden_states):
        if inference(self, "residual_layernorm_inference"):
            hidden_states, transformed = self.inference_branches(hidden_states,
                                                                 self.layernorm_before.forward(hidden_states))
            hidden_states, _ = residual_forward(hidden_states, transformed)
            return hidden_states
        attended = self.attention.forward(self.layernorm_before.forward(hidden_states))
        hidden_states, _ = residual_forward(hidden_states, self.attention_dropout.forward(attended))
        transformed = self.mlp.forward(self.layernorm_after.forward(hidden_states))
        hidden_states, _ = residual_forward(hidden_states, self.mlp_dropout.forward(transformed))
        return hidden_states

    def inference_branches(self, hidden_states, normed):
        """Inference (``nn.inference``): the block, given ``normed`` = layernorm_before(hidden_states).
        Returns (the stream after the attention's residual, the MLP's output): the caller adds the
        second with the LayerNorm that follows it (the next block's, or the model's last) in one pass."""
        attended = self.attention.forward(normed)
        hidden_states, normed = self.layernorm_after.add_and_normalize(hidden_states, attended)
        return hidden_states, self.mlp.forward(normed)

    def backward(self, dout):
        # Second residual: the gradient goes both around and through the MLP branch.
        dskip, dbranch = residual_backward(dout)
        dbranch = self.layernorm_after.backward(self.mlp.backward(self.mlp_dropout.backward(dbranch)))
        dhidden = dskip + dbranch
        # First residual, likewise through the attention branch.
        dskip, dbranch = residual_backward(dhidden)
        dbranch = self.layernorm_before.backward(
            self.attention.backward(self.attention_dropout.backward(dbranch))
        )
        return dskip + dbranch


class ViTEncoder(Module):
    def __init__(self, config: ViTConfig, initializer: _Init, rng):
        self.layers = [ViTLayer(config, initializer, rng) for _ in range(config.num_hidden_layers)]

    def forward(self, hidden_states):
        for layer in self.layers:
            hidden_states = layer.forward(hidden_states)
        return hidden_states

    def forward_and_normalize(self, hidden_states, final_layernorm: LayerNorm):
        """Inference (``nn.inference``): final_layernorm(forward(hidden_states)), each residual add done
        with the LayerNorm that follows it (``LayerNorm.add_and_normalize``)."""
        if not self.layers:
            return final_layernorm.forward(hidden_states)
        normed = self.layers[0].layernorm_before.forward(hidden_states)
        next_layernorms = [layer.layernorm_before for layer in self.layers[1:]] + [final_layernorm]
        for layer, next_layernorm in zip(self.layers, next_layernorms):
            hidden_states, transformed = layer.inference_branches(hidden_states, normed)
            hidden_states, normed = next_layernorm.add_and_normalize(hidden_states, transformed)
        return normed

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout


class ViTForImageClassification(Module):
    """A ViT image classifier: ``forward(pixel_values) -> logits``, ``backward(dlogits) -> dpixel_values``.

    Args:
        config: the model's shape (``ViTConfig`` or a preset name such as "cifar-tiny").
        seed: seeds the initial weights (drawn on the host, identical on every backend)
            and the dropout masks.
        dtype: "float32" (training), "float64" (gradient checks) or "float16" (mixed precision on a GPU,
            with float32 master weights in the optimizer: minivit.amp).
    """

    def __init__(self, config: ViTConfig | str, seed: int = 0, dtype: str = "float32"):
        if isinstance(config, str):
            from minivit.config import preset

            config = preset(config)
        if dtype not in DTYPES:
            raise ValueError(f"Unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}.")
        self.config = config
        self.dtype = dtype
        self.seed = seed
        self.rng = backend.default_rng(init.child_seed(seed, 1))  # dropout masks
        initializer = _Init(config, seed, dtype)
        self.embeddings = ViTEmbeddings(config, initializer, self.rng)
        self.encoder = ViTEncoder(config, initializer, self.rng)
        self.layernorm = initializer.layernorm(config.hidden_size, config.layer_norm_eps)
        self.classifier = initializer.linear(config.hidden_size, config.num_labels)
        self._flat = FlatParameters(self, dtype)  # every parameter now a view into one flat array
        self.checkpoint_meta: dict = {}  # what a checkpoint or pretrained source said (class names, normalisation)

    @property
    def flat(self) -> FlatParameters:
        """All parameters in one flat array (``flat.data``) and all gradients in another (``flat.grad``)."""
        return self._flat

    def forward(self, pixel_values, interpolate_pos_encoding: bool = False):
        """pixel_values (B, C, H, W), of the model's dtype, on the active backend -> logits (B, num_labels).

        interpolate_pos_encoding: accept images of another size than config.image_size,
            resizing the position embeddings to their patch grid (bicubic, as transformers).
        """
        self._check_pixel_values(pixel_values, interpolate_pos_encoding)
        hidden_states = self.embeddings.forward(pixel_values, interpolate_pos_encoding)  # (B, N+1, D)
        if inference(self, "residual_layernorm_inference"):  # each residual add with the LayerNorm after it
            hidden_states = self.encoder.forward_and_normalize(hidden_states, self.layernorm)
        else:
            hidden_states = self.encoder.forward(hidden_states)
            hidden_states = self.layernorm.forward(hidden_states)
        pooled, pool_cache = pool_forward(hidden_states, self.config.pooling)  # (B, D)
        self._keep((pool_cache, pooled.shape[0]))
        return self.classifier.forward(pooled)

    __call__ = forward

    def backward(self, dlogits, input_grad: bool = True):
        """dlogits (B, num_labels) -> dpixel_values (B, C, H, W); parameter gradients accumulate.

        input_grad: False when nothing needs the images' gradient (training): the patch
            projection's input-gradient product and col2im are skipped, and None is returned.
        """
        pool_cache, batch_size = self._pop_cache()
        expected = (batch_size, self.config.num_labels)
        if tuple(dlogits.shape) != expected:
            raise ValueError(f"dlogits must have the logits' shape {expected}; got {tuple(dlogits.shape)}.")
        dpooled = self.classifier.backward(dlogits)
        if self.config.pooling == "cls":  # only the CLS rows carry gradient: the final LayerNorm runs on those
            dhidden = pool_backward(self.layernorm.backward(dpooled, token=0), pool_cache)
        else:
            dhidden = self.layernorm.backward(pool_backward(dpooled, pool_cache))
        dhidden = self.encoder.backward(dhidden)
        return self.embeddings.backward(dhidden, input_grad)

    def attention_maps(self) -> list:
        """The last forward's attention probabilities, one (B, H, T, T) array per layer."""
        return [layer.attention.attention_probs for layer in self.encoder.layers]

    def _check_pixel_values(self, pixel_values, interpolate_pos_encoding: bool = False) -> None:
        xp = backend.xp
        config = self.config
        if not isinstance(pixel_values, xp.ndarray):
            raise TypeError(
                f"pixel_values must be a {xp.__name__}.ndarray on the active backend "
                f"({backend.name}); got {type(pixel_values).__module__}.{type(pixel_values).__name__}. "
                "Move it with minivit.backend.asarray(pixel_values)."
            )
        if pixel_values.ndim != 4:
            raise ValueError(
                f"pixel_values must have 4 dimensions (batch, channels, height, width); got shape "
                f"{tuple(pixel_values.shape)}. For a single image use pixel_values[None]."
            )
        if not xp.issubdtype(pixel_values.dtype, xp.floating):
            raise TypeError(
                f"pixel_values must be floating point; got {pixel_values.dtype}. Convert and "
                f"normalise images first, e.g. (images.astype('{self.dtype}') / 255 - mean) / std."
            )
        if pixel_values.dtype != self.dtype:
            raise TypeError(
                f"pixel_values has dtype {pixel_values.dtype} but the model is {self.dtype}: "
                f"cast it with pixel_values.astype('{self.dtype}')."
            )
        _, channels, height, width = pixel_values.shape
        if channels != config.num_channels:
            raise ValueError(
                "Make sure that the channel dimension of the pixel values match with the one set in "
                f"the configuration. Expected {config.num_channels} but got {channels}."
            )
        if interpolate_pos_encoding:
            for side, size in (("height", height), ("width", width)):
                if size < config.patch_size or (size - config.patch_size) % config.stride != 0:
                    raise ValueError(
                        f"The image {side} ({size}) does not fit whole patches: with patch_size "
                        f"{config.patch_size} and stride {config.stride}, (size - patch_size) must be a "
                        f"non-negative multiple of {config.stride}. Resize or crop the images, e.g. to "
                        f"{max(config.patch_size, size - (size - config.patch_size) % config.stride)} pixels."
                    )
        elif height != config.image_size or width != config.image_size:
            raise ValueError(
                f"Input image size ({height}*{width}) doesn't match model "
                f"({config.image_size}*{config.image_size}). Pass interpolate_pos_encoding=True to "
                "run on images of another size."
            )
