"""What the backbones share: their base class, argument checks, dtype policies, sizes, and
the layers used by more than one family (dropout and stochastic depth, each drawing from its
own `streams.Stream`; the ViT-style transformer pieces, a learned position embedding, average
pooling that does not count its padding)."""

import difflib
import inspect
import numbers

import keras
from keras import layers, ops

from drloc_keras import initializers, streams

# --- argument checks ----------------------------------------------------------------------------


def check_positive_int(name, value):
    """Raises a ValueError naming `name` unless `value` is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Found {name}={value!r}")


def check_rate(name, value):
    """Raises a ValueError naming `name` unless `value` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Found {name}={value!r}")


def image_shape(image_size):
    """`(height, width)` of an `image_size` that is a positive int or a pair of them."""
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size, image_size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(
            "`image_size` must be a positive int or a (height, width) pair. "
            f"Found image_size={image_size!r}"
        )
    return size


def conv_output_size(size, kernel_size, stride, padding):
    """Output length of a convolution, pooling or unfold along one axis (PyTorch's formula)."""
    return (size + 2 * padding - kernel_size) // stride + 1


def valid_arguments(backbone_class):
    """Sorted names of the keyword arguments that `backbone_class(...)` accepts."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(backbone_class.__init__).parameters.values()
    return sorted(p.name for p in parameters if p.kind in kinds and p.name != "self")


def refuse_unknown_arguments(backbone_class, arguments, built=None):
    """Raises a ValueError naming the arguments `backbone_class` does not take, and the valid
    ones; `built` names the configuration (a size such as "swin_tiny_32") being built."""
    valid = valid_arguments(backbone_class)
    unknown = sorted(set(arguments) - set(valid))
    if not unknown:
        return
    hints = [
        f"{match[0]!r} for {name!r}"
        for name in unknown
        if (match := difflib.get_close_matches(name, valid, n=1))
    ]
    what = backbone_class.__name__ if built is None else f"{built} ({backbone_class.__name__})"
    raise ValueError(
        f"Unknown argument(s) {unknown} for {what}."
        + (f" Did you mean {', '.join(hints)}?" if hints else "")
        + f" Valid arguments: {valid}"
    )


def build_named(backbone_class, configs, name, overrides):
    """`backbone_class` with the named configuration of `configs`, any argument overridden;
    an argument `backbone_class` does not take is refused, with the valid ones."""
    if name not in configs:
        raise ValueError(f"`name` must be one of {sorted(configs)}. Found name={name!r}")
    refuse_unknown_arguments(backbone_class, overrides, built=name)
    return backbone_class(**{**configs[name], "name": name, **overrides})


# --- dtype policies and the base class ----------------------------------------------------------


def dtype_policy(dtype):
    """The `keras.DTypePolicy` of a `dtype` argument; None is Keras' global policy."""
    return keras.config.dtype_policy() if dtype is None else keras.dtype_policies.get(dtype)


def sequential(sublayers, name, dtype):
    """`keras.Sequential(sublayers)` with the dtype policy `dtype` (a Sequential takes no
    `dtype` argument, and would otherwise cast its inputs to the global policy)."""
    model = keras.Sequential(sublayers, name=name)
    model.dtype_policy = dtype_policy(dtype)
    return model


def mlp(dim, hidden, dropout_rate, dtype, name="mlp", initializer="trunc_normal"):
    """The transformer MLP: Dense `hidden` with exact GELU, dropout, Dense `dim`, dropout
    (timm's `Mlp`), each Dense initialised as `initializers.dense(initializer, ...)` says."""
    return sequential(
        [
            layers.Dense(hidden, activation="gelu", dtype=dtype,
                         **initializers.dense(initializer, dim, hidden)),
            Dropout(dropout_rate, dtype=dtype),
            layers.Dense(dim, dtype=dtype, **initializers.dense(initializer, hidden, dim)),
            Dropout(dropout_rate, dtype=dtype),
        ],
        name=name,
        dtype=dtype,
    )


class Backbone(keras.Model):
    """Base of the drloc backbones: a functional model `images -> {"logits", "feature_maps"}`.

    A subclass checks its arguments (`refuse_unknown_arguments` for its `**kwargs`), builds
    every layer with `dtype=dtype_policy(dtype)`, then calls
    `super().__init__(inputs, outputs, name=name, dtype=dtype, trainable=trainable)`; its
    `get_config` extends this one with its own arguments. (`keras.Model` would ignore `dtype`
    and unknown arguments of a functional model.)
    """

    def __init__(self, inputs, outputs, *, name=None, dtype=None, trainable=True):
        super().__init__(inputs=inputs, outputs=outputs, name=name, trainable=trainable)
        self.dtype_policy = dtype_policy(dtype)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# --- layers -------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="drloc")
