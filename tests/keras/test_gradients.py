"""The gradient of the DRLoc loss with respect to the feature map, against finite differences."""

import keras
import numpy as np
import pytest

import drloc_ref
from drloc_keras import losses
from drloc_keras.head import DRLocHead
from tests.keras.helpers import head_weights, record_difference, value_and_grad


def _reference_loss(features, p, q, trunk, heads, mode, use_abs, normalize):
    height, width = features.shape[1:3]
    pairs = np.concatenate([drloc_ref.gather(features, p), drloc_ref.gather(features, q)], -1)
    target = drloc_ref.relative_targets(p, q, height, width, use_abs=use_abs, normalize=normalize)
    return drloc_ref.drloc_loss(drloc_ref.head_forward(pairs, trunk, heads), target, mode=mode)


@pytest.mark.parametrize(
    "mode,use_abs,normalize,shape",
    [
        ("l1", True, False, (1, 2, 3, 2)),
        ("l1", False, True, (2, 3, 2, 3)),
        ("ce", True, False, (1, 3, 3, 2)),
        ("ce", False, False, (2, 2, 4, 1)),
        ("cbr", True, False, (1, 3, 2, 3)),
        ("cbr", False, False, (1, 2, 2, 2)),
    ],
)
def test_feature_gradient_matches_finite_differences(mode, use_abs, normalize, shape):
    rng = np.random.default_rng(sum(shape))
    batch, height, width, _ = shape
    features = rng.normal(size=shape)
    p = drloc_ref.sample_positions(rng, batch, height, width, 6)
    q = drloc_ref.sample_positions(rng, batch, height, width, 6)
    keras.utils.set_random_seed(1)
    head = DRLocHead(mode=mode, sample_size=6, hidden=8, use_abs=use_abs, normalize=normalize)
    head.build(shape)
    trunk, heads = head_weights(head)

    def keras_loss(x):
        pred, target = head(x, positions=(p, q))
        return losses.drloc_loss(pred, target, mode)

    _, grad = value_and_grad(keras_loss, features.astype("float32"))

    eps = 1e-6
    numeric = np.zeros_like(features)
    for index in np.ndindex(features.shape):
        up, down = features.copy(), features.copy()
        up[index] += eps
        down[index] -= eps
        args = (p, q, trunk, heads, mode, use_abs, normalize)
        numeric[index] = (_reference_loss(up, *args) - _reference_loss(down, *args)) / (2 * eps)
    # Some features feed no sampled pair: their gradient is exactly zero in both.
    assert np.any(numeric != 0)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4)
    record_difference("feature gradient vs finite differences", grad, numeric)
