"""An adapter that lets DRLoc train a keras-hub backbone (keras-team/keras-hub).

`KerasHubBackbone` wraps a `keras_hub.models.Backbone` in the drloc protocol, images `[B, H, W,
3]` to `{"logits": [B, K], "feature_maps": [...]}`, for two kinds of backbone:

- A feature pyramid backbone (one with `pyramid_outputs`: `ResNetBackbone`, `CSPNetBackbone`,
  ...). The feature maps are the chosen pyramid levels, by default the deepest; the logits are
  global average pooling of the backbone's output (the deepest level, after the final
  BatchNorm where the backbone has one) and a Dense classifier, as in keras-hub's
  `ImageClassifier`.
- A token backbone with a `patch_size` (`ViTBackbone`), whose output is `[B, 1 + N, C]` with a
  class token first, or `[B, N, C]` without one. The feature map is the N patch tokens, the
  class token dropped, reshaped to the patch grid (spec section 8); the logits are a Dense
  classifier of the class token (of the mean token without one). The tokens come after the
  backbone's final LayerNorm: that is what a keras-hub ViT outputs.

keras-hub is an optional dependency (`pip install drloc[hub]`): it is imported only when an
adapter is built or loaded, so this module imports without it. Pretrained weights come with the
backbone:

    >>> import keras_hub
    >>> hub = keras_hub.models.Backbone.from_preset("resnet_50_imagenet")
    >>> model = KerasHubBackbone(hub, num_classes=100, image_size=224)
    >>> [f.shape for f in model.output["feature_maps"]]
    [(None, 7, 7, 2048)]

The images reach the backbone as given: apply the preset's preprocessing (rescaling,
normalisation) in the data pipeline.
"""

import keras
from keras import layers

from drloc_keras.backbones.layers import (
    Backbone,
    check_positive_int,
    dtype_policy,
    image_shape,
    refuse_unknown_arguments,
)


def import_keras_hub():
    """`keras_hub`, or an ImportError that says how to install it."""
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(
            "KerasHubBackbone needs keras-hub, an optional dependency of drloc. "
            "Install it with: pip install drloc[hub]"
        ) from error
    return keras_hub


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _image_shape(hub_backbone, image_size):
    """The (height, width, channels) the adapter feeds the backbone; checks `image_size`."""
    _, hub_height, hub_width, channels = hub_backbone.inputs[0].shape
    if image_size is None:
        if hub_height is None or hub_width is None:
            raise ValueError(
                "`image_size` is required: the hub backbone takes images of any size, and DRLoc "
                f"needs a fixed grid. Found image_size=None (backbone input "
                f"{tuple(hub_backbone.inputs[0].shape)})"
            )
        return hub_height, hub_width, channels or 3
    try:
        size = image_shape(image_size)
    except ValueError:
        raise ValueError(
            "`image_size` must be None, a positive int or a (height, width) pair. "
            f"Found image_size={image_size!r}"
        ) from None
    for given, fixed in zip(size, (hub_height, hub_width)):
        if fixed is not None and given != fixed:
            raise ValueError(
                "`image_size` must match the hub backbone's fixed input size "
                f"{(hub_height, hub_width)}. Found image_size={image_size!r}"
            )
    return size[0], size[1], channels or 3


def _check_hub_backbone(hub_backbone, keras_hub):
    """Checks the backbone is one of the two kinds; returns "pyramid" or "tokens"."""
    if not isinstance(hub_backbone, keras_hub.models.Backbone):
        raise ValueError(
            "`hub_backbone` must be a keras_hub.models.Backbone. "
            f"Found hub_backbone of type {type(hub_backbone).__name__}"
        )
    if getattr(hub_backbone, "data_format", "channels_last") != "channels_last":
        raise ValueError(
            '`hub_backbone` must use data_format="channels_last". '
            f"Found data_format={hub_backbone.data_format!r}"
        )
    if len(hub_backbone.inputs) != 1 or len(hub_backbone.inputs[0].shape) != 4:
        raise ValueError(
            "`hub_backbone` must take one batch of images [B, H, W, C]. "
            f"Found inputs {[tuple(x.shape) for x in hub_backbone.inputs]}"
        )
    if getattr(hub_backbone, "pyramid_outputs", None):
        return "pyramid"
    if len(hub_backbone.outputs) == 1 and len(hub_backbone.outputs[0].shape) == 3:
        if getattr(hub_backbone, "patch_size", None) is not None:
            return "tokens"
    outputs = [tuple(x.shape) for x in hub_backbone.outputs]
    raise ValueError(
        "`hub_backbone` must have `pyramid_outputs` (a feature pyramid backbone) or output "
        "tokens [B, T, C] and have a `patch_size` (a ViT-like backbone). Found "
        f"{type(hub_backbone).__name__} with outputs {outputs}"
    )


