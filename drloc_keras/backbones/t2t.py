"""T2T-ViT (Yuan et al., ICCV 2021, "Tokens-to-Token ViT: Training Vision Transformers from
Scratch on ImageNet"), as a DRLoc backbone.

The tokens-to-token (T2T) module: a soft split (PyTorch's `nn.Unfold`: overlapping patches,
each flattened channel-major) turns the image into tokens; then, twice, a small transformer
over the tokens, re-structurization of its output into an image, and another soft split; a
linear layer projects the last tokens to the backbone width. Then a ViT: class token,
sinusoidal position embedding, pre-norm blocks, final LayerNorm, a linear classifier on the
class token. T2T-ViT-14: soft splits 7/4, 3/2, 3/2 (kernel/stride), token width 64, 14 blocks
of width 384, 6 heads, MLP ratio 3.

Facts follow the official code (yitu-opensource/T2T-ViT), reused by the DRLoc authors
(yhlleo/VTs-Drloc `models/t2t.py`): bias-free query/key/value in every attention, LayerNorm
epsilon 1e-5, exact GELU, a fixed sinusoidal position embedding (here a constant, not a
weight); initialised as theirs: Dense kernels and the class token timm's truncated normal of
std 0.02 (bounds +-2: a plain normal, see `drloc_keras.initializers`), zero biases.

The T2T transformer, `t2t_attention`:
- "transformer" (the default): the official `Token_transformer`, one head, MLP ratio 1. Its
  attention maps the input width (C * k * k) to the token width, so its residual is the
  values, not the input: `y = v + Proj(Attention(LN(x)))`, then `y + MLP(LN(y))`. The logits
  are scaled by the input width ** -0.5 (official code; not the token width).
- "performer": the official `Token_performer`, the one in the published T2T-ViT-14 weights and
  in the DRLoc authors' runs: softmax attention approximated by `m = token_dim / 2` positive
  orthogonal random features (a fixed weight). Its dropout follows `dropout_rate` here; the
  official code fixes it at 0.1.
The published 21.5M parameters of T2T-ViT-14 count the Performer T2T module. The plain one is
smaller, not larger (no key/query/value bias, no random features): with 1000 classes T2T-ViT-14
has 21,465,422 parameters with "transformer" and 21,469,902 with "performer" (4,096 of them
the non-trainable random features); the official model's 21,545,550 also counts its fixed
position embedding (75,648), here a constant. All are within 0.2% of 21.5M.

The DRLoc grid follows the authors' code: the patch tokens after the final LayerNorm, the
class token dropped, reshaped to the token grid and, with `grid_pooling=True` (the default),
average-pooled 3x3 at stride 2, padding 1 not counted: 14x14 -> 7x7 at 224 (spec section
10, "CvT/T2T grid"). `grid_pooling=False` gives the 14x14 grid itself (section 8's wording).

Example:
>>> model = t2t_vit_14_32(num_classes=10)
>>> [f.shape for f in model.output["feature_maps"]]
[(None, 4, 4, 384)]
"""

import keras
import numpy as np
from keras import layers, ops

from drloc_keras import initializers
from drloc_keras.backbones.layers import (
    AveragePoolingExcludingPadding,
    Backbone,
    ClassToken,
    Dropout,
    PositionEmbedding,
    SplitClassToken,
    TransformerEncoderBlock,
    build_named,
    check_positive_int,
    check_rate,
    conv_output_size,
    dtype_policy,
    image_shape,
    mlp,
    refuse_unknown_arguments,
    sequential,
)

