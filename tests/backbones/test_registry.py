"""The registry, and what every registered backbone does: the shared checks (a DRLoc step, the
`.keras` and config round trips), its dtype policy in every layer, its arguments keyword-only
and checked."""

import keras
import pytest

from drloc_keras import backbones
from drloc_keras.backbones.cct import CCTBackbone
from drloc_keras.backbones.cvt import CvTBackbone
from drloc_keras.backbones.hub import KerasHubBackbone
from drloc_keras.backbones.layers import valid_arguments
from drloc_keras.backbones.resnet import ResNet50Backbone
from drloc_keras.backbones.swin import SwinBackbone
from drloc_keras.backbones.t2t import T2TViTBackbone
from drloc_keras.backbones.vit import ViTBackbone
from tests.backbones.helpers import check_dtype_policy, images, run_backbone_test

# Small widths and inputs for each size: the architecture is the same, only the numbers shrink.
TINY = {
    "cvt_13": dict(image_size=64, embed_dims=(8, 16, 16), num_heads=(1, 2, 2), depths=(1, 1, 1)),
    "cvt_13_32": dict(image_size=16, embed_dims=(8, 16, 16), num_heads=(1, 2, 2), depths=(1, 1, 1)),
    "cct_7_3x1": dict(image_size=16, num_layers=1, num_heads=2, embed_dim=16, tokenizer_channels=8),
    "swin_tiny": dict(image_size=32, embed_dim=8, depths=(1, 1, 1), num_heads=(1, 2, 2), window_size=4),
    "swin_tiny_32": dict(image_size=16, embed_dim=8, depths=(1, 1, 1), num_heads=(1, 2, 2)),
    "t2t_vit_14": dict(image_size=48, token_dim=8, embed_dim=16, depth=1, num_heads=2),
    "t2t_vit_14_32": dict(image_size=16, token_dim=8, embed_dim=16, depth=1, num_heads=2),
    "vit_base_16": dict(image_size=32, embed_dim=16, depth=1, num_heads=2),
    "vit_32": dict(image_size=16, embed_dim=16, depth=1, num_heads=2),
    # Above 64 pixels: "resnet50" is also the family name, which picks resnet50_32 up to 64.
    "resnet50": dict(image_size=96, width_multiplier=0.125),
    "resnet50_32": dict(image_size=16, width_multiplier=0.125),
}


def test_names_hold_every_family_and_size():
    assert set(backbones.FAMILIES) <= set(backbones.names())
    assert set(backbones.SIZES) <= set(backbones.names())


@pytest.mark.parametrize(
    "name,image_size,size",
    [("cvt", 32, "cvt_13_32"), ("cvt", 224, "cvt_13"), ("cvt", None, "cvt_13"),
     ("swin", (32, 48), "swin_tiny_32"), ("swin", 96, "swin_tiny"), ("vit", 32, "vit_32"),
     ("t2t", 224, "t2t_vit_14"), ("resnet50", 32, "resnet50_32"), ("cct", 32, "cct_7_3x1"),
     ("swin_tiny", 32, "swin_tiny")],
)
def test_a_family_name_picks_the_size_for_the_image(name, image_size, size):
    assert backbones.resolve(name, image_size) == size


def test_the_authors_lambda_per_family():
    assert backbones.default_lambda("swin") == 0.5
    assert backbones.default_lambda("cvt_13_32") == 0.1
    assert backbones.default_lambda("t2t") == 0.1


def test_an_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="Unknown backbone 'vgg'. Choose one of: cvt, cct, swin"):
        backbones.get("vgg")


@pytest.mark.parametrize("size", sorted(TINY))
def test_every_registered_size_passes_the_shared_checks(size):
    side = TINY[size]["image_size"]
    model = run_backbone_test(
        lambda: backbones.get(size, num_classes=3, **TINY[size]), images((4, side, side, 3))
    )
    assert model.name == size


# --- dtype policies -------------------------------------------------------------------------


# JAX without x64 stores float64 variables as float32 (and warns); the policies are the same.
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64")
@pytest.mark.parametrize("policy", ["float64", "mixed_bfloat16"])
@pytest.mark.parametrize("family", sorted(backbones.FAMILIES))
def test_every_layer_of_every_family_takes_the_dtype_policy(family, policy):
    size = backbones.FAMILIES[family][0]
    model = backbones.get(family, num_classes=3, dtype=policy, **TINY[size])
    assert model.name == size
    check_dtype_policy(model, policy)