@keras.saving.register_keras_serializable(package="drloc")
class KerasHubBackbone(Backbone):
    """A keras-hub backbone with a linear classifier, exposing a feature grid for DRLoc.

    Args:
        hub_backbone: a `keras_hub.models.Backbone` with `pyramid_outputs`, or a ViT-like one
            whose output is tokens `[B, T, C]` on a `patch_size` grid (see the module docstring).
        num_classes: outputs of the classifier.
        feature: "last" (the deepest pyramid level, or the token grid), or a list of pyramid
            level names (`["P4", "P5"]`): one feature map each, in that order.
        image_size: int, or (height, width); None takes the backbone's own fixed input size.
            Required when the backbone takes any size (pyramid backbones usually do).
        name, trainable: as for `keras.Model`.
        dtype: the dtype policy of the adapter's own layers (the pooling and the classifier);
            None (the default) takes the hub backbone's policy.

    Input: images `[B, height, width, C]`, C the backbone's channels (3). Output:
    `{"logits": [B, num_classes], "feature_maps": [[B, h, w, C_level], ...]}`, each map at
    least 2x2.

    Example:
    >>> hub = keras_hub.models.ViTBackbone(
    ...     image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
    ...     mlp_dim=32)
    >>> KerasHubBackbone(hub, num_classes=10).output["feature_maps"][0].shape
    (None, 4, 4, 16)
    """

    def __init__(
        self,
        hub_backbone,
        *,
        num_classes=1000,
        feature="last",
        image_size=None,
        name=None,
        dtype=None,
        trainable=True,
        **kwargs,
    ):
        # === Argument validation ===
        refuse_unknown_arguments(type(self), kwargs)
        keras_hub = import_keras_hub()
        kind = _check_hub_backbone(hub_backbone, keras_hub)
        check_positive_int("num_classes", num_classes)
        if kind == "pyramid":
            available = list(hub_backbone.pyramid_outputs)
            if feature == "last":
                levels = available[-1:]  # keras-hub lists the levels from shallow to deep
            elif (
                isinstance(feature, (list, tuple))
                and feature
                and all(isinstance(level, str) and level in available for level in feature)
            ):
                levels = list(feature)
            else:
                raise ValueError(
                    f'`feature` must be "last" or a non-empty list of the pyramid levels '
                    f"{available}. Found feature={feature!r}"
                )
        elif feature != "last":
            raise ValueError(
                '`feature` must be "last" for a token backbone: its tokens make one grid. '
                f"Found feature={feature!r}"
            )
        height, width, channels = _image_shape(hub_backbone, image_size)
        policy = hub_backbone.dtype_policy if dtype is None else dtype_policy(dtype)

        # === Functional Model ===
        images = keras.Input(
            shape=(height, width, channels), name="images", dtype=policy.compute_dtype
        )
        if kind == "pyramid":
            extractor = keras.Model(
                hub_backbone.inputs[0],
                {"output": hub_backbone.outputs[0], "levels": hub_backbone.pyramid_outputs},
                name="pyramid",
            )
            extractor.dtype_policy = hub_backbone.dtype_policy
            outputs = extractor(images)
            feature_maps = [outputs["levels"][level] for level in levels]
            final = outputs["output"]
            if len(final.shape) != 4:  # a backbone whose output is not a map: pool the deepest
                final = outputs["levels"][available[-1]]
            x = layers.GlobalAveragePooling2D(name="average_pool", dtype=policy)(final)
            for level, feature_map in zip(levels, feature_maps):
                if min(feature_map.shape[1:3]) < 2:
                    raise ValueError(
                        f"`image_size` is too small: pyramid level {level!r} would be "
                        f"{feature_map.shape[1]}x{feature_map.shape[2]}, and DRLoc needs at least "
                        f"2x2. Found image_size={image_size!r}"
                    )
        else:
            patch_height, patch_width = _pair(hub_backbone.patch_size)
            rows, cols = height // patch_height, width // patch_width
            tokens = hub_backbone(images)
            num_tokens, dim = tokens.shape[1], tokens.shape[2]
            num_prefix = num_tokens - rows * cols  # the class token, if there is one
            if num_prefix not in (0, 1) or min(rows, cols) < 2:
                raise ValueError(
                    "`hub_backbone` must output one token per patch of a grid at least 2x2, "
                    f"after at most one class token. Found {num_tokens} tokens for a {rows}x{cols} "
                    f"grid (image {height}x{width}, patch {patch_height}x{patch_width})"
                )
            grid = layers.Reshape((rows, cols, dim), name="token_grid", dtype=policy)(
                tokens[:, num_prefix:]
            )
            feature_maps = [grid]
            if num_prefix:
                x = tokens[:, 0]
            else:
                x = layers.GlobalAveragePooling1D(name="average_pool", dtype=policy)(tokens)
        logits = layers.Dense(num_classes, name="classifier", dtype=policy)(x)
        outputs = {"logits": logits, "feature_maps": feature_maps}
        super().__init__(images, outputs, name=name, dtype=policy, trainable=trainable)

        # === Config ===
        self.hub_backbone = hub_backbone
        self.num_classes = num_classes
        self.feature = feature if feature == "last" else list(feature)
        self.image_size = image_size

    def get_config(self):
        return {
            **super().get_config(),
            "hub_backbone": keras.saving.serialize_keras_object(self.hub_backbone),
            "num_classes": self.num_classes,
            "feature": self.feature,
            "image_size": self.image_size,
        }

    @classmethod
    def from_config(cls, config):
        import_keras_hub()  # registers the keras-hub classes that the config names
        config = dict(config)
        config["hub_backbone"] = keras.saving.deserialize_keras_object(config["hub_backbone"])
        return cls(**config)
