"""The names the library knows, without importing Keras: backbone sizes and families, the
authors' lambda per family, the reduced study sizes, the datasets.

This module imports nothing heavier than the standard library, so that a program can list
its choices (`--help`) in a fraction of a second; `drloc_keras.backbones` and
`drloc_keras.data` read their registries from here.
"""

from drloc_keras.timm_policy import CROPS as _CROPS, RANDAUGMENT_POLICY, default_crop, parse_randaugment  # noqa: F401

# size name -> (module of drloc_keras.backbones, factory, native image size)
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

# A family name builds its 32x32 size for images up to this side, its 224 one above.
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

# The lambda schedules of `drloc_keras.schedules` and the initialisations of the DRLoc head's
# kernels (`drloc_keras.head`).
LAMBDA_SCHEDULES = ("constant", "warmup-decay")
# The learning-rate schedules after the warm-up (drloc_keras.recipe.make_schedule).
LR_SCHEDULES = ("cosine", "constant")
# The crops of --crop (timm_policy.CROPS, "none", and "auto": timm_policy.default_crop).
CROPS = ("auto", *_CROPS, "none")
HEAD_INITIALIZERS = ("glorot", "trunc_normal", "torch_default")
# How the authors' code initialises the DRLoc MLP of each family: with the rest of the model.
# Swin and T2T-ViT re-initialise every Linear layer (timm's truncated normal, std 0.02); their
# ViT, CvT (both lucidrains') and ResNet-50 (torchvision's, the MLP added after its own
# initialisation) leave it at PyTorch's default. CCT is not theirs: its authors' initialisation
# of every Linear layer is the truncated normal.
AUTHORS_HEAD_INITIALIZER = {"cvt": "torch_default", "cct": "trunc_normal", "swin": "trunc_normal",
                            "t2t": "trunc_normal", "vit": "torch_default", "resnet50": "torch_default"}
# `--head-init`: a head initializer, or "auto", the authors' for the backbone's family.
HEAD_INIT_CHOICES = ("auto",) + HEAD_INITIALIZERS

# The datasets of `drloc_keras.data.load_dataset`.
DATASET_NAMES = ("cifar10", "cifar100", "fashion_mnist", "svhn", "folder", "synthetic")

# Datasets whose class a horizontal mirror image changes: no random flips for them.
FLIP_CHANGES_CLASS = frozenset({"synthetic"})


def backbone_names():
    """Every backbone name `drloc_keras.backbones.get` accepts: the families, then the sizes."""
    return list(FAMILIES) + [size for size in SIZES if size not in FAMILIES]


def resolve(name, image_size=None):
    """The size name that a family or size `name` builds for `image_size`."""
    if name not in FAMILIES:  # a family name wins over the size of the same name (resnet50)
        if name in SIZES:
            return name
        raise ValueError(f"Unknown backbone {name!r}. Choose one of: {', '.join(backbone_names())}")
    small, large = FAMILIES[name]
    if isinstance(image_size, (tuple, list)):
        image_size = max(image_size)
    return small if image_size is not None and image_size <= SMALL_IMAGE_LIMIT else large


def family(name):
    """The family of a family or size name (`"cvt_13_32"` -> `"cvt"`)."""
    if name in FAMILIES:
        return name
    size = resolve(name)
    return next(f for f, sizes in FAMILIES.items() if size in sizes)


def default_lambda(name):
    """The authors' lambda for the family of `name`."""
    return DEFAULT_LAMBDA[family(name)]


def head_initializer(choice, name):
    """The DRLoc head's initializer of `--head-init` `choice` for backbone `name`: `choice`
    itself, or for "auto" the authors' initialisation of the head for the family of `name`."""
    return AUTHORS_HEAD_INITIALIZER[family(name)] if choice == "auto" else choice
