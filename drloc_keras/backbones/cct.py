"""CCT, the Compact Convolutional Transformer (Hassani et al. 2021, "Escaping the Big Data
Paradigm with Compact Transformers"), as a DRLoc backbone.

A convolutional tokenizer (convolution, ReLU, 3x3 max pooling at stride 2, repeated), a learnable
positional embedding, a transformer encoder, and sequence pooling: an attention-weighted mean of
the output tokens, instead of a class token, feeds the linear classifier.

Facts follow the authors' code (SHI-Labs/Compact-Transformers): bias-free tokenizer
convolutions and query/key/value projection, LayerNorm epsilon 1e-5, exact GELU; initialised
as theirs: Dense kernels timm's truncated normal std 0.02 (a plain normal, see
`drloc_keras.initializers`) with zero biases, positional embedding truncated normal std 0.2
(bounds +-2: a plain normal too), tokenizer convolutions `kaiming_normal_` (untruncated, std
sqrt(2 / fan_in)). Its encoder layer
applies the second LayerNorm to the residual stream itself, not only to the MLP's input:
    x = x + Attention(LN1(x));  x = LN2(x);  x = x + MLP(x)
and so does this one (the published CCT-7/3x1 results come from that layer).

The DRLoc feature map is the last encoder layer's output, before the final LayerNorm (as
spec section 8 does for Swin and ViT), reshaped to the tokenizer's grid: 16x16x256
for CCT-7/3x1 at 32x32.

Example:
>>> model = cct_7_3x1(num_classes=10)
>>> [f.shape for f in model.output["feature_maps"]]
[(None, 16, 16, 256)]
"""

import keras
import numpy as np
from keras import layers, ops

from drloc_keras import initializers
from drloc_keras.backbones.layers import (
    Backbone,
    DropPath,
    Dropout,
    MultiHeadSelfAttention,
    PositionEmbedding,
    build_named,
    check_positive_int,
    check_rate,
    conv_output_size,
    dtype_policy,
    image_shape,
    mlp,
    refuse_unknown_arguments,
)

# Named sizes. `cct_7_3x1` is the authors' cct_7_3x1_32 for 32x32 images: 7 layers, 4 heads,
# width 256, MLP ratio 2, one 3x3 convolution (stride 1) in the tokenizer, attention dropout
# 0.1, stochastic depth 0.1; 3.76M parameters with 10 classes.
CCT_CONFIGS = {
    "cct_7_3x1": {
        "image_size": 32,
        "num_layers": 7,
        "num_heads": 4,
        "embed_dim": 256,
        "mlp_ratio": 2.0,
        "tokenizer_layers": 1,
        "tokenizer_kernel_size": 3,
        "tokenizer_stride": 1,
        "dropout_rate": 0.0,
        "attention_dropout_rate": 0.1,
        "drop_path_rate": 0.1,
    },
}


