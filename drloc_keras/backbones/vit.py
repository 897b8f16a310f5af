"""ViT, the Vision Transformer (Dosovitskiy et al., ICLR 2021, "An Image is Worth 16x16
Words"), as a DRLoc backbone.

Non-overlapping patches embedded by a strided convolution, a learned class token and a learned
position embedding, pre-norm transformer blocks, a final LayerNorm and a linear classifier on
the class token. Facts follow timm's `vit_base_patch16_224`: query/key/value bias, LayerNorm
epsilon 1e-6, exact GELU; ViT-B/16 has 86,567,656 parameters with 1000 classes.

The initialisation is that of the code each size comes from, both lucidrains' ViT: the class
token and the position embedding `torch.randn` (a normal of std 1); every Dense layer, the
patch embedding (their linear layer on flattened patches) included, PyTorch's default
(`initializer="torch_default"`: uniform, bound 1/sqrt(fan_in), weight and bias) in the DRLoc
authors' ViT, `xavier_normal_` with zero biases (`"xavier_normal"`) in Lee et al.'s.

The DRLoc grid (spec section 8) is the patch tokens of the last block, the class token
dropped, reshaped to the patch grid (14x14x768 for ViT-B/16 at 224). It is taken before the
final LayerNorm, as in the authors' DRLoc ViT (yhlleo/VTs-Drloc `models/vit.py`, whose final
LayerNorm sits inside the classifier head), and as Swin and CCT do here. The authors' ViT is
lucidrains' (bias-free query/key/value, patches embedded by a linear layer on flattened
patches, which equals a strided convolution): 86,540,008 parameters.

Example:
>>> model = vit_32(num_classes=10)
>>> [f.shape for f in model.output["feature_maps"]]
[(None, 8, 8, 192)]
"""

import keras
import numpy as np
from keras import layers

from drloc_keras import initializers
from drloc_keras.backbones.layers import (
    Backbone,
    ClassToken,
    Dropout,
    PositionEmbedding,
    SplitClassToken,
    TransformerEncoderBlock,
    build_named,
    check_positive_int,
    check_rate,
    dtype_policy,
    image_shape,
    refuse_unknown_arguments,
)

# Named sizes. `vit_base_16` is ViT-B/16 with the dropout 0.1 of the paper's ImageNet training
# from scratch and of the authors' DRLoc ViT. `vit_32` is our choice for 32x32 images (the
# authors resize CIFAR to 224 instead): the CIFAR baseline ViT of Lee et al. 2021 ("Vision
# Transformer for Small-Size Datasets"): patch 4 (an 8x8 grid), width 192, depth 9, 12 heads,
# MLP ratio 2, stochastic depth 0.1; 2.7M parameters with 10 classes.
VIT_CONFIGS = {
    "vit_base_16": {
        "initializer": "torch_default",
        "image_size": 224,
        "patch_size": 16,
        "embed_dim": 768,
        "depth": 12,
        "num_heads": 12,
        "mlp_ratio": 4.0,
        "dropout_rate": 0.1,
        "drop_path_rate": 0.0,
    },
    "vit_32": {
        "initializer": "xavier_normal",
        "image_size": 32,
        "patch_size": 4,
        "embed_dim": 192,
        "depth": 9,
        "num_heads": 12,
        "mlp_ratio": 2.0,
        "dropout_rate": 0.0,
        "drop_path_rate": 0.1,
    },
}
# The initialisations of the ViT codes the sizes follow (lucidrains' ViT in both).
VIT_INITIALIZERS = ("torch_default", "xavier_normal")


