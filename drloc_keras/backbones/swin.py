"""Swin Transformer backbone (Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer
using Shifted Windows").

Patch embedding, then stages of blocks that attend inside non-overlapping windows, every
second block over windows shifted by half a window, with patch merging between stages.
`SwinBackbone` returns the logits and the output of every stage (spec section 8: the last
stage, 7x7x768 for Swin-T at 224, is the default DRLoc grid; all four give multi-scale DRLoc).

Facts follow the official code (microsoft/Swin-Transformer), which the DRLoc authors reused:
LayerNorm epsilon 1e-5, exact GELU, Dense and bias-table init timm's truncated normal std 0.02
(zero biases), the patch embedding PyTorch's default convolution init (uniform, bound
1/sqrt(3 * patch_size**2), weight and bias),
the masked logits set to -100, the window shrunk to the stage size (and no shift) once a
stage is no larger than a window. One difference: a stage's feature map here is taken
before its patch merging (56, 28, 14, 7 at 224), where the authors' multi-scale code took it
after (28, 14, 7, 7); the last map is the same in both.
"""

import keras
import numpy as np
from keras import layers, ops

from drloc_keras import initializers
from drloc_keras.backbones.layers import (
    Backbone,
    DropPath,
    Dropout,
    build_named,
    check_positive_int,
    check_rate,
    dtype_policy,
    image_shape,
    refuse_unknown_arguments,
)

# Named sizes. `swin_tiny` is Swin-T. `swin_tiny_32` is our choice for 32x32 images (the
# authors resize CIFAR to 224 instead): the same widths and depths, patch 2 so the stages
# are 16, 8, 4 and 2 wide, and window 4: stages 1 and 2 have 4x4 and 2x2 windows, shifted
# by 2 in every second block; stage 3 (4x4) is a single window (so no shift) and stage 4
# (2x2) shrinks the window to 2. Patch 2 keeps the last grid 2x2 (patch 4 would leave 1x1).
SWIN_CONFIGS = {
    "swin_tiny": {
        "image_size": 224,
        "patch_size": 4,
        "embed_dim": 96,
        "depths": (2, 2, 6, 2),
        "num_heads": (3, 6, 12, 24),
        "window_size": 7,
        "drop_path_rate": 0.2,
    },
    "swin_tiny_32": {
        "image_size": 32,
        "patch_size": 2,
        "embed_dim": 96,
        "depths": (2, 2, 6, 2),
        "num_heads": (3, 6, 12, 24),
        "window_size": 4,
        "drop_path_rate": 0.2,
    },
}

MASKED = -100.0  # added to the logits of pairs from different regions, as in the official code


# --- windows: NumPy constants and the tensor reshapes ------------------------------------------


def relative_position_index(window_size):
    """int32 `[N, N]`, `N = window_size**2`: the bias-table row of each (query, key) pair.

    The row encodes the offset (dy, dx) of the key from the query, each shifted to be >= 0.
    """
    rows, cols = np.divmod(np.arange(window_size * window_size), window_size)
    dy = rows[:, None] - rows[None, :] + window_size - 1
    dx = cols[:, None] - cols[None, :] + window_size - 1
    return (dy * (2 * window_size - 1) + dx).astype("int32")


def shifted_window_mask(height, width, window_size, shift_size):
    """float32 `[num_windows, N, N]`: 0 where two tokens share a region, `MASKED` elsewhere.

    After the cyclic shift the last window row and column hold tokens rolled in from the
    opposite border; they are labelled as separate regions so that they do not attend to
    tokens they were not next to in the image.
    """
    def regions(size):  # the official slices: untouched windows, last window, rolled-in tokens
        edges = [0, size - window_size, size - shift_size, size]
        return [slice(start, stop) for start, stop in zip(edges[:-1], edges[1:])]

    labels = np.zeros((height, width), dtype="int32")
    for i, rows in enumerate(regions(height)):
        for j, cols in enumerate(regions(width)):
            labels[rows, cols] = 3 * i + j
    windows = labels.reshape(height // window_size, window_size, width // window_size, window_size)
    windows = windows.transpose(0, 2, 1, 3).reshape(-1, window_size * window_size)
    different = windows[:, :, None] != windows[:, None, :]
    return np.where(different, MASKED, 0.0).astype("float32")


def window_partition(x, window_size):
    """`[B, H, W, C]` -> `[B * num_windows, window_size**2, C]`, windows in row-major order."""
    _, height, width, channels = x.shape
    x = ops.reshape(
        x, (-1, height // window_size, window_size, width // window_size, window_size, channels)
    )
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, window_size * window_size, channels))


