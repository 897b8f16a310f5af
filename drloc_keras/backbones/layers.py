"""Blocks shared by several backbones: stochastic depth and the ViT-style transformer pieces."""

import keras
from keras import layers, ops


def build_named(backbone_class, configs, name, overrides):
    """`backbone_class` with the named configuration of `configs`, any argument overridden."""
    if name not in configs:
        raise ValueError(f"`name` must be one of {sorted(configs)}. Found name={name!r}")
    return backbone_class(**{**configs[name], "name": name, **overrides})


@keras.saving.register_keras_serializable(package="drloc")
class DropPath(layers.Layer):
    """Stochastic depth: drops the whole residual branch of a sample with probability `rate`.

    Args:
        rate: float in [0, 1), the probability of dropping a sample's branch.
        seed: optional int for the layer's `SeedGenerator`.

    Input and output: `[B, ...]`. In training the kept samples are scaled by `1 / (1 - rate)`;
    at inference the layer is the identity.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        if rate > 0:
            self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0:
            return x
        noise_shape = (None,) + (1,) * (len(x.shape) - 1)
        return keras.random.dropout(x, self.rate, noise_shape=noise_shape, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def _init():
    return keras.initializers.TruncatedNormal(stddev=0.02)


@keras.saving.register_keras_serializable(package="drloc")
class MultiHeadSelfAttention(layers.Layer):
    """Multi-head self-attention: q, k, v from one linear layer, then an output projection.

    Args:
        dim: int, channels in and out.
        num_heads: int dividing `dim`; the logits are scaled by `(dim / num_heads) ** -0.5`.
        qkv_bias: whether the query/key/value projection has a bias.
        dropout_rate: float, dropout after the output projection.
        attention_dropout_rate: float, dropout on the attention weights.

    Input shape: `[B, N, dim]`. Output shape: the same.
    """

    def __init__(
        self,
        dim,
        num_heads,
        qkv_bias=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.qkv_bias = qkv_bias
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.qkv = layers.Dense(3 * dim, use_bias=qkv_bias, kernel_initializer=_init(), name="qkv")
        self.attention_dropout = layers.Dropout(attention_dropout_rate)
        self.proj = layers.Dense(dim, kernel_initializer=_init(), name="proj")
        self.proj_dropout = layers.Dropout(dropout_rate)

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
        self.norm1 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm1")
        self.attention = MultiHeadSelfAttention(
            dim, num_heads, qkv_bias, dropout_rate, attention_dropout_rate, name="attention"
        )
        self.norm2 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm2")
        self.mlp = keras.Sequential(
            [
                layers.Dense(int(dim * mlp_ratio), activation="gelu", kernel_initializer=_init()),
                layers.Dropout(dropout_rate),
                layers.Dense(dim, kernel_initializer=_init()),
                layers.Dropout(dropout_rate),
            ],
            name="mlp",
        )
        self.drop_path = DropPath(drop_path_rate, name="drop_path")

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
        }


@keras.saving.register_keras_serializable(package="drloc")
class ClassToken(layers.Layer):
    """Prepends a learned class token (truncated normal, std 0.02) to the tokens.

    Input shape: `[B, N, C]`. Output shape: `[B, N + 1, C]`.
    """

    def build(self, input_shape):
        self.token = self.add_weight(
            shape=(1, 1, input_shape[-1]), initializer=_init(), name="token"
        )

    def call(self, tokens):
        token = ops.cast(self.token, tokens.dtype)
        batch = ops.shape(tokens)[0]
        return ops.concatenate([ops.tile(token, (batch, 1, 1)), tokens], axis=1)

    def compute_output_shape(self, input_shape):
        batch, length, channels = input_shape
        return (batch, None if length is None else length + 1, channels)


@keras.saving.register_keras_serializable(package="drloc")
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding (truncated normal, std 0.02) to every token.

    Input shape: `[B, N, C]` with static N and C. Output shape: the same.
    """

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=(1,) + tuple(input_shape[1:]), initializer=_init(), name="embedding"
        )

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


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
