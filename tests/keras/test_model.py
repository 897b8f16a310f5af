"""DRLocModel: CE + lambda * DRLoc inside `fit`, on every backend."""

import keras
import numpy as np
import pytest

import drloc_ref
from drloc_keras import DRLocModel
from drloc_keras.losses import drloc_loss
from tests.keras.helpers import (
    BatchLogs,
    position_backbone,
    position_images,
    tiny_backbone,
    to_numpy,
)


def _images(n=16, size=8, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, size, size, 3)).astype("float32"), rng.integers(0, classes, n)


def _twins(num_classes=4):
    """Two backbones with identical weights."""
    keras.utils.set_random_seed(0)
    a = tiny_backbone(num_classes=num_classes)
    b = tiny_backbone(num_classes=num_classes)
    b.set_weights(a.get_weights())
    return a, b


@pytest.mark.parametrize("mode", ["l1", "ce", "cbr"])
def test_drloc_loss_falls_by_half_on_features_that_encode_position(mode):
    keras.utils.set_random_seed(0)
    x, y = position_images(64, grid=5)
    model = DRLocModel(position_backbone(grid=5), lam=1.0, mode=mode, sample_size=32, hidden=64, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    logs = BatchLogs()
    model.fit(x, y, batch_size=16, epochs=60, verbose=0, callbacks=[logs])  # 240 steps
    first = logs.batches[0]["drloc_loss"]
    # `drloc_loss` in the logs is the running mean of the epoch: the last epoch's mean.
    last = logs.batches[-1]["drloc_loss"]
    assert np.isfinite(last)
    assert last < 0.5 * first, (mode, first, last)


def test_the_logs_hold_every_term():
    x, y = _images()
    model = DRLocModel(tiny_backbone(), lam=0.3, sample_size=8, hidden=16, seed=0)
    model.compile(optimizer="sgd")
    logs = BatchLogs()
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[logs])
    for key in ("loss", "ce_loss", "drloc_loss", "lambda", "accuracy"):
        assert key in history.history, key
    step = logs.batches[0]
    assert step["lambda"] == pytest.approx(0.3)
    assert step["loss"] == pytest.approx(step["ce_loss"] + 0.3 * step["drloc_loss"], rel=1e-5)
    evaluation = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(evaluation) == {"loss", "accuracy"}
    # The epoch's lambda survives the validation pass that follows it.
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, validation_data=(x, y))
    assert history.history["lambda"] == [pytest.approx(0.3)]
    assert "val_lambda" not in history.history and "val_drloc_loss" not in history.history


