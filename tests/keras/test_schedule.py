"""The training program's learning-rate schedule and optimizer (drloc_keras.recipe): the
authors' warm-up and cosine values, and the gradients clipped to a global norm."""

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


def _values(schedule, steps):
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in range(steps)])


def test_the_schedule_warms_up_from_the_warmup_lr_peaks_at_lr_and_ends_at_the_min_lr():
    schedule = training.make_schedule(1e-3, steps_per_epoch=10, epochs=10, warmup_epochs=2,
                                      warmup_lr=1e-6, min_lr=1e-5)
    values = _values(schedule, 110)
    assert values[0] == pytest.approx(1e-6)
    assert values[20] == pytest.approx(1e-3) and values.max() == pytest.approx(1e-3)
    assert values[100:] == pytest.approx([1e-5] * 10)  # held after the last epoch
    assert np.all(np.diff(values[:21]) > 0) and np.all(np.diff(values[20:101]) < 0)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    np.testing.assert_array_equal(_values(restored, 110), values)


def test_the_program_scales_the_warmup_and_min_lr_like_the_lr():
    from drloc_keras import options

    args = options.parse(["--epochs", "4", "--warmup-epochs", "1", "--batch-size", "256"])[0]
    values = _values(training.learning_rate_schedule(args, steps_per_epoch=10), 41)
    assert values[0] == pytest.approx(args.warmup_lr / 2)  # batch 256: half the values for batch 512
    assert values[10] == pytest.approx(args.lr / 2) and values[40] == pytest.approx(args.min_lr / 2)
    # The authors' values are the defaults.
    assert (args.lr, args.warmup_lr, args.min_lr, args.clip_grad) == (5e-4, 5e-7, 5e-6, 5.0)
    assert options.DEFAULTS["warmup_epochs"] == 20


# --- Gradient clipping --------------------------------------------------------------------

# Two images far from their targets: the mean squared error's gradient has a norm of
# thousands, far above the authors' 5.
X = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]], "float32")
Y = np.array([[1000.0, -500.0], [800.0, 300.0]], "float32")


def _adam_step_by_hand(kernel, bias, clip, lr=0.1, epsilon=1.0, beta_1=0.9, beta_2=0.999):
    """The first AdamW step (no decay) of `Dense` on `X, Y` under the mean squared error,
    from the gradient clipped to the global norm `clip` (0: not clipped), in float64."""
    kernel, bias = kernel.astype("float64"), bias.astype("float64")
    error = 2 * (X @ kernel + bias - Y) / Y.size
    grads = [X.T.astype("float64") @ error, error.sum(axis=0)]
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    if clip:
        grads = [g * min(1.0, clip / norm) for g in grads]
    step = lr * np.sqrt(1 - beta_2) / (1 - beta_1)
    updated = [w - step * ((1 - beta_1) * g) / (np.sqrt((1 - beta_2) * g ** 2) + epsilon)
               for w, g in zip((kernel, bias), grads)]
    return updated, norm


@pytest.mark.parametrize("clip", [5.0, 0.0])
def test_one_step_clips_the_global_norm_of_the_gradient(clip):
    from drloc_keras.optimizers import AdamW

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer="ones")])
    kernel, bias = (np.array(w) for w in model.get_weights())
    # A large epsilon makes Adam's first step follow the gradient's size, not only its sign.
    model.compile(optimizer=AdamW(learning_rate=0.1, weight_decay=0.0, epsilon=1.0, global_clipnorm=clip or None),
                  loss="mse")
    model.train_on_batch(X, Y)
    want, norm = _adam_step_by_hand(kernel, bias, clip)
    other, _ = _adam_step_by_hand(kernel, bias, 5.0 - clip)
    assert norm > 1000
    for got, expected, not_expected in zip(model.get_weights(), want, other):
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        assert not np.allclose(got, not_expected, rtol=1e-3)


def test_make_optimizer_clips_to_clip_grad_and_keeps_it_in_its_config():
    optimizer = training.make_optimizer(0.01, 0.05, 10, 4, 1, clip_grad=5.0)
    assert optimizer.global_clipnorm == 5.0 and optimizer.epsilon == 1e-8  # the authors' epsilon
    assert keras.optimizers.deserialize(keras.optimizers.serialize(optimizer)).global_clipnorm == 5.0
    assert training.make_optimizer(0.01, 0.05, 10, 4, 1, clip_grad=0.0).global_clipnorm is None
    with pytest.raises(ValueError, match="clip_grad"):
        training.make_optimizer(0.01, 0.05, 10, 4, 1, clip_grad=-1.0)
