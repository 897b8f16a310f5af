"""The training program's learning-rate schedule and optimizer (drloc_keras.training)."""

import keras
import numpy as np
import pytest

from drloc_keras import recipe as training


@pytest.mark.parametrize("warmup,decay,alpha", [(5, 12, 0.0), (1, 3, 0.1)])
def test_warmup_cosine_equals_keras_cosine_decay_at_every_step(warmup, decay, alpha):
    kwargs = dict(initial_learning_rate=1e-4, decay_steps=decay, warmup_target=8e-3,
                  warmup_steps=warmup, alpha=alpha)
    ours, theirs = training.WarmupCosineDecay(**kwargs), keras.optimizers.schedules.CosineDecay(**kwargs)
    steps = range(warmup + decay + 3)  # past the end, where both hold the last value
    got = np.array([float(keras.ops.convert_to_numpy(ours(s))) for s in steps])
    want = np.array([float(keras.ops.convert_to_numpy(theirs(s))) for s in steps])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    assert got[warmup] == pytest.approx(8e-3) and got.max() == pytest.approx(8e-3)


def test_make_optimizer_warms_up_then_decays_to_zero_and_round_trips():
    optimizer = training.make_optimizer(0.01, 0.05, steps_per_epoch=10, epochs=4, warmup_epochs=1)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, training.WarmupCosineDecay)
    values = [float(keras.ops.convert_to_numpy(schedule(s))) for s in range(41)]
    assert values[0] == 0.0 and values[10] == pytest.approx(0.01) and values[40] == pytest.approx(0.0, abs=1e-12)
    assert all(a < b for a, b in zip(values[:10], values[1:11]))
    assert all(a >= b for a, b in zip(values[10:40], values[11:41]))
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored._learning_rate, training.WarmupCosineDecay)
    assert [float(keras.ops.convert_to_numpy(restored._learning_rate(s))) for s in range(41)] == values


@pytest.mark.parametrize("warmup_epochs", [0, 2])
def test_constant_schedule_warms_up_then_holds_the_rate_past_the_last_epoch(warmup_epochs):
    schedule = training.make_schedule(0.01, steps_per_epoch=10, epochs=4, warmup_epochs=warmup_epochs,
                                      schedule="constant")
    values = [float(keras.ops.convert_to_numpy(schedule(s))) for s in range(100)]
    warm = 10 * warmup_epochs
    assert values[warm:] == pytest.approx([0.01] * (100 - warm))  # also after `epochs` (40 steps)
    assert all(a < b for a, b in zip(values[:warm], values[1:warm + 1]))
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert [float(keras.ops.convert_to_numpy(restored(s))) for s in range(100)] == values


def test_make_schedule_names_the_allowed_schedules():
    with pytest.raises(ValueError, match="schedule.*cosine.*constant.*'linear'"):
        training.make_schedule(0.01, 10, 4, 1, schedule="linear")
