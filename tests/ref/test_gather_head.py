"""Spec sections 3 and 5: gathering and the head equal plain loops."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import drloc_ref
from tests.ref.strategies import position_pairs


def _loop_gather(features, positions):
    batch, m, _ = positions.shape
    out = np.zeros((batch, m, features.shape[-1]), dtype=features.dtype)
    for b in range(batch):
        for i in range(m):
            row, col = positions[b, i]
            out[b, i] = features[b, row, col]
    return out


def _loop_mlp(vector, trunk, heads):
    """One pair's forward pass, one layer and one unit at a time."""
    x = [float(v) for v in vector]
    for index, (weight, bias) in enumerate(trunk):
        if index > 0:
            x = [max(v, 0.0) for v in x]
        x = [sum(x[i] * weight[i, j] for i in range(len(x))) + bias[j] for j in range(len(bias))]
    if not heads:
        return (x,)
    return tuple(
        [sum(x[i] * w[i, j] for i in range(len(x))) + b[j] for j in range(len(b))] for w, b in heads
    )


def _linear(rng, n_in, n_out):
    return rng.normal(size=(n_in, n_out)), rng.normal(size=n_out)


@given(position_pairs(), st.integers(1, 16))
def test_gather_equals_a_loop(args, channels):
    p, _, batch, height, width, _ = args
    features = np.random.default_rng(channels).normal(size=(batch, height, width, channels))
    got = drloc_ref.gather(features, p)
    np.testing.assert_array_equal(got, _loop_gather(features, p))


@given(position_pairs(max_m=8), st.integers(1, 4), st.integers(1, 6), st.booleans())
def test_head_forward_equals_a_loop(args, channels, hidden, with_heads):
    p, q, batch, height, width, m = args
    rng = np.random.default_rng(channels * 100 + hidden)
    features = rng.normal(size=(batch, height, width, channels))
    pairs = np.concatenate([drloc_ref.gather(features, p), drloc_ref.gather(features, q)], -1)
    if with_heads:
        k_rows, k_cols = drloc_ref.num_classes(height, width)
        trunk = [_linear(rng, 2 * channels, hidden), _linear(rng, hidden, hidden)]
        trunk.append(_linear(rng, hidden, hidden))
        heads = (_linear(rng, hidden, k_rows), _linear(rng, hidden, k_cols))
        got = drloc_ref.head_forward(pairs, trunk, heads)
    else:
        trunk = [_linear(rng, 2 * channels, hidden), _linear(rng, hidden, hidden)]
        trunk.append(_linear(rng, hidden, 2))
        heads = ()
        got = (drloc_ref.head_forward(pairs, trunk, heads),)
    for b in range(batch):
        for i in range(m):
            expected = _loop_mlp(pairs[b, i], trunk, heads)
            for out, exp in zip(got, expected):
                np.testing.assert_allclose(out[b, i], exp, rtol=1e-10, atol=1e-10)


def test_relu_sits_between_layers_and_not_after_the_last():
    pairs = np.array([[[1.0, -2.0]]])  # B=1, m=1, 2C=2
    # One layer: a plain affine map, negative outputs kept.
    single = [(np.eye(2), np.array([-5.0, 0.0]))]
    np.testing.assert_array_equal(drloc_ref.head_forward(pairs, single), [[[-4.0, -2.0]]])
    # Two layers: the hidden [1, -2] is clipped to [1, 0], then -1 * x gives [-1, 0].
    double = [(np.eye(2), np.zeros(2)), (-np.eye(2), np.zeros(2))]
    np.testing.assert_array_equal(drloc_ref.head_forward(pairs, double), [[[-1.0, 0.0]]])
    # Heads read the trunk output with no ReLU: identity trunk, heads copy each unit.
    heads = ((np.array([[1.0], [0.0]]), np.zeros(1)), (np.array([[0.0], [1.0]]), np.zeros(1)))
    rows, cols = drloc_ref.head_forward(pairs, single, heads)
    np.testing.assert_array_equal(rows, [[[-4.0]]])
    np.testing.assert_array_equal(cols, [[[-2.0]]])
