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

# size name -> (module, factory, native image size)
SIZES = {
    "cvt_13": ("cvt", "cvt_13", 224),
    "cvt_13_32": ("cvt", "cvt_13_32", 32),
    "cct_7_3x1": ("cct", "cct_7_3x1", 32),
    "swin_tiny": ("swin", "swin_tiny", 224),
    "swin_tiny_32": ("swin", "swin_tiny_32", 32),
    "t2t_vit_14": ("t2t", "t2t_vit_14", 224),
    "t2t_vit_14_32": ("t2t", "t2t_vit_14_32", 32),
    "vit_base_16": ("vit", "vit_base_16", 224),
    "vit_32": ("vit", "vit_32", 32),
    "resnet50": ("resnet", "resnet50", 224),
    "resnet50_32": ("resnet", "resnet50_32", 32),
}

# family -> (size for small images, size for large images)
FAMILIES = {
    "cvt": ("cvt_13_32", "cvt_13"),
    "cct": ("cct_7_3x1", "cct_7_3x1"),
    "swin": ("swin_tiny_32", "swin_tiny"),
    "t2t": ("t2t_vit_14_32", "t2t_vit_14"),
    "vit": ("vit_32", "vit_base_16"),
    "resnet50": ("resnet50_32", "resnet50"),
}

# The lambda the authors used per family (spec section 7); CCT is not in the paper and
# takes the value of the other hybrid conv-token models.
DEFAULT_LAMBDA = {"cvt": 0.1, "cct": 0.1, "swin": 0.5, "t2t": 0.1, "vit": 0.5, "resnet50": 0.5}

SMALL_IMAGE_LIMIT = 64

# Reduced sizes of each family (constructor overrides of its 32x32 size), for studies on a
# small CPU: they keep each family's design (ViT's single 8x8 token grid at 32x32, CvT's and
# Swin's stages, ResNet-50's blocks) at a fraction of the width and depth.
REDUCED_ARGS = {
    "vit": {"embed_dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0},
    "cvt": {"embed_dims": [32, 64, 128], "num_heads": [1, 2, 4], "depths": [1, 1, 2]},
    "swin": {"embed_dim": 32, "depths": [2, 2, 2], "num_heads": [1, 2, 4]},
    "t2t": {"token_dim": 32, "embed_dim": 64, "depth": 4, "num_heads": 4},
    "cct": {"num_layers": 2, "num_heads": 2, "embed_dim": 64, "tokenizer_channels": 32},
    "resnet50": {"width_multiplier": 0.125},
}


def names():
    """Every name `get` accepts: the families, then the sizes."""
    return list(FAMILIES) + [size for size in SIZES if size not in FAMILIES]


def resolve(name, image_size=None):
    """The size name that `get(name, image_size)` builds."""
    if name not in FAMILIES:  # a family name wins over the size of the same name (resnet50)
        if name in SIZES:
            return name
        raise ValueError(f"Unknown backbone {name!r}. Choose one of: {', '.join(names())}")
    small, large = FAMILIES[name]
    side = _side(image_size)
    return small if side is not None and side <= SMALL_IMAGE_LIMIT else large


def family(name):
    """The family of a family or size name (`"cvt_13_32"` -> `"cvt"`)."""
    if name in FAMILIES:
        return name
    size = resolve(name)
    return next(f for f, sizes in FAMILIES.items() if size in sizes)


def default_lambda(name):
    """The authors' lambda for the family of `name`."""
    return DEFAULT_LAMBDA[family(name)]


def native_image_size(name, image_size=None):
    return SIZES[resolve(name, image_size)][2]


def get(name, image_size=None, num_classes=1000, **overrides):
    """Build a backbone by family or size name.

    Args:
        name: one of `names()`.
        image_size: input side (or `(height, width)`); defaults to the size's native one.
        num_classes: classifier outputs.
        **overrides: any constructor argument of the backbone (widths, depths, rates).
    """
    size = resolve(name, image_size)
    module_name, factory_name, native = SIZES[size]
    module = importlib.import_module(f"drloc_keras.backbones.{module_name}")
    factory = getattr(module, factory_name)
    return factory(image_size=native if image_size is None else image_size, num_classes=num_classes, **overrides)


def _side(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, (tuple, list)):
        return max(image_size)
    return image_size


def drop_path_overrides(name, image_size, rate):
    """Constructor arguments that set stochastic depth `rate` for the size `name` builds."""
    size = resolve(name, image_size)
    module = SIZES[size][0]
    if module == "resnet":
        return {}
    if module == "cvt":  # CvT drops paths in its last stage only, as in the CvT-13 config
        return {"drop_path_rates": (0.0, 0.0, rate)}
    return {"drop_path_rate": rate}
