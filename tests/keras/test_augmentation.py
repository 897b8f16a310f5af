"""The training augmentation inside the model's step (drloc_keras.augmentation), on every
backend: drloc's RandAugment against Keras', the Augmentation layer, and DRLocModel with it."""

import keras
import numpy as np
import pytest

from drloc_keras import DRLocModel
from drloc_keras.augmentation import Augmentation, Equalization, RandAugment
from tests.keras.helpers import tiny_backbone, to_numpy


def _uint8(n=16, size=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("uint8")


def _rand_augments(seed=3):
    options = dict(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed)
    return keras.layers.RandAugment(**options), RandAugment(**options)


def test_rand_augment_equals_keras_running_only_the_drawn_operations():
    """Same seed, same draws: the outputs equal those of keras.layers.RandAugment, which
    runs all eleven operations twice. On PyTorch Keras' layer is not an oracle (its
    RandomBrightness writes into the images the later operations read); the next test
    checks the drawn operations one by one there, as everywhere."""
    x = _uint8().astype("float32")
    keras_layer, layer = _rand_augments()
    changed = 0
    for _ in range(8):
        got = to_numpy(layer(x, training=True))
        want = to_numpy(keras_layer(x, training=True))
        if keras.backend.backend() != "torch":
            np.testing.assert_allclose(got, want, atol=1e-3)
        changed += not np.allclose(got, x)
        assert got.dtype == np.float32 and got.shape == x.shape
    assert changed >= 6  # it augments (an operation may leave an image as it is)


@pytest.mark.parametrize("value_range", [(0, 255), (0, 1)])
def test_equalization_equals_keras_and_compiles(value_range):
    """drloc's Equalization (a scatter-add histogram on JAX) gives Keras' output, eagerly
    and inside a compiled function; RandAugment uses it."""
    rng = np.random.default_rng(1)
    x = _uint8(n=6, size=10).astype("float32") * (value_range[1] / 255.0)
    x[0] = x[0, :1, :1]  # a flat image: every channel in one bin
    x[1, ..., 2] = np.clip(x[1, ..., 2], 40, 60) * (value_range[1] / 255.0)  # a narrow channel
    ours = Equalization(value_range=value_range)
    theirs = keras.layers.Equalization(value_range=value_range)
    want = to_numpy(theirs(x, training=True))
    np.testing.assert_allclose(to_numpy(ours(x, training=True)), want, atol=1e-4)
    assert not np.allclose(want, x)
    if keras.backend.backend() == "jax":
        import jax

        np.testing.assert_allclose(np.asarray(jax.jit(lambda v: ours(v, training=True))(x)), want, atol=1e-4)
    layer = RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=int(rng.integers(100)))
    assert isinstance(layer.equalization, Equalization)
    assert sum(isinstance(sub, keras.layers.Equalization) for sub in layer._flatten_layers(include_self=False)) == 1


def test_rand_augment_by_hand_on_every_backend():
    """The output is the two drawn operations applied in order with the drawn parameters."""
    x = _uint8().astype("float32")
    _, layer = _rand_augments(seed=5)
    inputs = keras.ops.convert_to_tensor(x)
    for _ in range(4):
        transformation = layer.get_random_transformation(inputs, training=True)
        want = inputs
        names = list(transformation["transforms"])
        for i in to_numpy(transformation["layer_idxes"]):
            name = names[int(i)]
            given = keras.tree.map_structure(
                lambda v: keras.ops.copy(v) if hasattr(v, "shape") else v, transformation["transforms"][name])
            want = getattr(layer, name).transform_images(keras.ops.copy(want), given)
        got = layer.transform_images(inputs, transformation, training=True)
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), atol=1e-3)
        # Neither the images nor the transformation were written into.
        np.testing.assert_array_equal(to_numpy(inputs), x)
        again = layer.transform_images(inputs, transformation, training=True)
        np.testing.assert_array_equal(to_numpy(again), to_numpy(got))


