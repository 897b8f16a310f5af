"""Swin backbone: the shared checks, and the shifted-window machinery against brute force."""

import numpy as np
import pytest
from keras import ops

from drloc_keras.backbones import swin
from tests.backbones.helpers import run_backbone_test, to_numpy

# 32x32 input, patch 4: stages of 8x8 (windows 4, shifted by 2), 4x4 (one window, no shift)
# and 2x2 (the window shrinks to 2).
TINY = dict(
    image_size=32,
    patch_size=4,
    embed_dim=8,
    depths=(2, 2, 1),
    num_heads=(1, 2, 2),
    window_size=4,
    drop_path_rate=0.1,
    num_classes=5,
)


def _images(batch=2, height=32, width=32, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")


@pytest.fixture(scope="module")
def tiny_model():
    return swin.SwinBackbone(**TINY)


# --- the backbone -------------------------------------------------------------------------------


def test_shared_backbone_checks():
    model = run_backbone_test(
        lambda: swin.SwinBackbone(**TINY),
        _images(),
        feature_map_shapes=[(2, 8, 8, 8), (2, 4, 4, 16), (2, 2, 2, 32)],
        fit=False,  # test_registry.py trains every registered size one DRLoc step
    )
    config = model.get_config()
    for key, value in TINY.items():
        assert config[key] == (list(value) if isinstance(value, tuple) else value)


def test_stage_shapes_of_a_non_square_image():
    # Symbolic shapes only: the functional model already traced every reshape and window.
    model = swin.SwinBackbone(**{**TINY, "image_size": (32, 64)})
    assert tuple(model.output["logits"].shape) == (None, 5)
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [
        (None, 8, 16, 8),
        (None, 4, 8, 16),
        (None, 2, 4, 32),
    ]


def test_training_forward_applies_drop_path(tiny_model):
    images = _images()
    trained = to_numpy(tiny_model(images, training=True))
    assert trained["logits"].shape == (2, 5) and np.isfinite(trained["logits"]).all()
    inference = to_numpy(tiny_model(images, training=False))
    assert not np.allclose(trained["logits"], inference["logits"])


def test_dropout_rates_reach_every_block():
    # Structure only: a training forward with dropout costs ~20 s of op compilation on JAX.
    model = swin.SwinBackbone(**{**TINY, "dropout_rate": 0.2, "attention_dropout_rate": 0.3})
    blocks = [b for b in model.layers if isinstance(b, swin.SwinTransformerBlock)]
    assert model.get_layer("patch_embedding_dropout").rate == 0.2
    for block in blocks:
        assert block.attention.attention_dropout.rate == 0.3
        assert block.attention.proj_dropout.rate == 0.2
        assert block.mlp_dropout.rate == 0.2


def test_blocks_follow_the_official_window_and_shift_rule(tiny_model):
    settings = {
        block.name: (block.window_size, block.shift_size)
        for block in tiny_model.layers
        if isinstance(block, swin.SwinTransformerBlock)
    }
    assert settings == {
        "stage1_block1": (4, 0),
        "stage1_block2": (4, 2),  # 8x8 stage: shifted windows in every second block
        "stage2_block1": (4, 0),
        "stage2_block2": (4, 0),  # 4x4 stage is one window: no shift
        "stage3_block1": (2, 0),  # 2x2 stage: the window shrinks
    }


def test_drop_path_rates_rise_linearly(tiny_model):
    blocks = [b for b in tiny_model.layers if isinstance(b, swin.SwinTransformerBlock)]
    rates = [block.drop_path_rate for block in blocks]
    np.testing.assert_allclose(rates, np.linspace(0.0, 0.1, 5))


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"image_size": 30}, "`image_size`"),  # not a multiple of 4 * 2**2 = 16
        ({"image_size": 16}, "`image_size`"),  # last stage would be 1x1
        ({"image_size": (32, 40)}, "`image_size`"),
        ({"image_size": 0}, "`image_size`"),
        ({"image_size": 48, "window_size": 5}, "`window_size`"),  # 12x12 stage, window 5
        ({"patch_size": 0}, "`patch_size`"),
        ({"num_heads": (3, 2, 2)}, "`num_heads`"),  # 3 does not divide 8
        ({"depths": (2, 2)}, "`depths`"),
        ({"drop_path_rate": 1.0}, "`drop_path_rate`"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        swin.SwinBackbone(**{**TINY, **overrides})


def test_unknown_configuration_name_raises():
    with pytest.raises(ValueError, match="`name`"):
        swin.swin("swin_huge")


def test_swin_tiny_parameter_count_and_stage_shapes():
    model = swin.swin_tiny(num_classes=1000)
    # The official Swin-T (microsoft/Swin-Transformer, timm) has 28,288,354 parameters.
    assert model.count_params() == 28_288_354
    assert abs(model.count_params() - 28.3e6) / 28.3e6 < 0.01
    assert not model.non_trainable_weights  # the mask and index are constants, not weights
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [
        (None, 56, 56, 96),
        (None, 28, 28, 192),
        (None, 14, 14, 384),
        (None, 7, 7, 768),
    ]


def test_swin_tiny_32_stage_shapes():
    model = swin.swin_tiny_32(num_classes=10, depths=(2, 2, 2, 2))  # shallower to build quickly
    assert model.output["logits"].shape == (None, 10)
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [
        (None, 16, 16, 96),
        (None, 8, 8, 192),
        (None, 4, 4, 384),
        (None, 2, 2, 768),
    ]


# --- (1) the shifted-window attention mask ---------------------------------------------------


def _brute_force_mask(height, width, window_size, shift_size):
    """From region labels: after rolling up-left by s, a token came from the far border iff its
    row (column) is >= H - s (W - s); tokens attend to each other iff both labels agree."""
    windows = []
    for top in range(0, height, window_size):
        for left in range(0, width, window_size):
            tokens = [(top + r, left + c) for r in range(window_size) for c in range(window_size)]
            labels = [(i >= height - shift_size, j >= width - shift_size) for i, j in tokens]
            n = len(tokens)
            mask = np.zeros((n, n), dtype="float32")
            for a in range(n):
                for b in range(n):
                    if labels[a] != labels[b]:
                        mask[a, b] = -100.0
            windows.append(mask)
    return np.stack(windows)


@pytest.mark.parametrize(
    "height, width, window_size, shift_size", [(8, 8, 4, 2), (12, 8, 4, 1), (14, 21, 7, 3)]
)
def test_shifted_window_mask_matches_region_labels(height, width, window_size, shift_size):
    mask = swin.shifted_window_mask(height, width, window_size, shift_size)
    expected = _brute_force_mask(height, width, window_size, shift_size)
    np.testing.assert_array_equal(mask, expected)
    # Only the last window row and column are split: the others are one region.
    assert (mask[0] == 0).all() and (mask[-1] != 0).any()


def test_attention_across_regions_is_zero_in_a_forward_pass():
    block = swin.SwinTransformerBlock(dim=8, num_heads=2, window_size=4, shift_size=2)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 8)).astype("float32")
    out, weights = block(x, return_attention_scores=True)
    weights = ops.convert_to_numpy(weights)  # [B, num_windows, heads, N, N]
    assert ops.convert_to_numpy(out).shape == (2, 8, 8, 8)
    assert weights.shape == (2, 4, 2, 16, 16)
    across = np.broadcast_to((_brute_force_mask(8, 8, 4, 2) != 0)[None, :, None], weights.shape)
    assert across.any()
    assert weights[across].max() < 1e-30  # exp(-100) relative to the in-region weights
    assert weights[~across].min() > 1e-6
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_regular_windows_attend_everywhere_inside_a_window():
    block = swin.SwinTransformerBlock(dim=8, num_heads=2, window_size=4, shift_size=0)
    _, weights = block(np.ones((1, 8, 8, 8), "float32"), return_attention_scores=True)
    assert ops.convert_to_numpy(weights).min() > 1e-6