def test_lambda_zero_trains_like_the_plain_backbone_and_samples_nothing():
    plain, wrapped = _twins()
    x, y = _images(8)
    plain_model = keras.Model(plain.input, plain.output["logits"])
    plain_model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model = DRLocModel(wrapped, lam=0.0, sample_size=8, hidden=16)
    model.compile(optimizer="sgd")
    plain_model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert "drloc_loss" not in history.history
    for a, b in zip(plain.get_weights(), wrapped.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(plain.get_weights()[0], _twins()[0].get_weights()[0]), "no update"


def test_a_zero_lambda_step_keeps_drloc_out_of_the_gradient():
    """The warm-up schedule starts at lambda = 0: the heads run but change nothing."""
    plain, wrapped = _twins()
    x, y = _images(8)
    plain_model = keras.Model(plain.input, plain.output["logits"])
    plain_model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model = DRLocModel(wrapped, lam=1.0, lam_schedule="warmup-decay", sample_size=8, hidden=16)
    model.compile(optimizer="sgd")
    heads_before = [to_numpy(v).copy() for v in model.heads[0].trainable_variables]
    plain_model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert history.history["lambda"] == [0.0]
    assert history.history["drloc_loss"][0] > 0
    for a, b in zip(plain.get_weights(), wrapped.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for before, v in zip(heads_before, model.heads[0].trainable_variables):
        np.testing.assert_array_equal(before, to_numpy(v))


def test_a_positive_lambda_changes_the_backbone_update():
    plain, wrapped = _twins()
    x, y = _images(8)
    plain_model = keras.Model(plain.input, plain.output["logits"])
    plain_model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model = DRLocModel(wrapped, lam=1.0, sample_size=8, hidden=16, seed=0)
    model.compile(optimizer="sgd")
    plain_model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    conv_kernel = 0
    assert not np.allclose(plain.get_weights()[conv_kernel], wrapped.get_weights()[conv_kernel])


def test_lambda_follows_the_schedule_step_by_step_within_one_fit():
    x, y = _images(64)
    model = DRLocModel(
        tiny_backbone(), lam=1.0, lam_schedule="warmup-decay", warmup_epochs=2,
        total_epochs=6, steps_per_epoch=1, sample_size=4, hidden=8, seed=0,
    )
    model.compile(optimizer="sgd")
    logs = BatchLogs()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[logs])  # 8 steps, one fit
    seen = [step["lambda"] for step in logs.batches]
    expected = [drloc_ref.lambda_at(step, 1.0, 2, 6) for step in range(8)]
    np.testing.assert_allclose(seen, expected, atol=1e-7)
    assert len(set(seen)) > 3


def test_fit_supplies_steps_per_epoch_to_the_schedule():
    x, y = _images(16)
    model = DRLocModel(
        tiny_backbone(), lam=0.5, lam_schedule="warmup-decay", warmup_epochs=2,
        total_epochs=4, sample_size=4, hidden=8, seed=0,
    )
    model.compile(optimizer="sgd")
    logs = BatchLogs()
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[logs])  # 2 steps per epoch
    seen = [step["lambda"] for step in logs.batches]
    expected = [drloc_ref.lambda_at(step // 2, 0.5, 2, 4) for step in range(8)]
    np.testing.assert_allclose(seen, expected, atol=1e-7)
    assert int(to_numpy(model.step_variable)) == 8


def test_multi_scale_sums_one_head_per_feature_map():
    x, y = _images()
    backbone = tiny_backbone(strides=(1, 2))  # maps 8x8 and 4x4
    model = DRLocModel(backbone, lam=1.0, feature_maps="all", sample_size=8, hidden=16, seed=0)
    assert [head.height for head in model.heads] == [8, 4]
    assert model.heads[0].trainable_variables[0] is not model.heads[1].trainable_variables[0]
    assert model.map_indices == [0, 1]
    # The model's DRLoc loss is the sum of each head's loss on the same sampled pairs.
    state = to_numpy(model.pair_sampler.state).copy()
    total = float(to_numpy(model(x[:4], training=True)["drloc_loss"]))
    model.pair_sampler.state.assign(state)  # rewind the model's pair sampler
    maps = backbone(x[:4])["feature_maps"]
    positions = model.sample_positions(maps)
    separate = sum(
        float(to_numpy(drloc_loss(*head(maps[i], positions=pq), "l1")))
        for head, i, pq in zip(model.heads, [0, 1], positions)
    )
    assert total == pytest.approx(separate, rel=1e-5)
    model.compile(optimizer="sgd")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_predict_costs_nothing_extra_and_matches_a_plain_classifier():
    plain, wrapped = _twins(num_classes=5)
    x, _ = _images(10)
    model = DRLocModel(wrapped, lam=0.5, sample_size=8, hidden=16, seed=0)
    plain_model = keras.Model(plain.input, plain.output["logits"])
    seed_state = to_numpy(model.heads[0].seed_generator.state).copy()
    got = model.predict(x, batch_size=4, verbose=0)
    expected = plain_model.predict(x, batch_size=4, verbose=0)
    assert got.shape == expected.shape == (10, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # No pair was sampled: the head's seed generator did not move.
    np.testing.assert_array_equal(seed_state, to_numpy(model.heads[0].seed_generator.state))


@pytest.mark.parametrize("mode", ["l1", "cbr"])
def test_keras_file_round_trip(tmp_path, mode):
    x, y = _images()
    model = DRLocModel(
        tiny_backbone(strides=(1, 2)), lam=0.2, lam_schedule="warmup-decay", mode=mode,
        feature_maps="all", sample_size=8, hidden=16, seed=3, warmup_epochs=1, total_epochs=5,
    )
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, DRLocModel)
    # The backbone's config may differ in generated layer names; its weights are compared below.
    strip = lambda config: {k: v for k, v in config.items() if k != "backbone"}  # noqa: E731
    assert strip(loaded.get_config()) == strip(model.get_config())
    assert type(loaded.backbone) is type(model.backbone)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert int(to_numpy(loaded.step_variable)) == 4
    # Training goes on from the saved optimizer and schedule state.
    history = loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert int(to_numpy(loaded.step_variable)) == 6


def test_one_hot_labels_and_a_user_loss():
    x, y = _images()
    model = DRLocModel(tiny_backbone(), lam=0.1, sample_size=8, hidden=16, seed=0)
    model.compile(
        optimizer="adam",
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
    )
    history = model.fit(x, keras.utils.to_categorical(y, 4), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["drloc_loss"][0])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's tf.function retraces a step that creates variables; "
                           "JAX and PyTorch build them outside the step")
@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_tensorflow_traces_the_train_step_once(source):
    import tensorflow as tf

    traces = []

    class Counting(DRLocModel):
        def train_step(self, data):  # Python runs only while tf.function traces
            traces.append(1)
            return super().train_step(data)

    x, y = _images(32)
    model = Counting(tiny_backbone(), lam=0.5, sample_size=4, seed=0)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), metrics=["accuracy"])
    if source == "arrays":
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    else:
        model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True), epochs=2,
                  shuffle=False, verbose=0)
    assert len(traces) == 1
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 8