@keras.saving.register_keras_serializable(package="drloc")
class ViTBackbone(Backbone):
    """ViT with a linear classifier on the class token, exposing its patch grid.

    Args:
        image_size: int, or (height, width); each a multiple of `patch_size`, at least
            `2 * patch_size` so that the grid is at least 2x2.
        patch_size: side of the square patches (a convolution with this kernel and stride).
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads; must divide `embed_dim`.
        mlp_ratio: hidden width of each MLP over `embed_dim`.
        qkv_bias: whether the query/key/value projections have a bias.
        dropout_rate: dropout after the position embedding, the attention and in the MLPs.
        attention_dropout_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of the last block; it rises linearly from 0 at the
            first.
        num_classes: outputs of the classifier.
        layer_norm_epsilon: epsilon of every LayerNorm.
        initializer: how the Dense layers and the patch embedding start, one of
            `VIT_INITIALIZERS` (`initializers.dense`): "torch_default" (the DRLoc authors'
            ViT) or "xavier_normal" (Lee et al.'s); the tokens start normal with std 1.
        name, dtype, trainable: as for `keras.Model`; every layer is built with the dtype
            policy `dtype` (default: Keras' global policy).

    Input: images `[B, height, width, 3]`. Output: `{"logits": [B, num_classes],
    "feature_maps": [[B, height / patch_size, width / patch_size, embed_dim]]}`, the patch
    tokens of the last block before the final LayerNorm.

    Example:
    >>> model = ViTBackbone(**VIT_CONFIGS["vit_base_16"], num_classes=100)
    >>> [f.shape for f in model.output["feature_maps"]]
    [(None, 14, 14, 768)]
    """

    def __init__(
        self,
        image_size=224,
        *,
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        dropout_rate=0.1,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        num_classes=1000,
        layer_norm_epsilon=1e-6,
        initializer="torch_default",
        name=None,
        dtype=None,
        trainable=True,
        **kwargs,
    ):
        # === Argument validation ===
        refuse_unknown_arguments(type(self), kwargs)
        if initializer not in VIT_INITIALIZERS:
            raise ValueError(
                f"`initializer` must be one of {VIT_INITIALIZERS}. "
                f"Found initializer={initializer!r}"
            )
        for arg, value in [("patch_size", patch_size), ("embed_dim", embed_dim),
                           ("depth", depth), ("num_heads", num_heads),
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
        if height % patch_size or width % patch_size or min(height, width) < 2 * patch_size:
            raise ValueError(
                f"`image_size` must be a multiple of patch_size={patch_size} and at least "
                f"{2 * patch_size}, so that the patch grid is at least 2x2. "
                f"Found image_size={image_size!r}"
            )
        grid_height, grid_width = height // patch_size, width // patch_size
        policy = dtype_policy(dtype)

        # === Functional Model ===
        images = keras.Input(shape=(height, width, 3), name="images", dtype=policy.compute_dtype)
        x = layers.Conv2D(
            embed_dim, patch_size, strides=patch_size, name="patch_embedding", dtype=policy,
            **initializers.dense(initializer, 3 * patch_size**2, embed_dim),
        )(images)
        x = layers.Reshape((grid_height * grid_width, embed_dim), name="patch_tokens",
                           dtype=policy)(x)
        x = ClassToken(stddev=1.0, name="class_token", dtype=policy)(x)
        x = PositionEmbedding(stddev=1.0, name="position_embedding", dtype=policy)(x)
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
                initializer=initializer,
                name=f"block{i + 1}",
                dtype=policy,
            )(x)
        # LayerNorm acts per token, so normalising the class token alone is the same as
        # normalising every token and then taking it.
        class_token, grid = SplitClassToken(
            (grid_height, grid_width), name="drloc_grid", dtype=policy
        )(x)
        x = layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="final_norm", dtype=policy
        )(class_token)
        logits = layers.Dense(
            num_classes, name="classifier", dtype=policy,
            **initializers.dense(initializer, embed_dim, num_classes),
        )(x)
        outputs = {"logits": logits, "feature_maps": [grid]}
        super().__init__(images, outputs, name=name, dtype=policy, trainable=trainable)

        # === Config ===
        self.image_size = image_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.num_classes = num_classes
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer = initializer

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "num_classes": self.num_classes,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer": self.initializer,
        }


def vit(name, **overrides):
    """The named configuration of `VIT_CONFIGS`, with any argument overridden."""
    return build_named(ViTBackbone, VIT_CONFIGS, name, overrides)


def vit_base_16(**overrides):
    """ViT-B/16 at 224x224 (86,567,656 parameters with 1000 classes; grid 14x14x768)."""
    return vit("vit_base_16", **overrides)


def vit_32(**overrides):
    """A ViT for 32x32 images: patch 4, width 192, depth 9, 12 heads, MLP ratio 2; grid 8x8."""
    return vit("vit_32", **overrides)
