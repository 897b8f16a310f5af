"""CCT backbone: the shared checks, tokenizer pooling, encoder layer, errors, size."""

import keras
import numpy as np
import pytest

from drloc_keras.backbones.cct import (
    CCTBackbone,
    CCTEncoderLayer,
    SequencePooling,
    cct,
    cct_7_3x1,
)
from tests.backbones.helpers import run_backbone_test

# Non-square on purpose; two tokenizer steps: 12x8 -> 6x4 -> 3x2.
TINY = {
    "num_classes": 5,
    "image_size": (12, 8),
    "num_layers": 2,
    "num_heads": 2,
    "embed_dim": 16,
    "tokenizer_layers": 2,
    "tokenizer_channels": 8,
}


def images(shape=(2, 12, 8, 3), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_shared_backbone_checks():
    model = run_backbone_test(
        lambda: CCTBackbone(**TINY, dropout_rate=0.1, drop_path_rate=0.2, name="tiny_cct"),
        images(),
        feature_map_shapes=[(2, 3, 2, 16)],
        fit=False,  # test_registry.py trains every registered size one DRLoc step
    )
    config = model.get_config()
    assert config["embed_dim"] == 16 and config["drop_path_rate"] == 0.2


def test_the_positional_embedding_is_initialised_with_std_0_2():
    model = CCTBackbone(**{**TINY, "image_size": (32, 32)})  # 8x8 tokens of 16: 1024 values
    layer = model.get_layer("positional_embedding")
    assert layer.stddev == 0.2
    embedding = keras.ops.convert_to_numpy(layer.embedding)
    # The authors' trunc_normal_(std=0.2) truncates at -2 and 2, 10 std away: a plain normal
    # (a normal truncated at 2 std would have std 0.88 * 0.2).
    assert 0.92 * 0.2 < embedding.std() < 1.08 * 0.2
    assert np.abs(embedding).max() <= 2.0


def numpy_max_pool(x, pool_size=3, strides=2, padding=1):
    """PyTorch's MaxPool2d: padding never wins (it is -inf)."""
    padded = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)],
                    constant_values=-np.inf)
    out_h = (x.shape[1] + 2 * padding - pool_size) // strides + 1
    out_w = (x.shape[2] + 2 * padding - pool_size) // strides + 1
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            rows = slice(i * strides, i * strides + pool_size)
            cols = slice(j * strides, j * strides + pool_size)
            out[:, i, j] = padded[:, rows, cols].max(axis=(1, 2))
    return out


def test_tokenizer_pooling_matches_pytorch_padding():
    model = CCTBackbone(**TINY)
    probe = keras.Model(
        model.input,
        [model.get_layer("tokenizer1_conv").output, model.get_layer("tokenizer1_pool").output],
    )
    conv, pooled = (keras.ops.convert_to_numpy(t) for t in probe(images()))
    assert conv.shape == (2, 12, 8, 8) and pooled.shape == (2, 6, 4, 8)
    np.testing.assert_allclose(pooled, numpy_max_pool(conv), rtol=1e-6)


def test_sequence_pooling_is_a_softmax_weighted_mean():
    tokens = images((2, 5, 4))
    layer = SequencePooling()
    got = keras.ops.convert_to_numpy(layer(tokens))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.attention_pool.weights)
    scores = tokens @ kernel + bias  # [B, N, 1]
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, (weights * tokens).sum(axis=1), rtol=1e-5, atol=1e-6)


def test_encoder_layer_normalizes_the_residual_stream():
    layer = CCTEncoderLayer(dim=8, num_heads=2)
    tokens = 3.0 + 5.0 * images((2, 6, 8))
    layer(tokens)
    last = layer.mlp.layers[-2]  # the MLP's output Dense
    last.set_weights([np.zeros(w.shape) for w in last.get_weights()])
    # With the MLP silenced, the output is LN(x + attention): every token is standardized.
    out = keras.ops.convert_to_numpy(layer(tokens, training=False))
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=-1), 1.0, atol=1e-3)


def test_too_small_input_names_the_argument():
    with pytest.raises(ValueError, match=r"image_size.*1x1.*image_size=\(2, 2\)"):
        cct_7_3x1(image_size=(2, 2))
    with pytest.raises(ValueError, match="num_heads"):
        CCTBackbone(**{**TINY, "num_heads": 3})
    with pytest.raises(ValueError, match="name.*cct_7_3x1"):
        cct("cct_14")


def test_cct_7_3x1_parameter_count_is_3_76m():
    model = cct_7_3x1(num_classes=10)
    assert model.get_layer("drloc_grid").output.shape[1:] == (16, 16, 256)
    # 3,760,139: every weight is trainable.
    assert abs(model.count_params() - 3.76e6) / 3.76e6 < 0.01
    assert model.count_params() == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