class Dropout(layers.Layer):
    """Dropout (as `keras.layers.Dropout`) whose masks come from the layer's own
    `streams.Stream`: independent of every other generator's and of other epochs' masks once
    the run re-seeds the model (`streams.reseed`), on every backend. (Keras' Dropout holds a
    plain `SeedGenerator`, which on PyTorch repeats other streams shifted, and with no seed
    draws from the global torch generator instead.)

    Args:
        rate: float in [0, 1), the probability of dropping an element.
        seed: optional int for the layer's `streams.Stream`.

    Input and output: any shape. In training the kept elements are scaled by
    `1 / (1 - rate)`; at inference the layer is the identity.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        check_rate("rate", rate)
        self.rate = rate
        self.seed = seed
        if rate > 0:
            self.seed_generator = streams.Stream(seed)

    def noise_shape(self, x):
        return None

    def call(self, x, training=None):
        if not training or self.rate == 0:
            return x
        return keras.random.dropout(x, self.rate, noise_shape=self.noise_shape(x), seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="drloc")
class DropPath(Dropout):
    """Stochastic depth: drops the whole residual branch of a sample with probability `rate`.

    Args:
        rate: float in [0, 1), the probability of dropping a sample's branch.
        seed: optional int for the layer's `streams.Stream`.

    Input and output: `[B, ...]`. In training the kept samples are scaled by `1 / (1 - rate)`;
    at inference the layer is the identity.
    """

    def noise_shape(self, x):
        return (None,) + (1,) * (len(x.shape) - 1)


@keras.saving.register_keras_serializable(package="drloc")
class MultiHeadSelfAttention(layers.Layer):
    """Multi-head self-attention: q, k, v from one linear layer, then an output projection.

    Args:
        dim: int, channels in and out.
        num_heads: int dividing `dim`; the logits are scaled by `(dim / num_heads) ** -0.5`.
        qkv_bias: whether the query/key/value projection has a bias.
        dropout_rate: float, dropout after the output projection.
        attention_dropout_rate: float, dropout on the attention weights.
        initializer: how both Dense layers start, one of `initializers.DENSE_SCHEMES`.

    Input shape: `[B, N, dim]`. Output shape: the same.
    """

    def __init__(
        self,
        dim,
        num_heads,
        qkv_bias=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        initializer="trunc_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        initializers.check_scheme(initializer)
        self.dim = dim
        self.num_heads = num_heads
        self.qkv_bias = qkv_bias
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.initializer = initializer
        dtype = self.dtype_policy
        self.qkv = layers.Dense(
            3 * dim, use_bias=qkv_bias, name="qkv", dtype=dtype,
            **initializers.dense(initializer, dim, 3 * dim),
        )
        self.attention_dropout = Dropout(attention_dropout_rate, dtype=dtype)
        self.proj = layers.Dense(dim, name="proj", dtype=dtype,
                                 **initializers.dense(initializer, dim, dim))
        self.proj_dropout = Dropout(dropout_rate, dtype=dtype)

    def call(self, tokens, training=None):
        length, head_dim = tokens.shape[1], self.dim // self.num_heads
        qkv = ops.reshape(self.qkv(tokens), (-1, length, 3, self.num_heads, head_dim))
        q, k, v = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), 3)  # each [B, heads, N, d]
        logits = ops.matmul(q * head_dim**-0.5, ops.transpose(k, (0, 1, 3, 2)))
        weights = self.attention_dropout(ops.softmax(logits, axis=-1), training=training)
        x = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
        x = ops.reshape(x, (-1, length, self.dim))
        return self.proj_dropout(self.proj(x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "qkv_bias": self.qkv_bias,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "initializer": self.initializer,
        }


@keras.saving.register_keras_serializable(package="drloc")
class TransformerEncoderBlock(layers.Layer):
    """The pre-norm ViT block: `x + Attention(LN(x))`, then `x + MLP(LN(x))`.

    The MLP is Dense, exact GELU, dropout, Dense, dropout (timm's `Mlp`).

    Args:
        dim, num_heads, qkv_bias, dropout_rate, attention_dropout_rate: as in
            `MultiHeadSelfAttention` (`dropout_rate` is also applied inside the MLP).
        mlp_ratio: float, hidden width of the MLP over `dim`.
        drop_path_rate: float, stochastic depth of both residual branches.
        layer_norm_epsilon: float.
        initializer: how every Dense layer starts, one of `initializers.DENSE_SCHEMES`.

    Input shape: `[B, N, dim]`. Output shape: the same.
    """

    def __init__(
        self,
        dim,
        num_heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-6,
        initializer="trunc_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer = initializer
        dtype = self.dtype_policy
        self.norm1 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm1",
                                               dtype=dtype)
        self.attention = MultiHeadSelfAttention(
            dim, num_heads, qkv_bias, dropout_rate, attention_dropout_rate, initializer,
            name="attention", dtype=dtype,
        )
        self.norm2 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm2",
                                               dtype=dtype)
        self.mlp = mlp(dim, int(dim * mlp_ratio), dropout_rate, dtype, initializer=initializer)
        self.drop_path = DropPath(drop_path_rate, name="drop_path", dtype=dtype)

    def call(self, x, training=None):
        attended = self.attention(self.norm1(x), training=training)
        x = x + self.drop_path(attended, training=training)
        transformed = self.mlp(self.norm2(x), training=training)
        return x + self.drop_path(transformed, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer": self.initializer,
        }


@keras.saving.register_keras_serializable(package="drloc")
class ClassToken(layers.Layer):
    """Prepends a learned class token to the tokens.

    Args:
        stddev: float, the standard deviation of its normal initializer: 0.02 as timm's
            `trunc_normal_` (T2T-ViT), 1.0 as `torch.randn` (lucidrains' ViT).

    Input shape: `[B, N, C]`. Output shape: `[B, N + 1, C]`.
    """

    def __init__(self, stddev=0.02, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev

    def build(self, input_shape):
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=self.stddev),
            name="token",
        )

    def call(self, tokens):
        token = ops.cast(self.token, tokens.dtype)
        batch = ops.shape(tokens)[0]
        return ops.concatenate([ops.tile(token, (batch, 1, 1)), tokens], axis=1)

    def compute_output_shape(self, input_shape):
        batch, length, channels = input_shape
        return (batch, None if length is None else length + 1, channels)

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="drloc")
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding, one per token position, to the tokens.

    Args:
        stddev: float, the standard deviation of its normal initializer: timm's
            `trunc_normal_` of std 0.02 (T2T-ViT) or 0.2 (CCT), whose bounds -2 and 2 no draw
            reaches, or `torch.randn`'s 1.0 (lucidrains' ViT).

    Input shape: `[B, N, C]` with static N and C. Output shape: the same.
    """

    def __init__(self, stddev=0.02, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=(1,) + tuple(input_shape[1:]),
            initializer=keras.initializers.RandomNormal(stddev=self.stddev),
            name="embedding",
        )

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="drloc")
class SplitClassToken(layers.Layer):
    """Splits `[class token, patch tokens]` into the class token and the patch grid.

    Args:
        grid_size: (height, width) of the patch tokens, in row-major order.

    Input shape: `[B, 1 + height * width, C]`.
    Output: `(class_token [B, C], grid [B, height, width, C])`.
    """

    def __init__(self, grid_size, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = tuple(grid_size)

    def call(self, tokens):
        height, width = self.grid_size
        grid = ops.reshape(tokens[:, 1:], (-1, height, width, tokens.shape[-1]))
        return tokens[:, 0], grid

    def compute_output_shape(self, input_shape):
        batch, _, channels = input_shape
        return (batch, channels), (batch, *self.grid_size, channels)

    def get_config(self):
        return {**super().get_config(), "grid_size": list(self.grid_size)}


@keras.saving.register_keras_serializable(package="drloc")
class AveragePoolingExcludingPadding(layers.Layer):
    """2D average pooling with zero padding that does not count the padding in the average.

    This is PyTorch's `AvgPool2d(pool_size, strides, padding, count_include_pad=False)`:
    each output is the mean of the input cells its window covers (the DRLoc grid of CvT and
    T2T-ViT).

    Args:
        pool_size, strides, padding: ints, the same along height and width.

    Input shape: `[B, H, W, C]` with static H and W.
    Output shape: `[B, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, C]`.
    """

    def __init__(self, pool_size=3, strides=2, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.strides = strides
        self.padding = padding

    def call(self, inputs):
        p = self.padding
        pad = [[0, 0], [p, p], [p, p], [0, 0]]
        ones = ops.ones((1, inputs.shape[1], inputs.shape[2], 1), dtype=inputs.dtype)
        # Both are averages over the full window, so their ratio is sum / (covered cells).
        sums = ops.average_pool(ops.pad(inputs, pad), self.pool_size, self.strides)
        counts = ops.average_pool(ops.pad(ones, pad), self.pool_size, self.strides)
        return sums / counts

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        size = lambda n: conv_output_size(n, self.pool_size, self.strides, self.padding)
        return (batch, size(height), size(width), channels)

    def get_config(self):
        config = {"pool_size": self.pool_size, "strides": self.strides, "padding": self.padding}
        return {**super().get_config(), **config}
