"""ResNet-50 (He et al. 2016, "Deep Residual Learning for Image Recognition") as a DRLoc backbone.

The network is `keras.applications.ResNet50` (bottleneck blocks of 3, 4, 6 and 3, convolutions
with a bias, BatchNorm epsilon 1.001e-5), rebuilt with `keras.models.clone_model` as the layer
"trunk", without its top and without weights: DRLoc trains from scratch. It starts as the DRLoc
authors' ResNet-50 (torchvision's) does: every convolution `kaiming_normal_` with mode fan_out
(untruncated, std sqrt(2 / fan_out)), biases 0 (torchvision's convolutions have none),
BatchNorm scale 1 and offset 0, the classifier PyTorch's default `nn.Linear` (uniform, bound
1/sqrt(fan_in), weight and bias). The trunk takes the images as given: unlike the
ImageNet weights of `keras.applications`, it expects no `preprocess_input`. On top of it, global
average pooling and a Dense classifier. The DRLoc feature map is the last stage's output
(spec section 8): 7x7x2048 at 224.

Two stems:
- "imagenet", the application's own: 7x7 convolution at stride 2, 3x3 max pooling at stride 2;
  the last stage is the input divided by 32 (rounded up), so 224 -> 7x7.
- "cifar", our choice for 32x32 images, where the imagenet stem leaves a 1x1 last stage with no
  relative position to learn: the application's network with its stem convolution replaced by
  a 3x3 one at stride 1 and the max pooling removed (the CIFAR ResNets of He et al. and of most
  CIFAR code), so the last stage is the input divided by 8: 32 -> 4x4. It is built from the
  application's layers with `keras.models.clone_model`, so the blocks are the same code.

`width_multiplier` (default 1.0) scales the filters of every convolution, the same way by
`clone_model`: `resnet50_32(width_multiplier=0.125)` is the reduced-width CNN of the quick
small-data study (examples/small_data_study.py).

Example:
>>> model = resnet50_32(num_classes=10)
>>> [f.shape for f in model.output["feature_maps"]]
[(None, 4, 4, 2048)]
"""

import keras
from keras import layers

from drloc_keras import initializers
from drloc_keras.backbones.layers import (
    Backbone,
    build_named,
    check_positive_int,
    dtype_policy,
    image_shape,
    refuse_unknown_arguments,
)

# Named sizes. `resnet50` is ResNet-50 at 224x224: 25,636,712 parameters with 1000 classes
# (the 25,557,032 of torchvision's, plus the 26,560 convolution biases and 53,120 BatchNorm
# moving statistics that Keras counts). `resnet50_32` is the same network with the cifar stem.
RESNET_CONFIGS = {
    "resnet50": {"image_size": 224, "stem": "imagenet"},
    "resnet50_32": {"image_size": 32, "stem": "cifar"},
}

# How many times each stem halves the input before the last stage (the four stages halve it 3
# times, each stem 2 times or not at all). Every halving rounds up, as "same" padding does.
HALVINGS = {"imagenet": 5, "cifar": 3}

# The application's stem layers that the cifar stem leaves out: the padding for the 7x7
# convolution and the max pooling with its padding.
_CIFAR_DROPPED = ("conv1_pad", "pool1_pad", "pool1_pool")


def last_stage_size(side, stem):
    """Side of the last stage for an input side: ceil(side / 32) or ceil(side / 8) (cifar)."""
    for _ in range(HALVINGS[stem]):
        side = -(-side // 2)
    return side


def _image_shape(image_size, stem):
    """Checks `image_size` against the stem; returns (height, width)."""
    size = image_shape(image_size)
    if min(last_stage_size(s, stem) for s in size) < 2:
        smallest = 2 ** HALVINGS[stem] + 1
        hint = ""
        if stem == "imagenet":
            hint = ' (use stem="cifar", as resnet50_32 does, for small images)'
        raise ValueError(
            f"`image_size` must be at least {smallest} with the {stem!r} stem, so that the last "
            f"feature map is at least 2x2{hint}. Found image_size={image_size!r}"
        )
    return size


def scaled_filters(filters, width_multiplier):
    """A convolution's filters times `width_multiplier`, rounded, at least 1."""
    return max(1, int(round(filters * width_multiplier)))


def _trunk(height, width, stem, width_multiplier, policy):
    """The application's ResNet-50 as the layer "trunk", every layer with the dtype `policy`.

    It is rebuilt layer by layer (the blocks and their names stay the same): every
    convolution initialised as torchvision's (`kaiming_normal_`, mode fan_out); with the cifar
    stem, a 3x3 stride-1 stem convolution and no max pooling; with `width_multiplier`, every
    convolution's filters scaled; with `policy`.
    """
    shape = (height, width, 3)
    application = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(None, None, 3), name="trunk"
    )

    def clone(layer):
        config = {**layer.get_config(), "dtype": policy}
        if isinstance(layer, layers.Conv2D):
            config["filters"] = scaled_filters(config["filters"], width_multiplier)
            config["kernel_initializer"] = initializers.kaiming_normal("fan_out")
        if stem == "cifar" and layer.name == "conv1_conv":
            return layers.Conv2D(
                config["filters"], 3, padding="same", name="conv1_conv", dtype=policy,
                kernel_initializer=initializers.kaiming_normal("fan_out"),
            )
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        if stem == "cifar" and layer.name in _CIFAR_DROPPED:
            return args[0]
        return layer(*args, **kwargs)

    trunk = keras.models.clone_model(
        application,
        input_tensors=keras.Input(shape=shape, dtype=policy.compute_dtype),
        clone_function=clone,
        call_function=call,
    )
    trunk.dtype_policy = policy
    return trunk


