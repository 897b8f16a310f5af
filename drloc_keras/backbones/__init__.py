"""Backbones that expose their token grid for DRLoc, and a registry of their names.

Every backbone maps images `[B, H, W, 3]` to `{"logits": [B, K], "feature_maps": [...]}`
(the protocol of `drloc_keras.DRLocModel`).

    >>> from drloc_keras import backbones
    >>> backbones.names()
    >>> model = backbones.get("cvt", image_size=32, num_classes=10)   # -> cvt_13_32
    >>> model = backbones.get("swin_tiny", num_classes=100, drop_path_rate=0.1)

A family name (`cvt`, `swin`, `t2t`, `vit`, `cct`, `resnet50`) picks the size made for the
image size: the 32x32 variant up to 64 pixels, the 224 one above.
"""

import importlib

# Imported here so that every backbone class is registered with Keras' serialization once
# `drloc_keras` is imported: `keras.saving.load_model` then finds them in any process.
from drloc_keras.backbones import cct, cvt, hub, resnet, swin, t2t, vit  # noqa: F401

from drloc_keras.catalog import (  # noqa: F401  (the registry, without Keras)
    DEFAULT_LAMBDA,
    FAMILIES,
    REDUCED_ARGS,
    SIZES,
    SMALL_IMAGE_LIMIT,
    default_lambda,
    family,
    head_initializer,
    resolve,
)
from drloc_keras.catalog import backbone_names as names  # noqa: F401


def native_image_size(name, image_size=None):
    return SIZES[resolve(name, image_size)][2]


def get(name, *, image_size=None, num_classes=1000, **overrides):
    """Build a backbone by family or size name.

    Args:
        name: one of `names()`.
        image_size: input side (or `(height, width)`); defaults to the size's native one.
        num_classes: classifier outputs.
        **overrides: any constructor argument of the backbone (widths, depths, rates, `dtype`).

    Raises:
        ValueError: for an unknown name, or an argument the backbone does not take (the
            message names the size built and lists the valid arguments).
    """
    size = resolve(name, image_size)
    module_name, factory_name, native = SIZES[size]
    module = importlib.import_module(f"drloc_keras.backbones.{module_name}")
    factory = getattr(module, factory_name)
    image_size = native if image_size is None else image_size
    return factory(image_size=image_size, num_classes=num_classes, **overrides)


def drop_path_overrides(name, image_size, rate):
    """Constructor arguments that set stochastic depth `rate` for the size `name` builds."""
    size = resolve(name, image_size)
    module = SIZES[size][0]
    if module == "resnet":
        return {}
    if module == "cvt":  # CvT drops paths in its last stage only, as in the CvT-13 config
        return {"drop_path_rates": (0.0, 0.0, rate)}
    return {"drop_path_rate": rate}