# --- (2) the relative position index ---------------------------------------------------------


@pytest.mark.parametrize("window_size", [1, 2, 4, 7])
def test_relative_position_index_matches_a_loop_over_token_pairs(window_size):
    n = window_size * window_size
    expected = np.zeros((n, n), dtype="int64")
    for query in range(n):
        for key in range(n):
            dy = query // window_size - key // window_size + window_size - 1
            dx = query % window_size - key % window_size + window_size - 1
            expected[query, key] = dy * (2 * window_size - 1) + dx
    index = swin.relative_position_index(window_size)
    np.testing.assert_array_equal(index, expected)
    assert index.min() == 0 and index.max() == (2 * window_size - 1) ** 2 - 1


def test_relative_position_bias_reads_the_table_at_the_index():
    attention = swin.WindowAttention(dim=4, num_heads=2, window_size=3)
    attention.build((None, 9, 4))
    table = attention.relative_position_bias_table.numpy()
    bias = ops.convert_to_numpy(attention.relative_position_bias())
    index = swin.relative_position_index(3)
    for head in range(2):
        np.testing.assert_array_equal(bias[head], table[index, head])


# --- (3) shift and window reshapes are exact inverses --------------------------------------------


def test_cyclic_shift_then_reverse_is_the_identity():
    x = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype("float32")
    shifted = ops.convert_to_numpy(swin.cyclic_shift(x, 3))
    np.testing.assert_array_equal(shifted, np.roll(x, (-3, -3), axis=(1, 2)))
    back = ops.convert_to_numpy(swin.reverse_cyclic_shift(shifted, 3))
    np.testing.assert_array_equal(back, x)


def test_window_partition_then_reverse_is_the_identity():
    x = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype("float32")
    windows = ops.convert_to_numpy(swin.window_partition(x, 4))
    assert windows.shape == (2 * 2 * 3, 16, 3)
    # Window k of image b is (row k // 3, column k % 3); token t is at (t // 4, t % 4) in it.
    for b, k, t in [(0, 0, 0), (0, 4, 5), (1, 5, 15), (1, 2, 7)]:
        row, col = (k // 3) * 4 + t // 4, (k % 3) * 4 + t % 4
        np.testing.assert_array_equal(windows[b * 6 + k, t], x[b, row, col])
    back = ops.convert_to_numpy(swin.window_reverse(windows, 4, 8, 12))
    np.testing.assert_array_equal(back, x)


def test_patch_merging_concatenates_in_the_official_order():
    merge = swin.PatchMerging(dim=2)
    merge.build((None, 4, 6, 2))
    x = np.random.default_rng(0).normal(size=(1, 4, 6, 2)).astype("float32")
    concatenated = np.concatenate(
        [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1
    )
    expected = ops.convert_to_numpy(merge.reduction(merge.norm(concatenated)))
    np.testing.assert_allclose(ops.convert_to_numpy(merge(x)), expected, rtol=1e-6, atol=1e-6)


def test_drop_path_drops_whole_samples_in_training_only():
    layer = swin.DropPath(0.5, seed=0)
    x = np.ones((64, 2, 2, 3), "float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x, training=False)), x)
    y = ops.convert_to_numpy(layer(x, training=True))
    per_sample = y.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()  # one decision per sample
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
