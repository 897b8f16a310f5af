"""ResNet-50 backbone: the shared checks, both stems, the size checks, the 224 count.

The tests use tiny inputs instead of a smaller network: 16x16 with the cifar stem and 64x64 with
the imagenet stem both leave a 2x2 last stage (test_resnet_width.py shrinks the width).
"""

import numpy as np
import pytest
from keras import ops

from drloc_keras import backbones
from drloc_keras.backbones import resnet
from tests.backbones.helpers import run_backbone_test, to_numpy

TINY = dict(image_size=16, num_classes=3, stem="cifar")


def _images(batch=2, height=16, width=16, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")


@pytest.fixture(scope="module")
def tiny_model():
    return resnet.ResNet50Backbone(**TINY)


def test_shared_backbone_checks_of_the_application_itself():
    # The imagenet stem at full width is keras.applications.ResNet50 itself, nested: a 64x96
    # image leaves a 2x3 last stage. Its BatchNorm statistics train too.
    model = resnet.resnet50(image_size=(64, 96), num_classes=4)
    trunk = model.get_layer("trunk")
    assert trunk.get_layer("conv1_conv").kernel_size == (7, 7)
    assert trunk.get_layer("pool1_pool").strides == (2, 2)
    moving_means = [v for v in model.non_trainable_variables if "moving_mean" in v.path]
    before = [ops.convert_to_numpy(v).copy() for v in moving_means]
    run_backbone_test(model, _images(height=64, width=96), feature_map_shapes=[(2, 2, 3, 2048)])
    changed = [not np.array_equal(b, ops.convert_to_numpy(v)) for b, v in zip(before, moving_means)]
    assert sum(changed) > 0.9 * len(changed), f"only {sum(changed)} of {len(changed)} updated"


def test_logits_are_the_classifier_of_the_pooled_feature_map(tiny_model):
    out = to_numpy(tiny_model(_images(), training=False))
    classifier = tiny_model.get_layer("classifier")
    pooled = out["feature_maps"][0].mean(axis=(1, 2))
    kernel, bias = ops.convert_to_numpy(classifier.kernel), ops.convert_to_numpy(classifier.bias)
    expected = pooled @ kernel + bias
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-4)


def test_the_cifar_stem_is_one_3x3_stride_1_convolution_without_pooling(tiny_model):
    trunk = tiny_model.get_layer("trunk")
    names = [layer.name for layer in trunk.layers]
    assert "pool1_pool" not in names and "pool1_pad" not in names and "conv1_pad" not in names
    conv = trunk.get_layer("conv1_conv")
    assert conv.kernel_size == (3, 3) and conv.strides == (1, 1) and conv.filters == 64
    # The rest is the application's network: 16 bottleneck blocks (3 + 4 + 6 + 3).
    assert sum(name.endswith("_out") for name in names) == 16
    assert trunk.get_layer("conv3_block1_1_conv").strides == (2, 2)


@pytest.mark.parametrize(
    "stem, image_size, grid", [("imagenet", (64, 96), (2, 3)), ("cifar", (16, 24), (2, 3))]
)
def test_last_stage_of_a_non_square_image(stem, image_size, grid):
    # Symbolic shapes only.
    model = resnet.ResNet50Backbone(image_size=image_size, num_classes=2, stem=stem)
    assert tuple(model.output["feature_maps"][0].shape) == (None, *grid, 2048)


@pytest.mark.parametrize(
    "side, stem, expected",
    [(224, "imagenet", 7), (33, "imagenet", 2), (32, "imagenet", 1), (32, "cifar", 4),
     (20, "cifar", 3), (9, "cifar", 2), (8, "cifar", 1)],
)
def test_last_stage_size_rounds_every_halving_up(side, stem, expected):
    assert resnet.last_stage_size(side, stem) == expected


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"image_size": 32, "stem": "imagenet"}, "`image_size`"),  # last stage 1x1
        ({"image_size": (64, 32), "stem": "imagenet"}, "`image_size`"),
        ({"image_size": 8}, "`image_size`"),  # cifar stem: last stage 1x1
        ({"image_size": 0}, "`image_size`"),
        ({"image_size": (16,)}, "`image_size`"),
        ({"image_size": 16.0}, "`image_size`"),
        ({"stem": "tiny"}, "`stem`"),
        ({"num_classes": 0}, "`num_classes`"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument) as error:
        resnet.ResNet50Backbone(**{**TINY, **overrides})
    assert "Found" in str(error.value)


def test_too_small_an_image_gives_the_smallest_size_and_points_to_the_cifar_stem():
    with pytest.raises(ValueError, match='at least 33 .*stem="cifar"'):
        resnet.resnet50(image_size=32)
    with pytest.raises(ValueError, match="at least 9 with the 'cifar' stem"):
        resnet.resnet50_32(image_size=8)


def test_unknown_configuration_name_raises():
    with pytest.raises(ValueError, match="`name`"):
        resnet.resnet("resnet18")


def test_resnet50_parameter_count_and_feature_map():
    model = resnet.resnet50(num_classes=1000)
    # keras.applications.ResNet50 with its top; torchvision's ResNet-50 has 25,557,032, to which
    # Keras adds the 26,560 convolution biases (trainable) and the BatchNorm moving statistics.
    assert model.count_params() == 25_636_712
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 25_557_032 + 26_560
    assert abs(model.count_params() - 25_557_032) / 25_557_032 < 0.01
    assert tuple(model.output["feature_maps"][0].shape) == (None, 7, 7, 2048)
    assert model.name == "resnet50"


def test_resnet50_32_from_the_registry():
    model = backbones.get("resnet50", image_size=32, num_classes=10)
    assert isinstance(model, resnet.ResNet50Backbone) and model.name == "resnet50_32"
    assert model.stem == "cifar"
    assert tuple(model.output["logits"].shape) == (None, 10)
    assert tuple(model.output["feature_maps"][0].shape) == (None, 4, 4, 2048)