# Named sizes. `t2t_vit_14` is T2T-ViT-14 with the plain-transformer T2T module (pass
# t2t_attention="performer" for the published one). `t2t_vit_14_32` is our choice for 32x32
# images (the authors resize CIFAR to 224 instead): soft splits with kernel 3 at strides 1, 2, 2
# (padding 1), so the token grids are 32x32, 16x16 and 8x8 and the DRLoc grid, pooled, is 4x4;
# everything else is T2T-ViT-14.
T2T_CONFIGS = {
    "t2t_vit_14": {
        "image_size": 224,
        "kernel_sizes": (7, 3, 3),
        "strides": (4, 2, 2),
        "paddings": (2, 1, 1),
        "token_dim": 64,
        "embed_dim": 384,
        "depth": 14,
        "num_heads": 6,
        "mlp_ratio": 3.0,
    },
    "t2t_vit_14_32": {
        "image_size": 32,
        "kernel_sizes": (3, 3, 3),
        "strides": (1, 2, 2),
        "paddings": (1, 1, 1),
        "token_dim": 64,
        "embed_dim": 384,
        "depth": 14,
        "num_heads": 6,
        "mlp_ratio": 3.0,
    },
}

T2T_ATTENTIONS = ("transformer", "performer")
POSITION_EMBEDDINGS = ("sinusoidal", "learned")


def unfold(images, kernel_size, stride, padding):
    """PyTorch's `nn.Unfold`, channels last: `[B, H, W, C]` -> `[B, h, w, C * k * k]`.

    Each output cell holds the zero-padded `k x k` patch at (i * stride, j * stride),
    flattened channel-major as `nn.Unfold` does: element `c * k * k + di * k + dj` is
    channel c at patch row di, column dj. (`nn.Unfold(x).transpose(1, 2)` is this output
    with (h, w) flattened row-major.)
    """
    _, height, width, channels = images.shape
    out_height = conv_output_size(height, kernel_size, stride, padding)
    out_width = conv_output_size(width, kernel_size, stride, padding)
    pad = [[0, 0], [padding, padding], [padding, padding], [0, 0]]
    x = ops.pad(images, pad)
    rows, cols = stride * (out_height - 1) + 1, stride * (out_width - 1) + 1
    patches = [
        x[:, di : di + rows : stride, dj : dj + cols : stride, :]  # [B, h, w, C]
        for di in range(kernel_size)
        for dj in range(kernel_size)
    ]
    patches = ops.stack(patches, axis=-1)  # [B, h, w, C, k * k]: channel-major once flattened
    return ops.reshape(patches, (-1, out_height, out_width, channels * kernel_size**2))


def sinusoid_table(length, dim):
    """float32 `[length, dim]`: the official T2T-ViT (and "Attention is all you need")
    encoding: position / 10000**(2 * (j // 2) / dim), sine in even columns, cosine in odd."""
    positions = np.arange(length, dtype="float64")[:, None]
    angles = positions / np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None, :]
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return angles.astype("float32")


@keras.saving.register_keras_serializable(package="drloc")
class SoftSplit(layers.Layer):
    """The T2T soft split: `unfold` as a layer.

    Args:
        kernel_size, stride, padding: ints, the same along height and width.

    Input shape: `[B, H, W, C]` with static H, W, C.
    Output shape: `[B, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, C * k * k]`.
    """

    def __init__(self, kernel_size, stride, padding, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding

    def call(self, images):
        return unfold(images, self.kernel_size, self.stride, self.padding)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        size = lambda n: conv_output_size(n, self.kernel_size, self.stride, self.padding)
        return (batch, size(height), size(width), channels * self.kernel_size**2)

    def get_config(self):
        config = {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="drloc")
class TokenTransformer(layers.Layer):
    """The official `Token_transformer`: a transformer block that changes the token width.

    `y = v + Dropout(Proj(Attention(LN(x))))`, then `y + MLP(LN(y))`, where the values `v`
    (width `dim`) stand in for the residual since the input is wider.

    Args:
        dim: int, output width (the T2T token width).
        num_heads: int dividing `dim` (1 in T2T-ViT).
        mlp_ratio: float, hidden width of the MLP over `dim` (1 in T2T-ViT).
        dropout_rate: float, dropout after the projection and in the MLP.
        attention_dropout_rate: float, dropout on the attention weights.
        layer_norm_epsilon: float.

    Input shape: `[B, N, C_in]`. Output shape: `[B, N, dim]`.
    """

    def __init__(
        self,
        dim,
        num_heads=1,
        mlp_ratio=1.0,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        dtype = self.dtype_policy
        self.norm1 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm1",
                                               dtype=dtype)
        self.qkv = layers.Dense(3 * dim, use_bias=False, name="qkv", dtype=dtype,
                                kernel_initializer=initializers.trunc_normal())
        self.attention_dropout = Dropout(attention_dropout_rate, dtype=dtype)
        self.proj = layers.Dense(dim, kernel_initializer=initializers.trunc_normal(), name="proj",
                                 dtype=dtype)
        self.proj_dropout = Dropout(dropout_rate, dtype=dtype)
        self.norm2 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm2",
                                               dtype=dtype)
        self.mlp = mlp(dim, int(dim * mlp_ratio), dropout_rate, dtype)

    def call(self, tokens, training=None):
        length, head_dim = tokens.shape[1], self.dim // self.num_heads
        scale = (tokens.shape[-1] // self.num_heads) ** -0.5  # the input width, as official
        qkv = self.qkv(self.norm1(tokens))
        values = qkv[..., 2 * self.dim :]  # [B, N, dim]: v with its heads merged
        qkv = ops.reshape(qkv, (-1, length, 3, self.num_heads, head_dim))
        q, k, v = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), 3)  # each [B, heads, N, d]
        logits = ops.matmul(q * scale, ops.transpose(k, (0, 1, 3, 2)))
        weights = self.attention_dropout(ops.softmax(logits, axis=-1), training=training)
        x = ops.reshape(ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3)), (-1, length, self.dim))
        x = values + self.proj_dropout(self.proj(x), training=training)
        return x + self.mlp(self.norm2(x), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dim)

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


