"""Pair sampling inside compiled steps: new every step, reproducible from the seed, uniform."""

import keras
import numpy as np
from keras import ops

from drloc_keras.head import DRLocHead
from tests.keras.helpers import to_numpy
from tests.stats import independence_pvalue, uniformity_pvalue

HEIGHT, WIDTH, M = 5, 3, 64


class PairSampler(keras.Model):
    """Returns the head's freshly sampled (p, q) for each batch, inside `predict_step`,
    which runs jitted on JAX and in a `tf.function` on TensorFlow."""

    def __init__(self, seed):
        super().__init__()
        self.head = DRLocHead(sample_size=M, hidden=4, seed=seed)

    def build(self, input_shape):
        self.head.build(input_shape)

    def call(self, features):
        p, q = self.head.sample(ops.shape(features)[0])
        return ops.concatenate([p, q], axis=-1)


def _draw(seed, steps=40, batch=4):
    model = PairSampler(seed)
    features = np.zeros((steps * batch, HEIGHT, WIDTH, 2), "float32")
    out = model.predict(features, batch_size=batch, verbose=0)
    return out.reshape(steps, batch, M, 4)


def test_positions_change_between_steps_and_repeat_for_a_seed():
    first, again, other = _draw(7), _draw(7), _draw(8)
    steps = first.shape[0]
    distinct = {first[i].tobytes() for i in range(steps)}
    assert len(distinct) == steps, "two compiled steps sampled the same pairs"
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_positions_are_inside_the_grid_uniform_and_independent():
    pos = _draw(11, steps=60)
    p_rows, p_cols, q_rows, q_cols = (pos[..., i] for i in range(4))
    for rows in (p_rows, q_rows):
        assert rows.min() >= 0 and rows.max() < HEIGHT
        assert uniformity_pvalue(rows, HEIGHT) > 1e-3
    for cols in (p_cols, q_cols):
        assert cols.min() >= 0 and cols.max() < WIDTH
        assert uniformity_pvalue(cols, WIDTH) > 1e-3
    assert independence_pvalue(p_rows, q_rows, HEIGHT, HEIGHT) > 1e-3
    assert independence_pvalue(p_rows, p_cols, HEIGHT, WIDTH) > 1e-3
    assert independence_pvalue(p_cols, q_cols, WIDTH, WIDTH) > 1e-3


def test_the_head_samples_by_itself_when_no_positions_are_given():
    head = DRLocHead(sample_size=M, hidden=4, seed=3)
    features = keras.random.normal((2, HEIGHT, WIDTH, 2), seed=0)
    _, first = head(features)
    _, second = head(features)
    assert to_numpy(first).shape == (2, M, 2)
    assert not np.array_equal(to_numpy(first), to_numpy(second))
