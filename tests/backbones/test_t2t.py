"""T2T-ViT backbone: the soft split against nn.Unfold, the T2T blocks against NumPy, the shared
checks, the DRLoc grid, errors, parameter counts."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from drloc_keras.backbones import t2t
from drloc_keras.backbones.layers import AveragePoolingExcludingPadding
from tests.backbones.helpers import run_backbone_test

# Non-square on purpose: 24x16 -> 12x8 -> 6x4 -> 6x4 token grid, DRLoc grid (pooled) 3x2.
TINY = dict(
    image_size=(24, 16),
    kernel_sizes=(3, 3, 3),
    strides=(2, 2, 1),
    paddings=(1, 1, 1),
    token_dim=8,
    embed_dim=16,
    depth=2,
    num_heads=2,
    mlp_ratio=2.0,
    drop_path_rate=0.1,
    num_classes=5,
)


def _images(batch=2, height=24, width=16, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype("float32")


def _numpy(outputs):
    return keras.tree.map_structure(ops.convert_to_numpy, outputs)


@pytest.fixture(scope="module")
def tiny_model():
    return t2t.T2TViTBackbone(**TINY)


# --- the soft split ------------------------------------------------------------------------------


def numpy_unfold(x, kernel_size, stride, padding):
    """nn.Unfold by its definition, channels last: element c*k*k + di*k + dj of output cell
    (i, j) is channel c of the zero-padded input at (i*stride + di, j*stride + dj)."""
    batch, height, width, channels = x.shape
    padded = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    out_h = (height + 2 * padding - kernel_size) // stride + 1
    out_w = (width + 2 * padding - kernel_size) // stride + 1
    out = np.zeros((batch, out_h, out_w, channels * kernel_size**2), x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            for c in range(channels):
                for di in range(kernel_size):
                    for dj in range(kernel_size):
                        index = c * kernel_size**2 + di * kernel_size + dj
                        out[:, i, j, index] = padded[:, i * stride + di, j * stride + dj, c]
    return out


UNFOLDS = [
    # (height, width, channels, kernel, stride, padding)
    (12, 12, 3, 7, 4, 2),
    (9, 7, 2, 3, 2, 1),
    (8, 6, 4, 3, 1, 1),
    (5, 5, 1, 2, 2, 0),
    (6, 10, 3, 3, 3, 0),
]


@pytest.mark.parametrize("height, width, channels, kernel, stride, padding", UNFOLDS)
def test_unfold_matches_a_numpy_loop(height, width, channels, kernel, stride, padding):
    x = np.random.default_rng(height * width).normal(size=(2, height, width, channels))
    x = x.astype("float32")
    got = ops.convert_to_numpy(t2t.unfold(x, kernel, stride, padding))
    expected = numpy_unfold(x, kernel, stride, padding)
    assert got.shape == expected.shape
    assert got.shape == t2t.SoftSplit(kernel, stride, padding).compute_output_shape(x.shape)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("height, width, channels, kernel, stride, padding", UNFOLDS)
def test_unfold_matches_torch_nn_unfold(height, width, channels, kernel, stride, padding):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(height + width).normal(size=(2, height, width, channels))
    x = x.astype("float32")
    unfold = torch.nn.Unfold(kernel_size=kernel, stride=stride, padding=padding)
    expected = unfold(torch.from_numpy(x).permute(0, 3, 1, 2)).transpose(1, 2).numpy()
    got = ops.convert_to_numpy(t2t.unfold(x, kernel, stride, padding))
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_unfold_orders_patch_elements_channel_major():
    # One channel holds 0..24 and the other 100..124 on a 5x5 image; the first 3x3 patch
    # (padding 0) is channel 0's 3x3 block, then channel 1's.
    image = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    x = np.concatenate([image, image + 100], axis=-1)
    first = ops.convert_to_numpy(t2t.unfold(x, 3, 2, 0))[0, 0, 0]
    block = np.array([0, 1, 2, 5, 6, 7, 10, 11, 12], dtype="float32")
    np.testing.assert_array_equal(first, np.concatenate([block, block + 100]))


def test_sinusoid_table_matches_the_official_formula():
    length, dim = 7, 6
    expected = np.array(
        [[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(length)]
    )
    expected[:, 0::2] = np.sin(expected[:, 0::2])
    expected[:, 1::2] = np.cos(expected[:, 1::2])
    np.testing.assert_allclose(t2t.sinusoid_table(length, dim), expected, rtol=1e-6, atol=1e-6)


# --- the T2T blocks against NumPy --------------------------------------------------------------


def _layer_norm(x, norm):
    gamma, beta = (ops.convert_to_numpy(w) for w in (norm.gamma, norm.beta))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + norm.epsilon) * gamma + beta


def _dense(x, dense):
    y = x @ ops.convert_to_numpy(dense.kernel)
    return y if dense.bias is None else y + ops.convert_to_numpy(dense.bias)


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sharpen(dense, std=0.4):
    """Larger weights than the init's std 0.02, so that the attention is far from uniform and
    a wrong scale or a swapped q and k shows."""
    kernel = np.random.default_rng(7).normal(0, std, size=dense.kernel.shape)
    dense.kernel.assign(kernel.astype("float32"))


def test_token_transformer_matches_numpy():
    layer = t2t.TokenTransformer(dim=8)
    x = np.random.default_rng(0).normal(size=(2, 5, 12)).astype("float64")
    layer(x.astype("float32"))
    _sharpen(layer.qkv)
    got = ops.convert_to_numpy(layer(x.astype("float32")))
    q, k, v = np.split(_dense(_layer_norm(x, layer.norm1), layer.qkv), 3, axis=-1)
    weights = _softmax(q @ k.transpose(0, 2, 1) * 12**-0.5)  # scaled by the input width
    y = v + _dense(weights @ v, layer.proj)
    fc1, _, fc2, _ = layer.mlp.layers
    expected = y + _dense(_gelu(_dense(_layer_norm(y, layer.norm2), fc1)), fc2)
    assert got.shape == (2, 5, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_token_performer_matches_numpy():
    layer = t2t.TokenPerformer(dim=8, seed=0)
    x = np.random.default_rng(1).normal(size=(2, 5, 12)).astype("float64")
    layer(x.astype("float32"))
    _sharpen(layer.kqv)
    got = ops.convert_to_numpy(layer(x.astype("float32")))
    w = ops.convert_to_numpy(layer.random_features).astype("float64")  # [m, dim]
    m = w.shape[0]
    k, q, v = np.split(_dense(_layer_norm(x, layer.norm1), layer.kqv), 3, axis=-1)

    def phi(t):
        return np.exp(t @ w.T - (t * t).sum(-1, keepdims=True) / 2) / np.sqrt(m)

    kp, qp = phi(k), phi(q)
    y = (qp @ (kp.transpose(0, 2, 1) @ v)) / (qp @ kp.sum(1)[:, :, None] + 1e-8)
    y = v + _dense(y, layer.proj)
    fc1, fc2, _ = layer.mlp.layers
    expected = y + _dense(_gelu(_dense(_layer_norm(y, layer.norm2), fc1)), fc2)
    assert got.shape == (2, 5, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_performer_random_features_are_fixed_orthogonal_rows_of_norm_sqrt_m():
    layer = t2t.TokenPerformer(dim=8, kernel_ratio=0.5, seed=0)
    layer.build((None, 5, 12))
    w = ops.convert_to_numpy(layer.random_features)
    assert w.shape == (4, 8)
    np.testing.assert_allclose(w @ w.T, 4 * np.eye(4), atol=1e-4)
    assert [v.name for v in layer.non_trainable_weights] == ["random_features"]


# --- the backbone -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", t2t.T2T_ATTENTIONS)
def test_shared_backbone_checks(kind):
    model = run_backbone_test(
        lambda: t2t.T2TViTBackbone(**TINY, t2t_attention=kind),
        _images(),
        feature_map_shapes=[(2, 3, 2, 16)],
        # test_registry.py trains every registered size (the T2T transformer) one DRLoc step.
        fit=kind == "performer",
    )
    config = model.get_config()
    as_list = lambda v: list(v) if isinstance(v, tuple) else v
    for key, value in TINY.items():
        assert as_list(config[key]) == as_list(value)
    assert config["t2t_attention"] == kind


def test_t2t_module_grids(tiny_model):
    model = tiny_model
    shapes = {
        name: tuple(model.get_layer(name).output.shape)
        for name in ("soft_split1", "t2t_restructure1", "soft_split2", "t2t_restructure2",
                     "soft_split3", "t2t_projection")
    }
    assert shapes == {
        "soft_split1": (None, 12, 8, 27),
        "t2t_restructure1": (None, 12, 8, 8),
        "soft_split2": (None, 6, 4, 72),
        "t2t_restructure2": (None, 6, 4, 8),
        "soft_split3": (None, 6, 4, 72),
        "t2t_projection": (None, 24, 16),
    }


def test_grid_is_the_normed_patch_tokens_pooled(tiny_model):
    model = tiny_model
    images = _images(seed=2)
    tokens = keras.Model(model.input, model.get_layer("final_norm").output)
    tokens = ops.convert_to_numpy(tokens(images, training=False))  # [B, 1 + 24, 16]
    unpooled = tokens[:, 1:].reshape(2, 6, 4, 16)
    pooled = ops.convert_to_numpy(AveragePoolingExcludingPadding(3, 2, 1)(unpooled))
    grid = _numpy(model(images, training=False))["feature_maps"][0]
    np.testing.assert_allclose(grid, pooled, rtol=1e-5, atol=1e-5)
    classifier = model.get_layer("classifier")
    logits = _numpy(model(images, training=False))["logits"]
    np.testing.assert_allclose(
        ops.convert_to_numpy(classifier(tokens[:, 0])), logits, rtol=1e-5, atol=1e-5
    )


def test_unpooled_grid_and_learned_position_embedding():
    model = t2t.T2TViTBackbone(**TINY, grid_pooling=False, position_embedding="learned")
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [(None, 6, 4, 16)]
    sinusoidal = t2t.T2TViTBackbone(**TINY, grid_pooling=False)
    assert model.count_params() - sinusoidal.count_params() == (1 + 6 * 4) * 16


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"image_size": 8}, "`image_size`"),  # 8x8 -> 4x4 -> 2x2 -> 2x2: too small to pool
        ({"image_size": (24, 0)}, "`image_size`"),
        ({"image_size": "24"}, "`image_size`"),
        ({"kernel_sizes": (3, 3)}, "`kernel_sizes`"),
        ({"strides": (2, 0, 1)}, "`strides"),
        ({"paddings": (1, -1, 1)}, "`paddings`"),
        ({"num_heads": 3}, "`num_heads`"),
        ({"t2t_attention": "linformer"}, "`t2t_attention`"),
        ({"position_embedding": "rope"}, "`position_embedding`"),
        ({"drop_path_rate": 1.0}, "`drop_path_rate`"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        t2t.T2TViTBackbone(**{**TINY, **overrides})


def test_too_small_image_quotes_the_value_and_the_grid():
    with pytest.raises(ValueError, match=r"2x2.*image_size=8"):
        t2t.T2TViTBackbone(**{**TINY, "image_size": 8})
    # Unpooled, a 2x2 grid is enough.
    model = t2t.T2TViTBackbone(**{**TINY, "image_size": 8, "grid_pooling": False})
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [(None, 2, 2, 16)]


def test_unknown_configuration_name_raises():
    with pytest.raises(ValueError, match="`name`.*t2t_vit_14_32"):
        t2t.t2t("t2t_vit_24")


@pytest.mark.parametrize(
    "kind, expected", [("transformer", 21_465_422), ("performer", 21_469_902)]
)
def test_t2t_vit_14_parameter_count_and_grids(kind, expected):
    model = t2t.t2t_vit_14(num_classes=1000, t2t_attention=kind)
    # T2T-ViT-14 is published at 21.5M (official code with the Performer T2T module:
    # 21,545,550, of which 75,648 are its fixed position embedding, here a constant).
    assert model.count_params() == expected
    assert abs(model.count_params() - 21.5e6) / 21.5e6 < 0.01
    assert model.get_layer("t2t_projection").output.shape[1:] == (196, 384)
    assert model.get_layer("token_grid").output[1].shape[1:] == (14, 14, 384)
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [(None, 7, 7, 384)]


def test_t2t_vit_14_32_grids():
    model = t2t.t2t_vit_14_32(num_classes=10, depth=2)  # shallower to build quickly
    assert model.get_layer("soft_split1").output.shape[1:] == (32, 32, 27)
    assert model.get_layer("token_grid").output[1].shape[1:] == (8, 8, 384)
    assert [tuple(f.shape) for f in model.output["feature_maps"]] == [(None, 4, 4, 384)]