@keras.saving.register_keras_serializable(package="drloc")
class TokenPerformer(layers.Layer):
    """The official `Token_performer`: `TokenTransformer` with Performer attention.

    softmax(q k^T) v is approximated with positive random features
    `phi(x) = exp(w x - |x|^2 / 2) / sqrt(m)` for `m = dim * kernel_ratio` fixed orthogonal
    rows `w` of norm sqrt(m): `y = phi(q) (phi(k)^T v) / (phi(q) sum_t phi(k_t) + 1e-8)`,
    then `y = v + Dropout(Proj(y))` and `y + MLP(LN(y))` (a one-head block, no scaling of q
    or k, the key/query/value layer with a bias and its output split in the order k, q, v, as
    in the official code). The random features are computed in float32 (float64 under a
    float64 policy): their exponentials overflow half precision.

    Args:
        dim: int, output width (the T2T token width).
        kernel_ratio: float, random features over `dim` (0.5 in T2T-ViT).
        dropout_rate: float, dropout after the projection and at the end of the MLP.
        layer_norm_epsilon: float.
        seed: optional int for the random features' initializer.

    Input shape: `[B, N, C_in]`. Output shape: `[B, N, dim]`.
    """

    def __init__(self, dim, kernel_ratio=0.5, dropout_rate=0.0, layer_norm_epsilon=1e-5,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.kernel_ratio = kernel_ratio
        self.dropout_rate = dropout_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.seed = seed
        self.num_features = int(dim * kernel_ratio)
        dtype = self.dtype_policy
        self.norm1 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm1",
                                               dtype=dtype)
        self.kqv = layers.Dense(3 * dim, kernel_initializer=initializers.trunc_normal(), name="kqv",
                                dtype=dtype)
        self.proj = layers.Dense(dim, kernel_initializer=initializers.trunc_normal(), name="proj",
                                 dtype=dtype)
        self.proj_dropout = Dropout(dropout_rate, dtype=dtype)
        self.norm2 = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm2",
                                               dtype=dtype)
        self.mlp = sequential(
            [
                layers.Dense(dim, activation="gelu", kernel_initializer=initializers.trunc_normal(),
                             dtype=dtype),
                layers.Dense(dim, kernel_initializer=initializers.trunc_normal(), dtype=dtype),
                Dropout(dropout_rate, dtype=dtype),
            ],
            name="mlp",
            dtype=dtype,
        )

    def build(self, input_shape):
        m = self.num_features
        self.random_features = self.add_weight(
            shape=(m, self.dim),
            initializer=keras.initializers.Orthogonal(gain=float(np.sqrt(m)), seed=self.seed),
            trainable=False,
            name="random_features",
        )
        self.norm1.build(input_shape)
        self.kqv.build(input_shape)
        token_shape = (*input_shape[:-1], self.dim)
        self.proj.build(token_shape)
        self.norm2.build(token_shape)
        self.mlp.build(token_shape)

    @property
    def feature_dtype(self):
        """The dtype of the random features: float32, or float64 under a float64 policy."""
        return "float64" if self.compute_dtype == "float64" else "float32"

    def feature_map(self, x):
        """`[B, N, dim]` -> `[B, N, m]`: `exp(w x - |x|^2 / 2) / sqrt(m)`, in `feature_dtype`."""
        x = ops.cast(x, self.feature_dtype)
        w = ops.cast(self.random_features, self.feature_dtype)
        squared_norm = ops.sum(x * x, axis=-1, keepdims=True) / 2
        return ops.exp(ops.einsum("bti,mi->btm", x, w) - squared_norm) / self.num_features**0.5

    def call(self, tokens, training=None):
        k, q, v = ops.split(self.kqv(self.norm1(tokens)), 3, axis=-1)
        kp, qp = self.feature_map(k), self.feature_map(q)  # [B, N, m]
        normalizer = ops.einsum("btm,bm->bt", qp, ops.sum(kp, axis=1))[..., None]  # [B, N, 1]
        kptv = ops.einsum("bnd,bnm->bdm", ops.cast(v, self.feature_dtype), kp)  # [B, dim, m]
        y = ops.einsum("btm,bdm->btd", qp, kptv) / (normalizer + 1e-8)
        y = ops.cast(y, v.dtype)
        x = v + self.proj_dropout(self.proj(y), training=training)
        return x + self.mlp(self.norm2(x), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dim)

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "kernel_ratio": self.kernel_ratio,
            "dropout_rate": self.dropout_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="drloc")
