"""CvT backbone: the shared checks, the count-excluding pooling, errors, parameter count."""

import keras
import numpy as np
import pytest

from drloc_keras.backbones.cvt import CVT_CONFIGS, CvTBackbone, cvt, cvt_13, cvt_13_32
from drloc_keras.backbones.layers import AveragePoolingExcludingPadding
from tests.backbones.helpers import run_backbone_test

# Non-square on purpose: 24x16 -> 12x8 -> 6x4 -> 6x4, DRLoc grid 3x2.
TINY = {
    "num_classes": 5,
    "image_size": (24, 16),
    "embed_dims": (8, 16, 16),
    "num_heads": (1, 2, 2),
    "depths": (1, 1, 2),
    "patch_sizes": (3, 3, 3),
    "patch_strides": (2, 2, 1),
    "drop_path_rates": (0.0, 0.0, 0.1),
}


def images(shape=(2, 24, 16, 3), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_shared_backbone_checks():
    model = run_backbone_test(
        lambda: CvTBackbone(**TINY, dropout_rate=0.1, attention_dropout_rate=0.2, name="tiny_cvt"),
        images(),
        feature_map_shapes=[(2, 3, 2, 16)],
        fit=False,  # test_registry.py trains every registered size one DRLoc step
    )
    config = model.get_config()
    assert config["embed_dims"] == list(TINY["embed_dims"]) and config["dropout_rate"] == 0.1
    assert config["name"] == "tiny_cvt"


def numpy_average_pool_excluding_padding(x, pool_size, strides, padding):
    batch, height, width, channels = x.shape
    out_h = (height + 2 * padding - pool_size) // strides + 1
    out_w = (width + 2 * padding - pool_size) // strides + 1
    out = np.zeros((batch, out_h, out_w, channels))
    for i in range(out_h):
        for j in range(out_w):
            top, left = i * strides - padding, j * strides - padding
            rows = slice(max(top, 0), min(top + pool_size, height))
            cols = slice(max(left, 0), min(left + pool_size, width))
            out[:, i, j] = x[:, rows, cols].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("height, width", [(14, 14), (8, 8), (7, 5), (4, 6), (2, 3)])
def test_average_pooling_excludes_padding(height, width):
    x = images((2, height, width, 3), seed=height * width)
    layer = AveragePoolingExcludingPadding(3, 2, 1)
    got = keras.ops.convert_to_numpy(layer(x))
    expected = numpy_average_pool_excluding_padding(x, 3, 2, 1)
    assert got.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_corner_of_the_grid_averages_only_real_cells():
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    got = keras.ops.convert_to_numpy(AveragePoolingExcludingPadding()(x))
    # Top-left window covers rows 0-1, cols 0-1: (0 + 1 + 4 + 5) / 4, not / 9.
    assert got[0, 0, 0, 0] == pytest.approx(2.5)


def test_too_small_input_names_the_argument():
    with pytest.raises(ValueError, match=r"image_size.*2x2.*image_size=8"):
        cvt_13_32(image_size=8)
    with pytest.raises(ValueError, match="num_heads"):
        CvTBackbone(**{**TINY, "num_heads": (1, 3, 2)})
    with pytest.raises(ValueError, match="depths"):
        CvTBackbone(**{**TINY, "depths": (1, 1)})
    with pytest.raises(ValueError, match="drop_path_rates"):
        CvTBackbone(**{**TINY, "drop_path_rates": (0.0, 0.0, 1.5)})
    with pytest.raises(ValueError, match="name.*cvt_13_32"):
        cvt("cvt_7")


def test_cvt_13_32_has_a_4x4_grid_and_an_8x8_last_stage():
    model = cvt_13_32(num_classes=10)
    assert model.get_layer("stage3_block10").output.shape[1:] == (8, 8, 384)
    assert model.get_layer("drloc_grid").output.shape[1:] == (4, 4, 384)
    assert CVT_CONFIGS["cvt_13_32"]["patch_strides"] == (1, 2, 2)


def test_cvt_13_parameter_count_is_20m():
    model = cvt_13(num_classes=1000)
    assert model.get_layer("drloc_grid").output.shape[1:] == (7, 7, 384)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # 19,997,096 trainable (the paper's 20.0M); BatchNorm statistics add 25,728.
    assert abs(trainable - 20.0e6) / 20.0e6 < 0.01
    assert abs(model.count_params() - 20.0e6) / 20.0e6 < 0.01