def test_without_a_dtype_the_layers_take_the_global_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = backbones.get("vit", num_classes=3, **TINY["vit_32"])
    finally:
        keras.config.set_dtype_policy(previous)
    check_dtype_policy(model, "mixed_bfloat16")
    # The policy is in the config (of every backbone: `Backbone.get_config`), so the model
    # rebuilds in it under any global policy.
    check_dtype_policy(type(model).from_config(model.get_config()), "mixed_bfloat16")


# --- arguments ------------------------------------------------------------------------------

BACKBONE_CLASSES = [
    CvTBackbone, CCTBackbone, SwinBackbone, T2TViTBackbone, ViTBackbone, ResNet50Backbone,
    KerasHubBackbone,
]


@pytest.mark.parametrize(
    "name, overrides, size, backbone_class, unknown",
    [
        ("swin", {"embed_dims": 8}, "swin_tiny_32", SwinBackbone, ["embed_dims"]),
        ("cvt", {"depth": 3}, "cvt_13_32", CvTBackbone, ["depth"]),
        ("t2t", {"depths": 3, "heads": 2}, "t2t_vit_14_32", T2TViTBackbone, ["depths", "heads"]),
        ("resnet50", {"width": 0.5}, "resnet50_32", ResNet50Backbone, ["width"]),
    ],
)
def test_get_refuses_an_unknown_argument_and_lists_the_valid_ones(
    name, overrides, size, backbone_class, unknown
):
    with pytest.raises(ValueError) as error:
        backbones.get(name, image_size=32, **overrides)
    message = str(error.value)
    assert f"Unknown argument(s) {unknown}" in message
    assert size in message and backbone_class.__name__ in message
    valid = valid_arguments(backbone_class)
    assert valid == sorted(valid) and "num_classes" in valid and "dtype" in valid
    assert f"Valid arguments: {valid}" in message


def test_the_refusal_of_swin_in_full():
    with pytest.raises(ValueError) as error:
        backbones.get("swin", image_size=32, embed_dims=8)
    assert str(error.value) == (
        "Unknown argument(s) ['embed_dims'] for swin_tiny_32 (SwinBackbone). "
        "Did you mean 'embed_dim' for 'embed_dims'? Valid arguments: ['attention_dropout_rate', "
        "'depths', 'drop_path_rate', 'dropout_rate', 'dtype', 'embed_dim', 'image_size', "
        "'layer_norm_epsilon', 'mlp_ratio', 'name', 'num_classes', 'num_heads', 'patch_size', "
        "'qkv_bias', 'trainable', 'window_size']"
    )


@pytest.mark.parametrize("size", sorted(backbones.SIZES))
def test_every_size_refuses_an_unknown_argument(size):
    with pytest.raises(ValueError, match=rf"\['colour'\] for {size} .*Valid arguments: \["):
        backbones.get(size, colour="red")


@pytest.mark.parametrize("backbone_class", BACKBONE_CLASSES, ids=lambda c: c.__name__)
def test_every_backbone_class_refuses_an_unknown_argument(backbone_class):
    valid = valid_arguments(backbone_class)
    assert {"name", "dtype", "trainable", "num_classes"} <= set(valid)
    first = "hub_backbone" if backbone_class is KerasHubBackbone else "image_size"
    with pytest.raises(ValueError) as error:
        backbone_class(None, colour="red", num_classes=3)
    message = str(error.value)
    assert f"Unknown argument(s) ['colour'] for {backbone_class.__name__}." in message
    assert f"Valid arguments: {valid}" in message and first in valid


@pytest.mark.parametrize("backbone_class", BACKBONE_CLASSES, ids=lambda c: c.__name__)
def test_every_backbone_class_takes_keywords_after_its_first_argument(backbone_class):
    with pytest.raises(TypeError, match="positional"):
        backbone_class(32, 10)


def test_get_takes_keywords_after_the_name():
    with pytest.raises(TypeError, match="positional"):
        backbones.get("vit", 32)