def test_the_heads_draw_independent_positions():
    """Two heads (8x8 and 4x4 maps) over several steps: no array of one head's positions
    equals an array of the other's, even modulo the smaller grid. Heads seeded `seed` and
    `seed + 1` fail this on PyTorch, whose draw j is seeded `seed + j`: head 1's rows were
    head 0's columns mod 4 at every draw."""
    backbone = tiny_backbone(strides=(1, 2))  # maps 8x8 and 4x4
    model = DRLocModel(backbone, lam=1.0, feature_maps="all", sample_size=64, hidden=8, seed=3)
    maps = [keras.ops.zeros((8, 8, 8, 8)), keras.ops.zeros((8, 4, 4, 8))]
    for _ in range(3):
        (p0, q0), (p1, q1) = [(to_numpy(p), to_numpy(q)) for p, q in model.sample_positions(maps)]
        first = [p0[..., 0], p0[..., 1], q0[..., 0], q0[..., 1]]
        second = [p1[..., 0], p1[..., 1], q1[..., 0], q1[..., 1]]
        for a in first:
            for b in second:
                # Independent uniform draws on 4 values agree a quarter of the time.
                assert np.mean(a % 4 == b) < 0.5
        for a in first:
            for b in first:
                if a is not b:
                    assert np.mean(a == b) < 0.5
    assert p0.max() == 7 and p1.max() == 3


def test_a_training_step_advances_the_pair_sampler():
    x, y = _images(16)
    model = DRLocModel(tiny_backbone(), lam=1.0, sample_size=4, hidden=8, seed=0)
    model.compile(optimizer="sgd")
    before = to_numpy(model.pair_sampler.state).copy()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert not np.array_equal(before, to_numpy(model.pair_sampler.state))


@pytest.mark.parametrize("steps_per_execution", [2, 4])
def test_steps_per_execution_counts_every_step_of_the_schedule(steps_per_execution):
    """With several steps per compiled execution, lambda still moves step by step (the
    counter advances inside each step, not once per execution), and the run ends with the
    weights of one step per execution."""
    x, y = _images(64)

    def run(spe):
        keras.utils.set_random_seed(0)
        model = DRLocModel(
            tiny_backbone(), lam=1.0, lam_schedule="warmup-decay", warmup_epochs=2,
            total_epochs=6, steps_per_epoch=1, sample_size=4, hidden=8, seed=0,
        )
        model.compile(optimizer="sgd", steps_per_execution=spe)
        logs = BatchLogs()
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[logs], shuffle=False)
        return model, logs, history

    if keras.backend.backend() == "torch":
        # Keras' PyTorch trainer runs one step per execution; it refuses more at compile.
        with pytest.raises(ValueError, match="steps_per_execution"):
            run(steps_per_execution)
        return
    single, _, single_history = run(1)
    model, logs, history = run(steps_per_execution)
    assert int(to_numpy(model.step_variable)) == 8
    # The logs come once per execution: lambda of its last step.
    seen = [step["lambda"] for step in logs.batches]
    last_steps = range(steps_per_execution - 1, 8, steps_per_execution)
    expected = [drloc_ref.lambda_at(step, 1.0, 2, 6) for step in last_steps]
    np.testing.assert_allclose(seen, expected, atol=1e-7)
    np.testing.assert_allclose(history.history["loss"], single_history.history["loss"], rtol=1e-4)
    for a, b in zip(model.get_weights(), single.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_hidden_auto_is_twice_the_channels_up_to_512():
    backbone = tiny_backbone(width=8, strides=(1, 2))
    model = DRLocModel(backbone, lam=1.0, feature_maps="all", hidden="auto", sample_size=4, seed=0)
    assert [head.units for head in model.heads] == [16, 16]
    assert model.heads[0].trunk[0].kernel.shape == (16, 16)
    wide = DRLocModel(tiny_backbone(width=300), lam=1.0, hidden="auto", sample_size=4, seed=0)
    assert wide.heads[0].units == 512
    with pytest.raises(ValueError, match="hidden"):
        DRLocModel(tiny_backbone(), hidden="wide")
    with pytest.raises(ValueError, match="hidden"):
        DRLocModel(tiny_backbone(), hidden=0)


def test_the_authors_head_initialisation_is_a_truncated_normal_of_std_002():
    backbone = tiny_backbone(width=64)
    keras.utils.set_random_seed(0)
    model = DRLocModel(backbone, lam=1.0, head_initializer="trunc_normal", hidden=256, seed=0)
    default = DRLocModel(tiny_backbone(width=64), lam=1.0, hidden=256, seed=0)
    kernel = to_numpy(model.heads[0].trunk[1].kernel)
    # timm's trunc_normal_ truncates at -2 and 2, 100 std away: a plain normal of std 0.02
    assert kernel.std() == pytest.approx(0.02, rel=0.05)
    assert not np.any(to_numpy(model.heads[0].trunk[1].bias))
    glorot = to_numpy(default.heads[0].trunk[1].kernel)
    assert glorot.std() == pytest.approx(np.sqrt(2 / (256 + 256)), rel=0.05)
    with pytest.raises(ValueError, match="head_initializer"):
        DRLocModel(tiny_backbone(), head_initializer="normal")