def window_reverse(windows, window_size, height, width):
    """Inverse of `window_partition`: `[B * num_windows, window_size**2, C]` -> `[B, H, W, C]`."""
    rows, cols, channels = height // window_size, width // window_size, windows.shape[-1]
    x = ops.reshape(windows, (-1, rows, cols, window_size, window_size, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height, width, channels))


def cyclic_shift(x, shift_size):
    """Roll `[B, H, W, C]` up and left by `shift_size` (the shifted-window step)."""
    return ops.roll(x, shift=(-shift_size, -shift_size), axis=(1, 2))


def reverse_cyclic_shift(x, shift_size):
    """Undo `cyclic_shift` exactly."""
    return ops.roll(x, shift=(shift_size, shift_size), axis=(1, 2))


# --- layers -------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="drloc")
class WindowAttention(layers.Layer):
    """Multi-head self-attention inside each window, with a relative position bias (W-MSA).

    Args:
        dim: channels C.
        num_heads: attention heads; must divide `dim`.
        window_size: side of the square window; N = window_size**2 tokens per window.
        qkv_bias: whether the query/key/value projection has a bias.
        attention_dropout_rate: dropout on the attention weights.
        dropout_rate: dropout after the output projection.

    Call arguments: `windows` `[B * num_windows, N, C]`; `attention_mask` `[num_windows, N, N]`
    added to the logits (or None); `training`.
    Returns: the output `[B * num_windows, N, C]` and the attention weights
    `[B * num_windows, num_heads, N, N]`.
    """

    def __init__(
        self,
        dim,
        num_heads,
        window_size,
        qkv_bias=True,
        attention_dropout_rate=0.0,
        dropout_rate=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv_bias = qkv_bias
        self.attention_dropout_rate = attention_dropout_rate
        self.dropout_rate = dropout_rate
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_index = relative_position_index(window_size)  # a constant
        dtype = self.dtype_policy
        self.qkv = layers.Dense(
            3 * dim, use_bias=qkv_bias, kernel_initializer=initializers.trunc_normal(), name="qkv",
            dtype=dtype,
        )
        self.proj = layers.Dense(dim, kernel_initializer=initializers.trunc_normal(), name="proj",
                                 dtype=dtype)
        self.attention_dropout = Dropout(attention_dropout_rate, dtype=dtype)
        self.proj_dropout = Dropout(dropout_rate, dtype=dtype)

    def build(self, input_shape):
        self.relative_position_bias_table = self.add_weight(
            shape=((2 * self.window_size - 1) ** 2, self.num_heads),
            initializer=initializers.trunc_normal(),
            name="relative_position_bias_table",
        )
        self.qkv.build(input_shape)
        self.proj.build(input_shape)

    def relative_position_bias(self):
        """`[num_heads, N, N]`: the table row of each pair's offset, one bias per head."""
        n = self.window_size * self.window_size
        index = ops.convert_to_tensor(self.relative_position_index.reshape(-1))
        bias = ops.take(self.relative_position_bias_table, index, axis=0)
        return ops.transpose(ops.reshape(bias, (n, n, self.num_heads)), (2, 0, 1))

    def call(self, windows, attention_mask=None, training=None):
        n, head_dim = windows.shape[1], self.dim // self.num_heads
        qkv = ops.reshape(self.qkv(windows), (-1, n, 3, self.num_heads, head_dim))
        q, k, v = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), 3, axis=0)  # [B', heads, N, d]
        logits = ops.matmul(q * self.scale, ops.transpose(k, (0, 1, 3, 2)))
        logits = logits + self.relative_position_bias()[None]
        if attention_mask is not None:
            num_windows = attention_mask.shape[0]
            mask = ops.cast(attention_mask, logits.dtype)[None, :, None]
            logits = ops.reshape(logits, (-1, num_windows, self.num_heads, n, n)) + mask
            logits = ops.reshape(logits, (-1, self.num_heads, n, n))
        weights = ops.softmax(logits, axis=-1)
        x = ops.matmul(self.attention_dropout(weights, training=training), v)
        x = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, n, self.dim))
        return self.proj_dropout(self.proj(x), training=training), weights

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "qkv_bias": self.qkv_bias,
            "attention_dropout_rate": self.attention_dropout_rate,
            "dropout_rate": self.dropout_rate,
        }