def test_augmentation_mixes_images_and_labels_in_training_only():
    x = _uint8(n=32)
    labels = np.eye(4, dtype="float32")[np.arange(32) % 4]
    layer = Augmentation(randaugment=True, random_erasing=0.25, mixup=0.8, cutmix=1.0, seed=0)
    out = layer({"images": x, "labels": labels}, training=True)
    images, mixed = to_numpy(out["images"]), to_numpy(out["labels"])
    assert images.dtype == np.float32 and images.shape == x.shape
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-5)
    assert np.any((mixed > 0.01) & (mixed < 0.99)), "the batch was not mixed"
    assert not np.allclose(images, x)
    plain = layer({"images": x, "labels": labels}, training=False)
    np.testing.assert_array_equal(to_numpy(plain["images"]), x.astype("float32"))
    np.testing.assert_array_equal(to_numpy(plain["labels"]), labels)
    # Images alone: per-image augmentation, nothing to mix.
    alone = to_numpy(layer(x, training=True))
    assert alone.shape == x.shape and not np.allclose(alone, x)


def test_augmentation_is_a_function_of_its_generator_states():
    x = _uint8(n=16)
    labels = np.eye(4, dtype="float32")[np.arange(16) % 4]
    layer = Augmentation(mixup=0.8, cutmix=1.0, seed=1)
    generators = [g for sub in layer._flatten_layers() for g in getattr(sub, "_seed_generators", [])]
    saved = [to_numpy(g.state) for g in generators]
    first = to_numpy(layer({"images": x, "labels": labels}, training=True)["images"])
    second = to_numpy(layer({"images": x, "labels": labels}, training=True)["images"])
    for g, state in zip(generators, saved):
        g.state.assign(state)
    np.testing.assert_array_equal(to_numpy(layer({"images": x, "labels": labels}, training=True)["images"]), first)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("name,value,allowed", [
    ("random_erasing", 1.5, r"\[0, 1\]"), ("mixup", -1, ">= 0"), ("cutmix", "1", ">= 0"),
    ("flip", 1, "True or False"), ("seed", 1.5, "int or None"),
])
def test_augmentation_refuses_bad_settings_by_name(name, value, allowed):
    with pytest.raises(ValueError, match=f"`{name}`.*{allowed}"):
        Augmentation(**{name: value})


def _model(seed=0, **augment):
    keras.utils.set_random_seed(seed)
    model = DRLocModel(tiny_backbone(image_size=12), lam=0.1, sample_size=4, hidden=8, seed=seed,
                       augmentation=Augmentation(seed=seed, **augment))
    model.compile(optimizer="adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    return model


def test_the_model_augments_in_training_and_not_at_inference(tmp_path):
    x = _uint8(n=16)
    labels = np.eye(4, dtype="float32")[np.arange(16) % 4]
    model = _model(mixup=0.8, cutmix=1.0)
    # uint8 images are cast; inference is the backbone alone, no augmentation.
    np.testing.assert_allclose(to_numpy(model(x, training=False)),
                               to_numpy(model.backbone(x.astype("float32"))["logits"]), atol=1e-5)
    out = model({"images": x, "labels": labels}, training=True)
    assert set(out) == {"logits", "drloc_loss", "labels"}
    assert np.any((to_numpy(out["labels"]) > 0.01) & (to_numpy(out["labels"]) < 0.99))
    history = model.fit({"images": x, "labels": labels}, labels, batch_size=8, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"])) and "drloc_loss" in history.history
    if keras.backend.backend() == "jax":
        assert model.jit_compile  # the whole step is compiled, augmentation included
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.augmentation, Augmentation)
    assert loaded.augmentation.get_config() == model.augmentation.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_mixed_labels_are_the_targets_of_the_loss():
    """With a mixer the loss is taken against the labels the model mixed, not those given:
    a model whose logits are constant has the cross-entropy of the mixed labels."""
    x = _uint8(n=8)
    given = np.eye(4, dtype="float32")[np.zeros(8, int)]
    model = _model(flip=False, randaugment=False, random_erasing=0.0, mixup=0.8)
    out = model({"images": x, "labels": np.eye(4, dtype="float32")[np.arange(8) % 4]}, training=True)
    loss = to_numpy(model.compute_loss(y=given, y_pred={**out, "drloc_loss": out["drloc_loss"] * 0}))
    logits = to_numpy(out["logits"]).astype("float64")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    want = -(to_numpy(out["labels"]) * log_p).sum(axis=1).mean()
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert not np.isclose(want, -(given * log_p).sum(axis=1).mean())
