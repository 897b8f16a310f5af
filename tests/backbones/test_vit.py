"""ViT backbone: the shared checks, where the grid is taken, errors, parameter counts."""

import keras
import numpy as np
import pytest
from keras import ops

from drloc_keras.backbones import vit
from drloc_keras.backbones.layers import ClassToken, SplitClassToken, TransformerEncoderBlock
from tests.backbones.helpers import run_backbone_test, to_numpy

# Non-square on purpose: 16x8 input, patch 4 -> a 4x2 grid.
TINY = dict(
    image_size=(16, 8),
    patch_size=4,
    embed_dim=16,
    depth=2,
    num_heads=2,
    mlp_ratio=2.0,
    drop_path_rate=0.1,
    num_classes=5,
)


def _images(batch=2, height=16, width=8, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")


@pytest.fixture(scope="module")
def tiny_model():
    return vit.ViTBackbone(**TINY)


def test_shared_backbone_checks():
    model = run_backbone_test(
        lambda: vit.ViTBackbone(**TINY),
        _images(batch=4),
        feature_map_shapes=[(4, 4, 2, 16)],
        fit=False,  # test_registry.py trains every registered size one DRLoc step
    )
    config = model.get_config()
    for key, value in TINY.items():
        assert config[key] == value


def test_grid_is_the_last_blocks_patch_tokens_before_the_final_norm(tiny_model):
    images = _images(seed=3)
    tokens = keras.Model(tiny_model.input, tiny_model.get_layer("block2").output)
    tokens = ops.convert_to_numpy(tokens(images, training=False))  # [B, 1 + 8, 16]
    grid = to_numpy(tiny_model(images, training=False))["feature_maps"][0]
    np.testing.assert_allclose(grid, tokens[:, 1:].reshape(2, 4, 2, 16), rtol=1e-6, atol=1e-6)
    # The logits read the class token alone, after the final LayerNorm.
    norm, classifier = tiny_model.get_layer("final_norm"), tiny_model.get_layer("classifier")
    logits = ops.convert_to_numpy(classifier(norm(tokens[:, 0])))
    expected = to_numpy(tiny_model(images, training=False))["logits"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_split_class_token_inverts_class_token():
    tokens = np.random.default_rng(0).normal(size=(2, 6, 4)).astype("float32")
    with_class = ClassToken()(tokens)
    class_token, grid = SplitClassToken((3, 2))(with_class)
    np.testing.assert_array_equal(ops.convert_to_numpy(grid), tokens.reshape(2, 3, 2, 4))
    assert ops.convert_to_numpy(class_token).shape == (2, 4)


def test_rates_reach_every_block():
    model = vit.ViTBackbone(**{**TINY, "dropout_rate": 0.2, "attention_dropout_rate": 0.3})
    blocks = [b for b in model.layers if isinstance(b, TransformerEncoderBlock)]
    assert model.get_layer("embedding_dropout").rate == 0.2
    np.testing.assert_allclose([b.drop_path.rate for b in blocks], [0.0, 0.1])
    for block in blocks:
        assert block.attention.attention_dropout.rate == 0.3
        assert block.attention.proj_dropout.rate == 0.2


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"image_size": 18}, "`image_size`"),  # not a multiple of 4
        ({"image_size": 4}, "`image_size`"),  # grid would be 1x1
        ({"image_size": (16, 0)}, "`image_size`"),
        ({"image_size": (16, 8, 8)}, "`image_size`"),
        ({"patch_size": 0}, "`patch_size`"),
        ({"num_heads": 3}, "`num_heads`"),
        ({"drop_path_rate": 1.0}, "`drop_path_rate`"),
        ({"num_classes": 0}, "`num_classes`"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        vit.ViTBackbone(**{**TINY, **overrides})


def test_bad_image_size_quotes_the_value():
    with pytest.raises(ValueError, match=r"image_size=18"):
        vit.ViTBackbone(**{**TINY, "image_size": 18})


def test_unknown_configuration_name_raises():
    with pytest.raises(ValueError, match="`name`.*vit_32"):
        vit.vit("vit_huge")


def test_vit_base_16_parameter_count_and_grid():
    model = vit.vit_base_16(num_classes=1000)
    # timm's vit_base_patch16_224 has 86,567,656 parameters.
    assert model.count_params() == 86_567_656
    assert abs(model.count_params() - 86.6e6) / 86.6e6 < 0.01
    assert not model.non_trainable_weights
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [(None, 14, 14, 768)]


def test_vit_32_grid():
    model = vit.vit_32(num_classes=10)
    assert model.count_params() == 2_697_610
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [(None, 8, 8, 192)]
