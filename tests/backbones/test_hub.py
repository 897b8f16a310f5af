"""The keras-hub adapter: pyramid and token backbones, the shared checks, dtype, errors, the
optional import.

The backbones are tiny and randomly initialised from their constructors (no presets: the
weights cannot be downloaded here). Only the tests that build one need keras-hub.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from drloc_keras.backbones import hub
from tests.backbones.helpers import check_dtype_policy, run_backbone_test, to_numpy


def _images(batch=2, height=32, width=32, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")


def _dense(layer, x):
    return x @ ops.convert_to_numpy(layer.kernel) + ops.convert_to_numpy(layer.bias)


@pytest.fixture(scope="module")
def keras_hub():
    return pytest.importorskip("keras_hub")


def _resnet(keras_hub, **overrides):
    # 32x32: the stem halves twice (8x8), then P2 8x8x64, P3 4x4x16, P4 2x2x16.
    config = dict(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16, 16],
        stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2],
        block_type="basic_block",
    )
    return keras_hub.models.ResNetBackbone(**{**config, **overrides})


def _vit(keras_hub, **overrides):
    config = dict(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    return keras_hub.models.ViTBackbone(**{**config, **overrides})


@pytest.fixture(scope="module")
def pyramid_model(keras_hub):
    return hub.KerasHubBackbone(_resnet(keras_hub), num_classes=3, image_size=32)


@pytest.fixture(scope="module")
def vit_model(keras_hub):
    return hub.KerasHubBackbone(_vit(keras_hub), num_classes=3)


# --- keras-hub is optional ---------------------------------------------------------------------


def test_the_module_imports_without_keras_hub_and_says_how_to_install_it():
    # A fresh interpreter where `import keras_hub` fails, installed or not.
    code = (
        "import sys; sys.modules['keras_hub'] = None\n"
        "from drloc_keras.backbones import hub\n"
        "try:\n"
        "    hub.KerasHubBackbone(object(), num_classes=3)\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert result.returncode == 0, result.stderr
    assert "pip install drloc[hub]" in result.stdout


def test_importing_the_module_does_not_import_keras_hub():
    code = (
        "import sys\n"
        "from drloc_keras.backbones import hub\n"
        "print('keras_hub' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_building_or_loading_without_keras_hub_raises_the_helpful_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # `import keras_hub` now fails
    with pytest.raises(ImportError, match=r"pip install drloc\[hub\]"):
        hub.import_keras_hub()
    with pytest.raises(ImportError, match=r"pip install drloc\[hub\]"):
        hub.KerasHubBackbone(object(), num_classes=3, image_size=32)
    with pytest.raises(ImportError, match=r"pip install drloc\[hub\]"):
        hub.KerasHubBackbone.from_config({"hub_backbone": {}, "num_classes": 3})


# --- a feature pyramid backbone (ResNetBackbone) -------------------------------------------------


def test_pyramid_feature_maps_default_to_the_deepest_level(pyramid_model):
    assert [tuple(f.shape) for f in pyramid_model.output["feature_maps"]] == [(None, 2, 2, 16)]
    config = pyramid_model.get_config()
    assert config["num_classes"] == 3 and config["feature"] == "last" and config["image_size"] == 32
    assert config["hub_backbone"]["class_name"] == "ResNetBackbone"
    # The hub backbone's weights are counted once, though the model holds it and its pyramid.
    assert pyramid_model.count_params() == pyramid_model.hub_backbone.count_params() + 16 * 3 + 3


def test_shared_backbone_checks_of_a_pyramid_backbone(keras_hub):
    model = run_backbone_test(
        lambda: hub.KerasHubBackbone(
            _resnet(keras_hub), num_classes=3, feature=["P3", "P4"], image_size=32
        ),
        _images(batch=4),
        feature_map_shapes=[(4, 4, 4, 16), (4, 2, 2, 16)],
    )
    assert isinstance(model.hub_backbone, keras_hub.models.ResNetBackbone)


def test_pyramid_maps_are_the_backbone_levels_and_logits_pool_the_deepest(keras_hub):
    resnet = _resnet(keras_hub)
    model = hub.KerasHubBackbone(resnet, num_classes=3, feature=["P3", "P2"], image_size=32)
    images = _images(seed=1)
    out = to_numpy(model(images, training=False))
    levels = to_numpy(keras.Model(resnet.inputs[0], resnet.pyramid_outputs)(images, training=False))
    assert [f.shape for f in out["feature_maps"]] == [(2, 4, 4, 16), (2, 8, 8, 64)]
    np.testing.assert_allclose(out["feature_maps"][0], levels["P3"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["feature_maps"][1], levels["P2"], rtol=1e-5, atol=1e-5)
    pooled = levels["P4"].mean(axis=(1, 2))
    expected = _dense(model.get_layer("classifier"), pooled)
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-4)


def test_pyramid_of_a_non_square_image(keras_hub):
    model = hub.KerasHubBackbone(
        _resnet(keras_hub), num_classes=3, feature=["P3", "P4"], image_size=(32, 48)
    )
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [
        (None, 4, 6, 16),
        (None, 2, 3, 16),
    ]


# --- a token backbone (ViTBackbone) --------------------------------------------------------------


def test_vit_forward_shapes_and_grid(vit_model, keras_hub):
    images = _images()
    out = to_numpy(vit_model(images, training=False))
    assert out["logits"].shape == (2, 3)
    assert [f.shape for f in out["feature_maps"]] == [(2, 4, 4, 16)]
    tokens = ops.convert_to_numpy(vit_model.hub_backbone(images, training=False))
    assert tokens.shape == (2, 17, 16)  # class token + 4x4 patches
    np.testing.assert_allclose(
        out["feature_maps"][0], tokens[:, 1:].reshape(2, 4, 4, 16), rtol=1e-5, atol=1e-5
    )
    expected = _dense(vit_model.get_layer("classifier"), tokens[:, 0])
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-4)


def test_vit_grid_keeps_each_patch_at_its_place(keras_hub):
    # Without encoder layers no token mixes with another: changing the pixels of patch (1, 4)
    # of a 32x48 image (patches of 8) must change grid cell (1, 4) only.
    model = hub.KerasHubBackbone(
        _vit(keras_hub, image_shape=(32, 48, 3), num_layers=0), num_classes=3
    )
    assert tuple(model.output["feature_maps"][0].shape) == (None, 4, 6, 16)
    images = _images(batch=1, height=32, width=48)
    changed = images.copy()
    changed[:, 8:16, 32:40] += 1.0
    before = to_numpy(model(images))["feature_maps"][0][0]
    after = to_numpy(model(changed))["feature_maps"][0][0]
    moved = np.abs(after - before).max(axis=-1) > 1e-6
    expected = np.zeros((4, 6), bool)
    expected[1, 4] = True
    np.testing.assert_array_equal(moved, expected)


def test_vit_without_class_token_pools_the_tokens(keras_hub):
    model = hub.KerasHubBackbone(_vit(keras_hub, use_class_token=False), num_classes=3)
    images = _images()
    out = to_numpy(model(images, training=False))
    tokens = ops.convert_to_numpy(model.hub_backbone(images, training=False))
    assert tokens.shape == (2, 16, 16)
    np.testing.assert_allclose(
        out["feature_maps"][0], tokens.reshape(2, 4, 4, 16), rtol=1e-5, atol=1e-5
    )
    expected = _dense(model.get_layer("classifier"), tokens.mean(axis=1))
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-4)


def test_shared_backbone_checks_of_a_token_backbone(keras_hub):
    model = run_backbone_test(
        lambda: hub.KerasHubBackbone(_vit(keras_hub), num_classes=3),
        _images(batch=4),
        feature_map_shapes=[(4, 4, 4, 16)],
    )
    assert isinstance(model.hub_backbone, keras_hub.models.ViTBackbone)
    config = model.get_config()
    assert config["hub_backbone"]["class_name"] == "ViTBackbone" and config["image_size"] is None


# --- dtype policies ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64")  # JAX without x64
@pytest.mark.parametrize("policy", ["float64", "mixed_bfloat16"])
def test_the_adapter_takes_the_dtype_policy_of_the_hub_backbone(keras_hub, policy):
    pyramid = hub.KerasHubBackbone(
        _resnet(keras_hub, dtype=policy), num_classes=3, feature=["P3", "P4"], image_size=32
    )
    check_dtype_policy(pyramid, policy)
    check_dtype_policy(hub.KerasHubBackbone(_vit(keras_hub, dtype=policy), num_classes=3), policy)


# --- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"image_size": None}, "`image_size`"),  # the ResNet takes any size: DRLoc needs one
        ({"image_size": 16}, "`image_size`"),  # P4 would be 1x1
        ({"image_size": (32,)}, "`image_size`"),
        ({"image_size": 32.0}, "`image_size`"),
        ({"feature": ["P9"]}, "`feature`"),
        ({"feature": []}, "`feature`"),
        ({"feature": "first"}, "`feature`"),
        ({"num_classes": 0}, "`num_classes`"),
    ],
)
def test_bad_pyramid_arguments_raise_value_error_naming_the_argument(
    keras_hub, overrides, argument
):
    kwargs = {"num_classes": 3, "image_size": 32, **overrides}
    with pytest.raises(ValueError, match=argument) as error:
        hub.KerasHubBackbone(_resnet(keras_hub), **kwargs)
    assert "Found" in str(error.value)


@pytest.mark.parametrize(
    "vit_overrides, overrides, argument",
    [
        ({}, {"image_size": 64}, "`image_size`"),  # the ViT's input is fixed at 32
        ({}, {"feature": ["P5"]}, "`feature`"),  # tokens make one grid
        ({"image_shape": (16, 16, 3), "patch_size": 16}, {}, "`hub_backbone`"),  # a 1x1 grid
    ],
)
def test_bad_token_arguments_raise_value_error_naming_the_argument(
    keras_hub, vit_overrides, overrides, argument
):
    with pytest.raises(ValueError, match=argument) as error:
        hub.KerasHubBackbone(_vit(keras_hub, **vit_overrides), **{"num_classes": 3, **overrides})
    assert "Found" in str(error.value)


def test_a_backbone_of_another_kind_is_refused(keras_hub):
    with pytest.raises(ValueError, match="`hub_backbone` must be a keras_hub.models.Backbone"):
        hub.KerasHubBackbone(keras.Sequential([keras.layers.Dense(2)]), num_classes=3)
    text = keras_hub.models.BertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=1, hidden_dim=4, intermediate_dim=8,
        max_sequence_length=4,
    )
    with pytest.raises(ValueError, match="`hub_backbone` must take one batch of images"):
        hub.KerasHubBackbone(text, num_classes=3)
