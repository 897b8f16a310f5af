"""ResNet-50's `width_multiplier`: every convolution scaled, the blocks kept (the registry's
shared checks save and load the reduced widths)."""

import keras
import numpy as np
import pytest
from keras import ops

from drloc_keras.backbones import resnet


@pytest.fixture(scope="module")
def quarter():
    return resnet.resnet50_32(image_size=16, num_classes=3, width_multiplier=0.25)


def test_every_convolution_is_scaled_and_the_blocks_stay(quarter):
    trunk = quarter.get_layer("trunk")
    convolutions = [layer for layer in trunk.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) == 53  # the stem, 16 blocks of 3, and 4 shortcuts
    assert trunk.get_layer("conv1_conv").filters == 16 and trunk.get_layer("conv1_conv").kernel_size == (3, 3)
    assert trunk.get_layer("conv2_block1_0_conv").filters == 64
    assert trunk.get_layer("conv5_block3_3_conv").filters == 512
    assert "pool1_pool" not in [layer.name for layer in trunk.layers]
    out = quarter(np.zeros((2, 16, 16, 3), "float32"), training=False)
    assert tuple(ops.shape(out["feature_maps"][0])) == (2, 2, 2, 512)
    assert tuple(ops.shape(out["logits"])) == (2, 3)
    params = sum(int(np.prod(v.shape)) for v in quarter.trainable_variables)
    assert 1.0e6 < params < 2.0e6  # about 1/16 of the 23.5M of the full width


def test_the_imagenet_stem_scales_too_and_bad_multipliers_are_refused():
    half = resnet.ResNet50Backbone(image_size=64, num_classes=2, stem="imagenet", width_multiplier=0.125)
    trunk = half.get_layer("trunk")
    assert trunk.get_layer("conv1_conv").kernel_size == (7, 7) and trunk.get_layer("conv1_conv").filters == 8
    assert half.output["feature_maps"][0].shape[-1] == 256
    for bad in (0, -1, True, "wide"):
        with pytest.raises(ValueError, match="width_multiplier"):
            resnet.ResNet50Backbone(image_size=16, stem="cifar", width_multiplier=bad)