@keras.saving.register_keras_serializable(package="drloc")
class SwinTransformerBlock(layers.Layer):
    """One Swin block: (shifted) window attention and an MLP, each pre-norm and residual.

    Args:
        dim: channels C.
        num_heads: attention heads.
        window_size: side of the square window; must divide H and W of the input.
        shift_size: 0 for regular windows, else the cyclic shift (usually window_size // 2).
        mlp_ratio: hidden width of the MLP over `dim`.
        qkv_bias, attention_dropout_rate, dropout_rate: as in `WindowAttention`.
        drop_path_rate: stochastic depth rate of both residual branches.
        layer_norm_epsilon: epsilon of both LayerNorms.

    Input and output: `[B, H, W, C]`. `call(x, return_attention_scores=True)` also returns the
    attention weights `[B, num_windows, num_heads, N, N]` (windows of the shifted image).
    """

    def __init__(
        self,
        dim,
        num_heads,
        window_size,
        shift_size=0,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 <= shift_size < window_size:
            raise ValueError(
                f"`shift_size` must be in [0, window_size={window_size}). "
                f"Found shift_size={shift_size}"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.layer_norm_epsilon = layer_norm_epsilon

        dtype = self.dtype_policy
        self.norm1 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm1",
                                               dtype=dtype)
        self.attention = WindowAttention(
            dim, num_heads, window_size, qkv_bias, attention_dropout_rate, dropout_rate,
            name="attention", dtype=dtype,
        )
        self.drop_path = DropPath(drop_path_rate, name="drop_path", dtype=dtype)
        self.norm2 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm2",
                                               dtype=dtype)
        self.fc1 = layers.Dense(int(dim * mlp_ratio), name="fc1", dtype=dtype,
                                kernel_initializer=initializers.trunc_normal())
        # exact (erf) GELU, as torch.nn.GELU
        self.gelu = layers.Activation("gelu", dtype=dtype)
        self.fc2 = layers.Dense(dim, kernel_initializer=initializers.trunc_normal(), name="fc2",
                                dtype=dtype)
        self.mlp_dropout = Dropout(dropout_rate, dtype=dtype)

    def build(self, input_shape):
        _, height, width, channels = input_shape
        if height % self.window_size or width % self.window_size:
            raise ValueError(
                f"`window_size` must divide the block's input height and width. Found "
                f"window_size={self.window_size}, height={height}, width={width}"
            )
        self.height, self.width = height, width
        self.attention_mask = None  # a constant, not a weight
        if self.shift_size > 0:
            self.attention_mask = shifted_window_mask(
                height, width, self.window_size, self.shift_size
            )
        n = self.window_size * self.window_size
        self.norm1.build(input_shape)
        self.attention.build((None, n, channels))
        self.norm2.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (int(self.dim * self.mlp_ratio),))

    def call(self, x, training=None, return_attention_scores=False):
        shortcut = x
        x = self.norm1(x)
        if self.shift_size > 0:
            x = cyclic_shift(x, self.shift_size)
        mask = None if self.attention_mask is None else ops.convert_to_tensor(self.attention_mask)
        windows, weights = self.attention(
            window_partition(x, self.window_size), attention_mask=mask, training=training
        )
        x = window_reverse(windows, self.window_size, self.height, self.width)
        if self.shift_size > 0:
            x = reverse_cyclic_shift(x, self.shift_size)
        x = shortcut + self.drop_path(x, training=training)

        y = self.gelu(self.fc1(self.norm2(x)))
        y = self.mlp_dropout(self.fc2(self.mlp_dropout(y, training=training)), training=training)
        x = x + self.drop_path(y, training=training)
        if not return_attention_scores:
            return x
        num_windows = (self.height // self.window_size) * (self.width // self.window_size)
        n = self.window_size * self.window_size
        return x, ops.reshape(weights, (-1, num_windows, self.num_heads, n, n))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "shift_size": self.shift_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


@keras.saving.register_keras_serializable(package="drloc")
class PatchMerging(layers.Layer):
    """Halves the resolution and doubles the width: concat each 2x2 patch, LayerNorm, Dense.

    The four neighbours are concatenated in the official order (top-left, bottom-left,
    top-right, bottom-right), so official weights would load unchanged.

    Args:
        dim: input channels C (output 2C).
        layer_norm_epsilon: epsilon of the LayerNorm.

    Input: `[B, H, W, C]` with H, W even. Output: `[B, H/2, W/2, 2C]`.
    """

    def __init__(self, dim, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.layer_norm_epsilon = layer_norm_epsilon
        self.norm = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm",
                                              dtype=self.dtype_policy)
        self.reduction = layers.Dense(
            2 * dim, use_bias=False, kernel_initializer=initializers.trunc_normal(),
            name="reduction", dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        self.norm.build((None, None, None, 4 * self.dim))
        self.reduction.build((None, None, None, 4 * self.dim))

    def call(self, x):
        _, height, width, channels = x.shape
        x = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, channels))  # [B, i, row, j, col, C]
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5))  # column-major over the 2x2 patch
        x = ops.reshape(x, (-1, height // 2, width // 2, 4 * channels))
        return self.reduction(self.norm(x))

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (batch, height // 2, width // 2, 2 * self.dim)

    def get_config(self):
        config = {"dim": self.dim, "layer_norm_epsilon": self.layer_norm_epsilon}
        return {**super().get_config(), **config}


# --- the backbone -------------------------------------------------------------------------------


def stage_windows(stage_size, window_size):
    """(window, shift) of a stage's blocks: the window shrinks to a stage no larger than it."""
    if min(stage_size) <= window_size:
        return min(stage_size), 0
    return window_size, window_size // 2


def _stage_sizes(image_size, patch_size, depths, num_heads, embed_dim, window_size):
    """Checks the sizes against each other; returns each stage's (height, width)."""
    size = image_shape(image_size)
    if len(depths) < 1 or len(depths) != len(num_heads):
        raise ValueError(
            "`depths` and `num_heads` must be non-empty and have one entry per stage. "
            f"Found depths={depths!r}, num_heads={num_heads!r}"
        )
    for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
        check_positive_int(f"depths[{stage}]", depth)
        check_positive_int(f"num_heads[{stage}]", heads)
        if (embed_dim * 2**stage) % heads:
            raise ValueError(
                "`num_heads` must divide each stage's width embed_dim * 2**stage. Found "
                f"num_heads[{stage}]={heads} for width {embed_dim * 2**stage}"
            )
    reduction = patch_size * 2 ** (len(depths) - 1)
    if size[0] % reduction or size[1] % reduction or min(size) < 2 * reduction:
        raise ValueError(
            f"`image_size` must be a multiple of patch_size * 2**(num_stages - 1) = {reduction} "
            f"and at least {2 * reduction}, so that the last feature map is at least 2x2. "
            f"Found image_size={image_size!r} (patch_size={patch_size}, {len(depths)} stages)"
        )
    stage_sizes = [
        (size[0] // patch_size // 2**s, size[1] // patch_size // 2**s) for s in range(len(depths))
    ]
    for height, width in stage_sizes:
        window, _ = stage_windows((height, width), window_size)
        if height % window or width % window:
            raise ValueError(
                f"`window_size` must divide every stage's height and width. Found "
                f"window_size={window_size} and a {height}x{width} stage "
                f"(image_size={image_size!r})"
            )
    return stage_sizes


@keras.saving.register_keras_serializable(package="drloc")
class SwinBackbone(Backbone):
    """Swin Transformer with a linear classifier, exposing every stage's feature map.

    Args:
        image_size: int, or (height, width); each must be divisible by
            `patch_size * 2**(len(depths) - 1)` and leave the last stage at least 2x2.
        patch_size: side of the patches embedded by a strided convolution.
        embed_dim: channels of the first stage; each later stage doubles it.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: side of the attention windows.
        mlp_ratio: hidden width of each MLP over its input width.
        qkv_bias: whether the query/key/value projections have a bias.
        dropout_rate: dropout after the patch embedding, the attention and in the MLPs.
        attention_dropout_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of the last block; it rises linearly from 0 at the first.
        num_classes: outputs of the classifier.
        layer_norm_epsilon: epsilon of every LayerNorm.
        name, dtype, trainable: as for `keras.Model`; every layer is built with the dtype
            policy `dtype` (default: Keras' global policy).

    Input: images `[B, height, width, 3]`. Output: `{"logits": [B, num_classes],
    "feature_maps": [[B, h_s, w_s, embed_dim * 2**s] for each stage s]}`, the maps taken
    before the final LayerNorm, `h_s = height / patch_size / 2**s`.

    Example:
    >>> model = SwinBackbone(**SWIN_CONFIGS["swin_tiny"], num_classes=100)
    >>> [f.shape for f in model.output["feature_maps"]][-1]
    (None, 7, 7, 768)
    """

    def __init__(
        self,
        image_size=224,
        *,
        patch_size=4,
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.2,
        num_classes=1000,
        layer_norm_epsilon=1e-5,
        name=None,
        dtype=None,
        trainable=True,
        **kwargs,
    ):
        # === Argument validation ===
        refuse_unknown_arguments(type(self), kwargs)
        for arg, value in [("patch_size", patch_size), ("embed_dim", embed_dim),
                           ("window_size", window_size), ("num_classes", num_classes)]:
            check_positive_int(arg, value)
        for arg, value in [("dropout_rate", dropout_rate), ("drop_path_rate", drop_path_rate),
                           ("attention_dropout_rate", attention_dropout_rate)]:
            check_rate(arg, value)
        stage_sizes = _stage_sizes(
            image_size, patch_size, depths, num_heads, embed_dim, window_size
        )
        policy = dtype_policy(dtype)

        # === Functional Model ===
        height, width = stage_sizes[0][0] * patch_size, stage_sizes[0][1] * patch_size
        images = keras.Input(shape=(height, width, 3), name="images", dtype=policy.compute_dtype)
        patch_fan_in = 3 * patch_size**2  # the official PatchEmbed keeps PyTorch's Conv2d init
        x = layers.Conv2D(
            embed_dim, patch_size, strides=patch_size, name="patch_embedding", dtype=policy,
            kernel_initializer=initializers.torch_uniform(patch_fan_in),
            bias_initializer=initializers.torch_uniform(patch_fan_in),
        )(images)
        x = layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="patch_embedding_norm", dtype=policy
        )(x)
        x = Dropout(dropout_rate, name="patch_embedding_dropout", dtype=policy)(x)
        drop_path_rates = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
        feature_maps = []
        for stage, (depth, heads, stage_size) in enumerate(zip(depths, num_heads, stage_sizes)):
            dim = embed_dim * 2**stage
            if stage > 0:
                x = PatchMerging(
                    dim // 2, layer_norm_epsilon, name=f"stage{stage + 1}_patch_merging",
                    dtype=policy,
                )(x)
            window, shift = stage_windows(stage_size, window_size)
            for block in range(depth):
                x = SwinTransformerBlock(
                    dim,
                    heads,
                    window,
                    shift_size=0 if block % 2 == 0 else shift,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    dropout_rate=dropout_rate,
                    attention_dropout_rate=attention_dropout_rate,
                    drop_path_rate=drop_path_rates[sum(depths[:stage]) + block],
                    layer_norm_epsilon=layer_norm_epsilon,
                    name=f"stage{stage + 1}_block{block + 1}",
                    dtype=policy,
                )(x)
            feature_maps.append(x)
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="final_norm",
                                      dtype=policy)(x)
        x = layers.GlobalAveragePooling2D(name="average_pool", dtype=policy)(x)
        logits = layers.Dense(
            num_classes, kernel_initializer=initializers.trunc_normal(), name="classifier",
            dtype=policy,
        )(x)
        outputs = {"logits": logits, "feature_maps": feature_maps}
        super().__init__(images, outputs, name=name, dtype=policy, trainable=trainable)

        # === Config ===
        self.image_size = image_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depths = list(depths)
        self.num_heads = list(num_heads)
        self.window_size = window_size
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.num_classes = num_classes
        self.layer_norm_epsilon = layer_norm_epsilon

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depths": self.depths,
            "num_heads": self.num_heads,
            "window_size": self.window_size,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "num_classes": self.num_classes,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


def swin(name, **overrides):
    """The named configuration of `SWIN_CONFIGS`, with any argument overridden."""
    return build_named(SwinBackbone, SWIN_CONFIGS, name, overrides)


def swin_tiny(**overrides):
    """Swin-T at 224x224 (28.3M parameters with 1000 classes)."""
    return swin("swin_tiny", **overrides)


def swin_tiny_32(**overrides):
    """Swin-T widths and depths for 32x32 images: patch 2, window 4, stages 16, 8, 4, 2."""
    return swin("swin_tiny_32", **overrides)