class SinusoidalPositionEmbedding(layers.Layer):
    """Adds the fixed `sinusoid_table(N, C)` to the tokens (a constant, not a weight).

    Input shape: `[B, N, C]` with static N and C. Output shape: the same.
    """

    def build(self, input_shape):
        self.table = sinusoid_table(input_shape[1], input_shape[2])[None]

    def call(self, tokens):
        return tokens + ops.convert_to_tensor(self.table, dtype=tokens.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="drloc")
class T2TViTBackbone(Backbone):
    """T2T-ViT with a linear classifier on the class token, exposing its token grid.

    Args:
        image_size: int, or (height, width); the soft splits must leave a token grid of at
            least 3x3 (2x2 with `grid_pooling=False`).
        kernel_sizes, strides, paddings: one int per soft split (paddings may be 0); a T2T
            transformer runs between consecutive splits.
        token_dim: token width inside the T2T module.
        t2t_attention: "transformer" (the official `Token_transformer`) or "performer" (the
            official `Token_performer`, of the published T2T-ViT-14).
        embed_dim: token width of the ViT.
        depth: number of ViT blocks.
        num_heads: attention heads of the ViT blocks; must divide `embed_dim`.
        mlp_ratio: hidden width of each ViT MLP over `embed_dim`.
        qkv_bias: whether the ViT query/key/value projections have a bias.
        position_embedding: "sinusoidal" (fixed, as in T2T-ViT) or "learned".
        grid_pooling: whether the DRLoc grid is 3x3 average-pooled at stride 2 (padding 1, not
            counted), as in the authors' DRLoc T2T-ViT.
        dropout_rate: dropout in the T2T module, after the position embedding, the attention
            and in the MLPs.
        attention_dropout_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of the last ViT block; it rises linearly from 0 at the
            first.
        num_classes: outputs of the classifier.
        layer_norm_epsilon: epsilon of every LayerNorm.
        name, dtype, trainable: as for `keras.Model`; every layer is built with the dtype
            policy `dtype` (default: Keras' global policy).

    Input: images `[B, height, width, 3]`. Output: `{"logits": [B, num_classes],
    "feature_maps": [[B, h', w', embed_dim]]}`, the last soft split's `h x w` grid of patch
    tokens after the final LayerNorm, pooled to `ceil(h / 2) x ceil(w / 2)` with
    `grid_pooling`.

    Example:
    >>> model = T2TViTBackbone(**T2T_CONFIGS["t2t_vit_14"], num_classes=100)
    >>> [f.shape for f in model.output["feature_maps"]]
    [(None, 7, 7, 384)]
    """

    def __init__(
        self,
        image_size=224,
        *,
        kernel_sizes=(7, 3, 3),
        strides=(4, 2, 2),
        paddings=(2, 1, 1),
        token_dim=64,
        t2t_attention="transformer",
        embed_dim=384,
        depth=14,
        num_heads=6,
        mlp_ratio=3.0,
        qkv_bias=False,
        position_embedding="sinusoidal",
        grid_pooling=True,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        num_classes=1000,
        layer_norm_epsilon=1e-5,
        name=None,
        dtype=None,
        trainable=True,
        **kwargs,
    ):
        # === Argument validation ===
        refuse_unknown_arguments(type(self), kwargs)
        splits = {"kernel_sizes": list(kernel_sizes), "strides": list(strides),
                  "paddings": list(paddings)}
        for arg, value in [("token_dim", token_dim), ("embed_dim", embed_dim),
                           ("depth", depth), ("num_heads", num_heads),
                           ("num_classes", num_classes)]:
            check_positive_int(arg, value)
        for arg, values in splits.items():
            if len(values) < 1 or len(values) != len(splits["kernel_sizes"]):
                raise ValueError(
                    f"`kernel_sizes`, `strides` and `paddings` need one value per soft split "
                    f"(at least one). Found {arg}={values}, "
                    f"kernel_sizes={splits['kernel_sizes']}"
                )
            for i, value in enumerate(values):
                if arg != "paddings":
                    check_positive_int(f"{arg}[{i}]", value)
                elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(
                        f"`paddings` must be ints >= 0. Found paddings[{i}]={value!r}"
                    )
        for arg, value in [("dropout_rate", dropout_rate), ("drop_path_rate", drop_path_rate),
                           ("attention_dropout_rate", attention_dropout_rate)]:
            check_rate(arg, value)
        if t2t_attention not in T2T_ATTENTIONS:
            raise ValueError(
                f"`t2t_attention` must be one of {T2T_ATTENTIONS}. "
                f"Found t2t_attention={t2t_attention!r}"
            )
        if position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(
                f"`position_embedding` must be one of {POSITION_EMBEDDINGS}. "
                f"Found position_embedding={position_embedding!r}"
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"`embed_dim` must be divisible by `num_heads`. "
                f"Found embed_dim={embed_dim}, num_heads={num_heads}"
            )
        height, width = image_shape(image_size)
        grid_height, grid_width = height, width
        for kernel, stride, padding in zip(*splits.values()):
            grid_height = conv_output_size(grid_height, kernel, stride, padding)
            grid_width = conv_output_size(grid_width, kernel, stride, padding)
            if min(grid_height, grid_width) < 1:
                break
        smallest = 3 if grid_pooling else 2
        if min(grid_height, grid_width) < smallest:
            raise ValueError(
                f"`image_size` is too small for kernel_sizes={splits['kernel_sizes']}, "
                f"strides={splits['strides']} and paddings={splits['paddings']}: the token "
                f"grid would be {grid_height}x{grid_width}, and DRLoc needs at least "
                f"{smallest}x{smallest} (grid_pooling={grid_pooling}). "
                f"Found image_size={image_size!r}"
            )
        policy = dtype_policy(dtype)

        # === Functional Model ===
        images = keras.Input(shape=(height, width, 3), name="images", dtype=policy.compute_dtype)
        x = images
        for i, (kernel, stride, padding) in enumerate(zip(*splits.values())):
            x = SoftSplit(kernel, stride, padding, name=f"soft_split{i + 1}", dtype=policy)(x)
            if i == len(kernel_sizes) - 1:
                break
            _, h, w, channels = x.shape
            x = layers.Reshape((h * w, channels), name=f"t2t_tokens{i + 1}", dtype=policy)(x)
            if t2t_attention == "performer":
                x = TokenPerformer(
                    token_dim,
                    dropout_rate=dropout_rate,
                    layer_norm_epsilon=layer_norm_epsilon,
                    name=f"t2t_performer{i + 1}",
                    dtype=policy,
                )(x)
            else:
                x = TokenTransformer(
                    token_dim,
                    dropout_rate=dropout_rate,
                    attention_dropout_rate=attention_dropout_rate,
                    layer_norm_epsilon=layer_norm_epsilon,
                    name=f"t2t_transformer{i + 1}",
                    dtype=policy,
                )(x)
            x = layers.Reshape((h, w, token_dim), name=f"t2t_restructure{i + 1}", dtype=policy)(x)
        x = layers.Reshape((grid_height * grid_width, x.shape[-1]), name="t2t_tokens",
                           dtype=policy)(x)
        x = layers.Dense(
            embed_dim, kernel_initializer=initializers.trunc_normal(), name="t2t_projection",
            dtype=policy,
        )(x)
        x = ClassToken(name="class_token", dtype=policy)(x)
        if position_embedding == "sinusoidal":
            x = SinusoidalPositionEmbedding(name="position_embedding", dtype=policy)(x)
        else:
            x = PositionEmbedding(name="position_embedding", dtype=policy)(x)
        x = Dropout(dropout_rate, name="embedding_dropout", dtype=policy)(x)
        for i, rate in enumerate(np.linspace(0.0, drop_path_rate, depth).tolist()):
            x = TransformerEncoderBlock(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                drop_path_rate=rate,
                layer_norm_epsilon=layer_norm_epsilon,
                name=f"block{i + 1}",
                dtype=policy,
            )(x)
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="final_norm",
                                      dtype=policy)(x)
        class_token, grid = SplitClassToken(
            (grid_height, grid_width), name="token_grid", dtype=policy
        )(x)
        if grid_pooling:
            grid = AveragePoolingExcludingPadding(3, 2, 1, name="drloc_grid", dtype=policy)(grid)
        logits = layers.Dense(
            num_classes, kernel_initializer=initializers.trunc_normal(), name="classifier",
            dtype=policy,
        )(class_token)
        outputs = {"logits": logits, "feature_maps": [grid]}
        super().__init__(images, outputs, name=name, dtype=policy, trainable=trainable)

        # === Config ===
        self.image_size = image_size
        for arg, values in splits.items():
            setattr(self, arg, values)
        self.token_dim = token_dim
        self.t2t_attention = t2t_attention
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.position_embedding = position_embedding
        self.grid_pooling = grid_pooling
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.num_classes = num_classes
        self.layer_norm_epsilon = layer_norm_epsilon

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "kernel_sizes": self.kernel_sizes,
            "strides": self.strides,
            "paddings": self.paddings,
            "token_dim": self.token_dim,
            "t2t_attention": self.t2t_attention,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "position_embedding": self.position_embedding,
            "grid_pooling": self.grid_pooling,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "num_classes": self.num_classes,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }


def t2t(name, **overrides):
    """The named configuration of `T2T_CONFIGS`, with any argument overridden."""
    return build_named(T2TViTBackbone, T2T_CONFIGS, name, overrides)


def t2t_vit_14(**overrides):
    """T2T-ViT-14 at 224x224, plain-transformer T2T module (21,465,422 parameters with 1000
    classes; 21,469,902 with t2t_attention="performer"); DRLoc grid 7x7x384 (14x14 unpooled)."""
    return t2t("t2t_vit_14", **overrides)


def t2t_vit_14_32(**overrides):
    """T2T-ViT-14 for 32x32 images: soft splits 3x3 at strides 1, 2, 2; token grid 8x8, DRLoc
    grid 4x4."""
    return t2t("t2t_vit_14_32", **overrides)