@keras.saving.register_keras_serializable(package="drloc")
class CCTEncoderLayer(layers.Layer):
    """CCT's encoder layer: `x + Attention(LN(x))`, then `x = LN(x)`, then `x + MLP(x)`.

    Args:
        dim, num_heads, dropout_rate, attention_dropout_rate: as in
            `MultiHeadSelfAttention` (here without a q/k/v bias)
            (`dropout_rate` is also applied inside the MLP).
        mlp_ratio: float, hidden width of the MLP over `dim`.
        drop_path_rate: float, stochastic depth of both residual branches.
        layer_norm_epsilon: float.

    Input shape: `[B, N, dim]`. Output shape: the same.
    """

    def __init__(
        self,
        dim,
        num_heads,
        mlp_ratio=2.0,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        dtype = self.dtype_policy
        self.attention_norm = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype)
        self.attention = MultiHeadSelfAttention(
            dim, num_heads, qkv_bias=False, dropout_rate=dropout_rate,
            attention_dropout_rate=attention_dropout_rate, dtype=dtype,
        )
        self.mlp_norm = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype)
        self.mlp = mlp(dim, int(dim * mlp_ratio), dropout_rate, dtype)
        self.drop_path = DropPath(drop_path_rate, dtype=dtype)

    def call(self, x, training=None):
        attended = self.attention(self.attention_norm(x), training=training)
        x = self.mlp_norm(x + self.drop_path(attended, training=training))
        return x + self.drop_path(self.mlp(x, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


@keras.saving.register_keras_serializable(package="drloc")
class SequencePooling(layers.Layer):
    """CCT's SeqPool: `softmax over tokens of Linear(x)`, then the weighted sum of the tokens.

    Input shape: `[B, N, C]`. Output shape: `[B, C]`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention_pool = layers.Dense(
            1, kernel_initializer=initializers.trunc_normal(), dtype=self.dtype_policy
        )

    def call(self, tokens):
        weights = ops.softmax(self.attention_pool(tokens), axis=1)  # [B, N, 1]
        return ops.sum(weights * tokens, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="drloc")
class CCTBackbone(Backbone):
    """CCT with sequence pooling and a linear classifier, exposing its token grid.

    Args:
        image_size: int, or (height, width); the token grid must be at least 2x2.
        num_layers, num_heads, embed_dim: the transformer encoder.
        mlp_ratio: hidden width of each MLP over `embed_dim`.
        tokenizer_layers: how many (convolution, ReLU, max pool) steps; all but the last have
            `tokenizer_channels` filters, the last `embed_dim`.
        tokenizer_kernel_size, tokenizer_stride: the tokenizer convolutions (padding
            kernel_size // 2, no bias). Every max pool is 3x3 at stride 2, padding 1.
        tokenizer_channels: filters of the intermediate tokenizer convolutions.
        dropout_rate: dropout after the positional embedding, the attention and in the MLPs.
        attention_dropout_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of the last layer; it rises linearly from 0 at the
            first.
        num_classes: outputs of the classifier.
        layer_norm_epsilon: epsilon of every LayerNorm.
        name, dtype, trainable: as for `keras.Model`; every layer is built with the dtype
            policy `dtype` (default: Keras' global policy).

    Input: images `[B, height, width, 3]`. Output: `{"logits": [B, num_classes],
    "feature_maps": [[B, h, w, embed_dim]]}`, the encoder output on the tokenizer grid `h x w`.

    Example:
    >>> model = CCTBackbone(**CCT_CONFIGS["cct_7_3x1"], num_classes=10)
    >>> model.count_params()
    3760139
    """

    def __init__(
        self,
        image_size=32,
        *,
        num_layers=7,
        num_heads=4,
        embed_dim=256,
        mlp_ratio=2.0,
        tokenizer_layers=1,
        tokenizer_kernel_size=3,
        tokenizer_stride=1,
        tokenizer_channels=64,
        dropout_rate=0.0,
        attention_dropout_rate=0.1,
        drop_path_rate=0.1,
        num_classes=1000,
        layer_norm_epsilon=1e-5,
        name=None,
        dtype=None,
        trainable=True,
        **kwargs,
    ):
        # === Argument validation ===
        refuse_unknown_arguments(type(self), kwargs)
        for arg, value in [("num_layers", num_layers), ("num_heads", num_heads),
                           ("embed_dim", embed_dim), ("tokenizer_layers", tokenizer_layers),
                           ("tokenizer_kernel_size", tokenizer_kernel_size),
                           ("tokenizer_stride", tokenizer_stride),
                           ("tokenizer_channels", tokenizer_channels),
                           ("num_classes", num_classes)]:
            check_positive_int(arg, value)
        for arg, value in [("dropout_rate", dropout_rate), ("drop_path_rate", drop_path_rate),
                           ("attention_dropout_rate", attention_dropout_rate)]:
            check_rate(arg, value)
        if embed_dim % num_heads:
            raise ValueError(
                f"`embed_dim` must be divisible by `num_heads`. "
                f"Found embed_dim={embed_dim}, num_heads={num_heads}"
            )
        height, width = image_shape(image_size)
        kernel, stride = tokenizer_kernel_size, tokenizer_stride
        grid_height, grid_width = height, width
        for _ in range(tokenizer_layers):  # convolution, then 3x3 max pool at stride 2
            grid_height = conv_output_size(grid_height, kernel, stride, kernel // 2)
            grid_width = conv_output_size(grid_width, kernel, stride, kernel // 2)
            grid_height = conv_output_size(grid_height, 3, 2, 1)
            grid_width = conv_output_size(grid_width, 3, 2, 1)
        if min(grid_height, grid_width) < 2:
            raise ValueError(
                f"`image_size` is too small for {tokenizer_layers} tokenizer layer(s) at "
                f"tokenizer_stride={tokenizer_stride}: the token grid would be "
                f"{grid_height}x{grid_width}; DRLoc needs at least 2x2. "
                f"Found image_size={image_size!r}"
            )
        policy = dtype_policy(dtype)

        # === Functional Model ===
        images = keras.Input(shape=(height, width, 3), name="images", dtype=policy.compute_dtype)
        x = images
        for i in range(tokenizer_layers):
            filters = embed_dim if i == tokenizer_layers - 1 else tokenizer_channels
            x = layers.ZeroPadding2D(kernel // 2, name=f"tokenizer{i + 1}_padding",
                                     dtype=policy)(x)
            x = layers.Conv2D(
                filters,
                kernel,
                strides=stride,
                use_bias=False,
                activation="relu",
                kernel_initializer=initializers.kaiming_normal("fan_in"),
                name=f"tokenizer{i + 1}_conv",
                dtype=policy,
            )(x)
            # After the ReLU every value is >= 0, so zero padding acts as PyTorch's -inf
            # padding (Keras' "same" would pad only after, shifting the windows).
            x = layers.ZeroPadding2D(1, name=f"tokenizer{i + 1}_pool_padding", dtype=policy)(x)
            x = layers.MaxPooling2D(3, strides=2, name=f"tokenizer{i + 1}_pool", dtype=policy)(x)
        x = layers.Reshape((grid_height * grid_width, embed_dim), name="tokens", dtype=policy)(x)
        x = PositionEmbedding(stddev=0.2, name="positional_embedding", dtype=policy)(x)
        x = Dropout(dropout_rate, name="embedding_dropout", dtype=policy)(x)
        for i, rate in enumerate(np.linspace(0.0, drop_path_rate, num_layers).tolist()):
            x = CCTEncoderLayer(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                drop_path_rate=rate,
                layer_norm_epsilon=layer_norm_epsilon,
                name=f"encoder_layer{i + 1}",
                dtype=policy,
            )(x)
        grid = layers.Reshape((grid_height, grid_width, embed_dim), name="drloc_grid",
                              dtype=policy)(x)
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="final_norm",
                                      dtype=policy)(x)
        x = SequencePooling(name="sequence_pooling", dtype=policy)(x)
        logits = layers.Dense(
            num_classes, kernel_initializer=initializers.trunc_normal(), name="classifier",
            dtype=policy,
        )(x)
        outputs = {"logits": logits, "feature_maps": [grid]}
        super().__init__(images, outputs, name=name, dtype=policy, trainable=trainable)

        # === Config ===
        self.image_size = image_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.embed_dim = embed_dim
        self.mlp_ratio = mlp_ratio
        self.tokenizer_layers = tokenizer_layers
        self.tokenizer_kernel_size = tokenizer_kernel_size
        self.tokenizer_stride = tokenizer_stride
        self.tokenizer_channels = tokenizer_channels
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.num_classes = num_classes
        self.layer_norm_epsilon = layer_norm_epsilon

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "embed_dim": self.embed_dim,
            "mlp_ratio": self.mlp_ratio,
            "tokenizer_layers": self.tokenizer_layers,
            "tokenizer_kernel_size": self.tokenizer_kernel_size,
            "tokenizer_stride": self.tokenizer_stride,
            "tokenizer_channels": self.tokenizer_channels,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "num_classes": self.num_classes,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


def cct(name, **overrides):
    """The named configuration of `CCT_CONFIGS`, with any argument overridden."""
    return build_named(CCTBackbone, CCT_CONFIGS, name, overrides)


def cct_7_3x1(**overrides):
    """CCT-7/3x1 for 32x32 images (3.76M parameters with 10 classes; grid 16x16x256)."""
    return cct("cct_7_3x1", **overrides)