@keras.saving.register_keras_serializable(package="drloc")
class ResNet50Backbone(Backbone):
    """ResNet-50 of `keras.applications` with a linear classifier, exposing its last stage.

    Args:
        image_size: int, or (height, width); the last stage, `ceil(side / 32)` with the
            imagenet stem and `ceil(side / 8)` with the cifar stem, must be at least 2.
        num_classes: outputs of the classifier.
        stem: "imagenet" (7x7 convolution at stride 2 and 3x3 max pooling at stride 2) or
            "cifar" (3x3 convolution at stride 1, no pooling).
        width_multiplier: scales the filters of every convolution (rounded, at least 1).
            1.0 (the default) is ResNet-50 itself; 0.25 is about 16 times cheaper, for quick
            studies on small computers.
        name, dtype, trainable: as for `keras.Model`; every layer is built with the dtype
            policy `dtype` (default: Keras' global policy).

    Input: images `[B, height, width, 3]`, not preprocessed. Output: `{"logits": [B,
    num_classes], "feature_maps": [[B, h, w, C]]}`, the last stage's output, with
    `C = 2048` (times `width_multiplier`, rounded).

    Example:
    >>> model = ResNet50Backbone(image_size=224, num_classes=100)
    >>> model.output["feature_maps"][0].shape
    (None, 7, 7, 2048)
    """

    def __init__(
        self,
        image_size=224,
        *,
        num_classes=1000,
        stem="imagenet",
        width_multiplier=1.0,
        name=None,
        dtype=None,
        trainable=True,
        **kwargs,
    ):
        # === Argument validation ===
        refuse_unknown_arguments(type(self), kwargs)
        check_positive_int("num_classes", num_classes)
        if stem not in HALVINGS:
            raise ValueError(f"`stem` must be one of {sorted(HALVINGS)}. Found stem={stem!r}")
        multiplier_ok = isinstance(width_multiplier, (int, float)) and not isinstance(
            width_multiplier, bool
        )
        if not multiplier_ok or not width_multiplier > 0:
            raise ValueError(
                "`width_multiplier` must be a positive number. "
                f"Found width_multiplier={width_multiplier!r}"
            )
        height, width = _image_shape(image_size, stem)
        policy = dtype_policy(dtype)

        # === Functional Model ===
        images = keras.Input(shape=(height, width, 3), name="images", dtype=policy.compute_dtype)
        features = _trunk(height, width, stem, width_multiplier, policy)(images)
        x = layers.GlobalAveragePooling2D(name="average_pool", dtype=policy)(features)
        logits = layers.Dense(num_classes, name="classifier", dtype=policy,
                              **initializers.dense("torch_default", x.shape[-1], num_classes))(x)
        outputs = {"logits": logits, "feature_maps": [features]}
        super().__init__(images, outputs, name=name, dtype=policy, trainable=trainable)

        # === Config ===
        self.image_size = image_size
        self.num_classes = num_classes
        self.stem = stem
        self.width_multiplier = width_multiplier

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "stem": self.stem,
            "width_multiplier": self.width_multiplier,
        }


def resnet(name, **overrides):
    """The named configuration of `RESNET_CONFIGS`, with any argument overridden."""
    return build_named(ResNet50Backbone, RESNET_CONFIGS, name, overrides)


def resnet50(**overrides):
    """ResNet-50 at 224x224 (25.6M parameters with 1000 classes); last stage 7x7x2048."""
    return resnet("resnet50", **overrides)


def resnet50_32(**overrides):
    """ResNet-50 with the cifar stem for 32x32 images; last stage 4x4x2048."""
    return resnet("resnet50_32", **overrides)
