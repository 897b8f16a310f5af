"""CvT, the Convolutional vision Transformer (Wu et al., ICCV 2021), as a DRLoc backbone.

Three stages. Each starts with a convolutional token embedding (an overlapping strided
convolution, then LayerNorm) and continues with transformer blocks whose queries, keys and
values come from depthwise separable convolutional projections (depthwise 3x3 convolution,
BatchNorm, then a linear layer); keys and values are computed at stride 2 (paper section 3.2).
The tokens stay a `[B, h, w, C]` grid throughout.

Choices, where the published CvT-13 leaves one open or DRLoc asks for something else:
- No class token. The logits are LayerNorm of every last-stage token, averaged, then a linear
  layer: the official code's path for a stage without a class token. The authors' DRLoc CvT
  also averages the last stage, and the grid then holds no special token. (CvT-13's class
  token is 384 parameters.)
- The attention scale is 1/sqrt(head dim), as in the paper's formula and the authors' DRLoc
  CvT (the official CvT code uses 1/sqrt(dim)).
- Paddings are those of the PyTorch code (kernel // 2 on each side), made explicit so that a
  strided convolution sees the same pixels on every backend (Keras' "same" pads unevenly).
- The DRLoc grid (spec section 8) is the last stage output, then 3x3 average pooling
  with stride 2 and padding 1, the padding not counted in the average. At 224: 14x14 -> 7x7,
  C = 384.
- The initialisation is the DRLoc authors' (`initializer="torch_default"`): their CvT is
  lucidrains', which re-initialises nothing, so every Dense and convolution starts as PyTorch
  starts an `nn.Linear` or `nn.Conv2d` (uniform, bound 1/sqrt(fan_in), weight and bias).
  `initializer="trunc_normal"` gives the official CvT-13's Dense layers (truncated normal std
  0.02, zero biases).

Example:
>>> model = cvt_13_32(num_classes=10)
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
    DropPath,
    Dropout,
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

# Named sizes. `cvt_13` is CvT-13 (paper Table 2, the official cvt-13-224x224 config,
# stochastic depth 0.1 in the last stage only). `cvt_13_32` is our choice for 32x32 images
# (the authors resize CIFAR to 224 instead): the first embedding is a 3x3 convolution at
# stride 1 instead of 7x7 at stride 4, so the stages are 32x32, 16x16 and 8x8 and the DRLoc
# grid is 4x4; everything else is CvT-13.
CVT_CONFIGS = {
    "cvt_13": {
        "image_size": 224,
        "embed_dims": (64, 192, 384),
        "num_heads": (1, 3, 6),
        "depths": (1, 2, 10),
        "patch_sizes": (7, 3, 3),
        "patch_strides": (4, 2, 2),
        "drop_path_rates": (0.0, 0.0, 0.1),
    },
    "cvt_13_32": {
        "image_size": 32,
        "embed_dims": (64, 192, 384),
        "num_heads": (1, 3, 6),
        "depths": (1, 2, 10),
        "patch_sizes": (3, 3, 3),
        "patch_strides": (1, 2, 2),
        "drop_path_rates": (0.0, 0.0, 0.1),
    },
}


@keras.saving.register_keras_serializable(package="drloc")
class ConvAttention(layers.Layer):
    """Multi-head self-attention with convolutional projections (CvT section 3.2).

    q, k and v are each: depthwise `kernel_size` convolution (stride 1 for q, `kv_stride` for
    k and v, padding kernel_size // 2, no bias), BatchNorm, then a linear layer.

    Args:
        dim: int, channels in and out.
        num_heads: int dividing `dim`.
        kv_stride: int, stride of the key and value convolutions.
        kernel_size: int, the depthwise kernel.
        dropout_rate: float, dropout after the output projection.
        attention_dropout_rate: float, dropout on the attention weights.
        initializer: how the Dense layers start, one of `initializers.DENSE_SCHEMES`; the
            depthwise convolutions keep PyTorch's default (uniform, bound 1/kernel_size).

    Input shape: `[B, h, w, dim]`. Output shape: the same.
    """

    def __init__(
        self,
        dim,
        num_heads,
        kv_stride=2,
        kernel_size=3,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        initializer="torch_default",
        **kwargs,
    ):
        super().__init__(**kwargs)
        initializers.check_scheme(initializer)
        self.dim = dim
        self.num_heads = num_heads
        self.kv_stride = kv_stride
        self.kernel_size = kernel_size
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.initializer = initializer
        dtype = self.dtype_policy
        self.projections = {
            name: sequential(
                [
                    layers.ZeroPadding2D(kernel_size // 2, dtype=dtype),
                    layers.DepthwiseConv2D(
                        kernel_size, strides=stride, use_bias=False, dtype=dtype,
                        # one input channel per group: fan_in = kernel_size**2
                        depthwise_initializer=initializers.torch_uniform(kernel_size**2),
                    ),
                    # PyTorch's defaults
                    layers.BatchNormalization(epsilon=1e-5, momentum=0.9, dtype=dtype),
                    layers.Dense(dim, dtype=dtype, **initializers.dense(initializer, dim, dim)),
                ],
                name=f"{name}_projection",
                dtype=dtype,
            )
            for name, stride in (("q", 1), ("k", kv_stride), ("v", kv_stride))
        }
        self.attention_dropout = Dropout(attention_dropout_rate, dtype=dtype)
        self.output_projection = layers.Dense(dim, dtype=dtype,
                                              **initializers.dense(initializer, dim, dim))
        self.output_dropout = Dropout(dropout_rate, dtype=dtype)

    def split_heads(self, x):
        """`[B, h, w, dim]` -> `[B, heads, h * w, dim / heads]`."""
        head_dim = self.dim // self.num_heads
        x = ops.reshape(x, (-1, x.shape[1] * x.shape[2], self.num_heads, head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, inputs, training=None):
        q, k, v = (
            self.split_heads(self.projections[name](inputs, training=training))
            for name in ("q", "k", "v")
        )
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / q.shape[-1] ** 0.5
        weights = self.attention_dropout(ops.softmax(scores, axis=-1), training=training)
        x = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
        x = ops.reshape(x, (-1, inputs.shape[1], inputs.shape[2], self.dim))
        return self.output_dropout(self.output_projection(x), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "kv_stride": self.kv_stride,
            "kernel_size": self.kernel_size,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "initializer": self.initializer,
        }


@keras.saving.register_keras_serializable(package="drloc")
class CvTBlock(layers.Layer):
    """Pre-norm transformer block: `x + ConvAttention(LN(x))`, then `x + MLP(LN(x))`.

    Args:
        dim, num_heads, kv_stride, dropout_rate, attention_dropout_rate: as in
            `ConvAttention` (`dropout_rate` is also applied inside the MLP).
        mlp_ratio: float, hidden width of the MLP over `dim`.
        drop_path_rate: float, stochastic depth of both residual branches.
        layer_norm_epsilon: float.
        initializer: how every Dense layer starts, one of `initializers.DENSE_SCHEMES`.

    Input shape: `[B, h, w, dim]`. Output shape: the same.
    """

    def __init__(
        self,
        dim,
        num_heads,
        mlp_ratio=4.0,
        kv_stride=2,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-5,
        initializer="torch_default",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = dim
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.kv_stride = kv_stride
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer = initializer
        dtype = self.dtype_policy
        self.attention_norm = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype)
        self.attention = ConvAttention(
            dim, num_heads, kv_stride, 3, dropout_rate, attention_dropout_rate, initializer,
            dtype=dtype,
        )
        self.mlp_norm = layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=dtype)
        self.mlp = mlp(dim, int(dim * mlp_ratio), dropout_rate, dtype, initializer=initializer)
        self.drop_path = DropPath(drop_path_rate, dtype=dtype)

    def call(self, x, training=None):
        attended = self.attention(self.attention_norm(x), training=training)
        x = x + self.drop_path(attended, training=training)
        transformed = self.mlp(self.mlp_norm(x), training=training)
        return x + self.drop_path(transformed, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dim": self.dim,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "kv_stride": self.kv_stride,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer": self.initializer,
        }


@keras.saving.register_keras_serializable(package="drloc")
class CvTBackbone(Backbone):
    """CvT with a linear classifier, exposing the DRLoc grid of its last stage.

    Args:
        image_size: int, or (height, width); the last stage must be at least 3x3.
        embed_dims, num_heads, depths, patch_sizes, patch_strides: one int per stage; the
            token embedding of stage i is a `patch_sizes[i]` convolution at stride
            `patch_strides[i]` with padding `patch_sizes[i] // 2`.
        mlp_ratio: hidden width of each MLP over its input width.
        kv_stride: stride of the key and value convolutional projections.
        drop_path_rates: one float per stage; within stage i stochastic depth rises linearly
            from 0 at its first block to `drop_path_rates[i]` at its last (as CvT-13 does).
        dropout_rate: dropout after the token embeddings, the attention and in the MLPs.
        attention_dropout_rate: dropout on the attention weights.
        num_classes: outputs of the classifier.
        layer_norm_epsilon: epsilon of every LayerNorm.
        initializer: how every Dense layer starts (`initializers.dense`): "torch_default"
            (PyTorch's default, as the DRLoc authors' CvT, lucidrains', leaves every layer) or
            "trunc_normal" (the official CvT-13's `INIT: trunc_norm`); every convolution keeps
            PyTorch's default in both, and the norms start at scale 1, offset 0.
        name, dtype, trainable: as for `keras.Model`; every layer is built with the dtype
            policy `dtype` (default: Keras' global policy).

    Input: images `[B, height, width, 3]`. Output: `{"logits": [B, num_classes],
    "feature_maps": [[B, ceil(h / 2), ceil(w / 2), embed_dims[-1]]]}`, the last stage `h x w`
    average-pooled 3x3 at stride 2 (padding 1, not counted).

    Example:
    >>> model = CvTBackbone(**CVT_CONFIGS["cvt_13"], num_classes=100)
    >>> [f.shape for f in model.output["feature_maps"]]
    [(None, 7, 7, 384)]
    """

    def __init__(
        self,
        image_size=224,
        *,
        embed_dims=(64, 192, 384),
        num_heads=(1, 3, 6),
        depths=(1, 2, 10),
        patch_sizes=(7, 3, 3),
        patch_strides=(4, 2, 2),
        mlp_ratio=4.0,
        kv_stride=2,
        drop_path_rates=(0.0, 0.0, 0.1),
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        num_classes=1000,
        layer_norm_epsilon=1e-5,
        initializer="torch_default",
        name=None,
        dtype=None,
        trainable=True,
        **kwargs,
    ):
        # === Argument validation ===
        refuse_unknown_arguments(type(self), kwargs)
        initializers.check_scheme(initializer)
        stages = {
            "embed_dims": list(embed_dims),
            "num_heads": list(num_heads),
            "depths": list(depths),
            "patch_sizes": list(patch_sizes),
            "patch_strides": list(patch_strides),
            "drop_path_rates": list(drop_path_rates),
        }
        check_positive_int("num_classes", num_classes)
        for arg, values in stages.items():
            if len(values) != len(stages["embed_dims"]):
                raise ValueError(
                    f"Every per-stage argument needs one value per stage, as many as "
                    f"embed_dims={stages['embed_dims']}. Found {arg}={values}"
                )
        for arg, value in [("dropout_rate", dropout_rate),
                           ("attention_dropout_rate", attention_dropout_rate),
                           *(("drop_path_rates", rate) for rate in drop_path_rates)]:
            check_rate(arg, value)
        for dim, heads in zip(embed_dims, num_heads):
            if dim % heads:
                raise ValueError(
                    f"Each of `embed_dims` must be divisible by its `num_heads`. "
                    f"Found embed_dims={stages['embed_dims']}, num_heads={stages['num_heads']}"
                )
        height, width = image_shape(image_size)
        last_height, last_width = height, width
        for kernel, stride in zip(patch_sizes, patch_strides):
            last_height = conv_output_size(last_height, kernel, stride, kernel // 2)
            last_width = conv_output_size(last_width, kernel, stride, kernel // 2)
        if min(last_height, last_width) < 3:
            raise ValueError(
                f"`image_size` is too small for patch_sizes={stages['patch_sizes']} and "
                f"patch_strides={stages['patch_strides']}: the last stage would be "
                f"{last_height}x{last_width}, and the DRLoc grid (its stride-2 pooling) needs "
                f"at least 3x3. Found image_size={image_size!r}"
            )
        policy = dtype_policy(dtype)

        # === Functional Model ===
        images = keras.Input(shape=(height, width, 3), name="images", dtype=policy.compute_dtype)
        x = images
        for i, (dim, heads, depth, kernel, stride, rate) in enumerate(zip(*stages.values())):
            stage = f"stage{i + 1}"
            fan_in = x.shape[-1] * kernel**2
            x = layers.ZeroPadding2D(kernel // 2, name=f"{stage}_embedding_padding",
                                     dtype=policy)(x)
            x = layers.Conv2D(dim, kernel, strides=stride, name=f"{stage}_embedding",
                              kernel_initializer=initializers.torch_uniform(fan_in),
                              bias_initializer=initializers.torch_uniform(fan_in),
                              dtype=policy)(x)
            x = layers.LayerNormalization(
                epsilon=layer_norm_epsilon, name=f"{stage}_embedding_norm", dtype=policy
            )(x)
            x = Dropout(dropout_rate, name=f"{stage}_embedding_dropout", dtype=policy)(x)
            for j, block_rate in enumerate(np.linspace(0.0, rate, depth).tolist()):
                x = CvTBlock(
                    dim,
                    heads,
                    mlp_ratio=mlp_ratio,
                    kv_stride=kv_stride,
                    dropout_rate=dropout_rate,
                    attention_dropout_rate=attention_dropout_rate,
                    drop_path_rate=block_rate,
                    layer_norm_epsilon=layer_norm_epsilon,
                    initializer=initializer,
                    name=f"{stage}_block{j + 1}",
                    dtype=policy,
                )(x)
        grid = AveragePoolingExcludingPadding(3, 2, 1, name="drloc_grid", dtype=policy)(x)
        x = layers.LayerNormalization(epsilon=layer_norm_epsilon, name="final_norm",
                                      dtype=policy)(x)
        x = layers.GlobalAveragePooling2D(name="average_pool", dtype=policy)(x)
        logits = layers.Dense(
            num_classes, name="classifier", dtype=policy,
            **initializers.dense(initializer, embed_dims[-1], num_classes),
        )(x)
        outputs = {"logits": logits, "feature_maps": [grid]}
        super().__init__(images, outputs, name=name, dtype=policy, trainable=trainable)

        # === Config ===
        self.image_size = image_size
        for arg, values in stages.items():
            setattr(self, arg, values)
        self.mlp_ratio = mlp_ratio
        self.kv_stride = kv_stride
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.num_classes = num_classes
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer = initializer

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "embed_dims": self.embed_dims,
            "num_heads": self.num_heads,
            "depths": self.depths,
            "patch_sizes": self.patch_sizes,
            "patch_strides": self.patch_strides,
            "mlp_ratio": self.mlp_ratio,
            "kv_stride": self.kv_stride,
            "drop_path_rates": self.drop_path_rates,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "num_classes": self.num_classes,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer": self.initializer,
        }


def cvt(name, **overrides):
    """The named configuration of `CVT_CONFIGS`, with any argument overridden."""
    return build_named(CvTBackbone, CVT_CONFIGS, name, overrides)


def cvt_13(**overrides):
    """CvT-13 at 224x224 (20.0M parameters with 1000 classes; DRLoc grid 7x7x384)."""
    return cvt("cvt_13", **overrides)


def cvt_13_32(**overrides):
    """CvT-13 for 32x32 images: first embedding 3x3 at stride 1, stages 32, 16, 8; grid 4x4."""
    return cvt("cvt_13_32", **overrides)
