"""The training augmentation inside the model's step (drloc_keras.augmentation), on every
backend: the layers' behaviour, their compiled step equal to their eager one, the Augmentation
layer, and DRLocModel with it. Their equality with timm is tests/keras/test_timm_augmentation.py."""

import keras
import numpy as np
import pytest

from drloc_keras import DRLocModel, streams
from drloc_keras.augmentation import (RAND_INCREASING_OPERATIONS, Augmentation, CropFlip, MixUpCutMix, RandAugment,
                                      RandomErasing, _whole)
from tests.keras.helpers import tiny_backbone, to_numpy


def _uint8(n=16, size=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("uint8")


def _compiled(fn):
    """`fn` compiled as the training step compiles it on the current backend (eager on torch)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


@pytest.mark.parametrize("layer", ["randaugment", "crop-padded", "crop-resized", "erasing"])
def test_each_layer_compiles_to_what_it_computes_eagerly(layer):
    """A layer's compiled call on given parameters equals its eager call (XLA on JAX and
    TensorFlow) up to one grey level on under 1% of the values, and its output keeps 0-255 integer values where timm's uint8 images do."""
    x = keras.ops.convert_to_tensor(_uint8(n=8, size=16).astype("float32"))
    if layer == "randaugment":
        aug = RandAugment.from_policy(seed=1)
        params = aug.draw(8)
        params["applied"] = keras.ops.ones_like(params["applied"])  # every drawn operation runs
    elif layer.startswith("crop"):
        aug = CropFlip(crop=layer.split("-")[1], seed=1)
        params = aug.draw(8, 16, 16)
    else:
        aug = RandomErasing(probability=1.0, seed=1)
        params = aug.draw(8, 16, 16)
        params["noise"] = keras.random.normal((8, 16, 16, 3), seed=1)
    eager = to_numpy(aug.apply(x, params))
    compiled = to_numpy(_compiled(lambda images: aug.apply(images, params))(x))
    # XLA reorders float arithmetic: a value that lands on an integer in one program can land
    # just below it in the other, and the 8-bit truncation (Pillow's) then differs by one.
    off = np.abs(compiled - eager)
    assert off.max() <= 1.0 + 1e-3 and np.mean(off > 1e-3) < 0.01, (off.max(), np.mean(off > 1e-3))
    assert eager.shape == (8, 16, 16, 3) and not np.array_equal(eager, to_numpy(x))
    if layer != "erasing":  # erasing fills with noise, after timm's ToTensor
        np.testing.assert_array_equal(eager, np.round(eager))
        assert eager.min() >= 0 and eager.max() <= 255


def test_randaugment_chooses_operations_per_image_and_skips_with_probability_one_half():
    aug = RandAugment.from_policy(seed=2)
    params = {k: to_numpy(v) for k, v in aug.draw(4000).items()}
    counts = np.bincount(params["operation"].ravel(), minlength=len(RAND_INCREASING_OPERATIONS))
    assert counts.min() > 0.8 * counts.mean()  # every operation, about equally often
    first = params["operation"][:, 0]
    assert 0.04 < np.mean(first[:-1] == first[1:]) < 0.1  # neighbours agree about 1 time in 15
    assert 0.47 < params["applied"].mean() < 0.53
    assert 0.47 < params["negate"].mean() < 0.53
    assert np.all((params["magnitude"] >= 0) & (params["magnitude"] <= 10))
    assert abs(np.median(params["magnitude"]) - 9.0) < 0.05


def test_mixing_mixes_images_and_labels_with_one_lambda_per_batch():
    x = _uint8(n=8).astype("float32")
    labels = np.eye(4, dtype="float32")[np.arange(8) % 4]
    mix = MixUpCutMix(mixup=0.8, cutmix=0.0, seed=0)
    params = mix.draw(12, 12)
    images, mixed, lam = (to_numpy(v) for v in mix.apply(x, labels, params))
    np.testing.assert_allclose(images, lam * x + (1 - lam) * x[::-1], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(mixed, lam * labels + (1 - lam) * labels[::-1], rtol=1e-6)
    cut = MixUpCutMix(mixup=0.0, cutmix=1.0, seed=0)
    params = cut.draw(12, 12)
    images, mixed, lam = (to_numpy(v) for v in cut.apply(x, labels, params))
    pasted = np.any(images != x, axis=-1) | np.all(x == x[::-1], axis=-1)
    box = (to_numpy(params["bottom"]) - to_numpy(params["top"])) * (to_numpy(params["right"]) - to_numpy(params["left"]))
    assert np.isclose(lam, 1 - box / 144.0)
    assert pasted[0].sum() <= box  # only the box changed


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
    layer = Augmentation(crop="padded", mixup=0.8, cutmix=1.0, seed=1)
    generators = streams.generators(layer)
    assert len(generators) == 4  # crop and flip, RandAugment, erasing, mixing
    saved = [to_numpy(g.state) for g in generators]
    first = to_numpy(layer({"images": x, "labels": labels}, training=True)["images"])
    second = to_numpy(layer({"images": x, "labels": labels}, training=True)["images"])
    for g, state in zip(generators, saved):
        g.state.assign(state)
    np.testing.assert_array_equal(to_numpy(layer({"images": x, "labels": labels}, training=True)["images"]), first)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("first", [7.0, -0.0, float("nan")])
def test_the_boundary_between_layers_returns_its_images_unchanged(first):
    """`_whole` (the branch boundary after each layer that stops XLA fusing a layer into the
    next) gives back its images, compiled as the step compiles it, whichever branch runs."""
    x = _uint8(n=4, size=6).astype("float32")
    x[0, 0, 0, 0] = first
    got = to_numpy(_compiled(_whole)(keras.ops.convert_to_tensor(x)))
    np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize("name,value,allowed", [
    ("random_erasing", 1.5, r"\[0, 1\]"), ("mixup", -1, ">= 0"), ("cutmix", "1", ">= 0"),
    ("flip", 1, "True or False"), ("seed", 1.5, "int or None"), ("randaugment", "rand-m9", "inc1"),
    ("randaugment", "rand-m9-x3-inc1", "unknown section"), ("crop", "center", "padded"),
    ("fill", "grey", "per channel"),
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
    assert model.augmentation.mixing is not None and model.augmentation.rand_augment is None
    out = model({"images": x, "labels": np.eye(4, dtype="float32")[np.arange(8) % 4]}, training=True)
    loss = to_numpy(model.compute_loss(y=given, y_pred={**out, "drloc_loss": out["drloc_loss"] * 0}))
    logits = to_numpy(out["logits"]).astype("float64")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    want = -(to_numpy(out["labels"]) * log_p).sum(axis=1).mean()
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert not np.isclose(want, -(given * log_p).sum(axis=1).mean())


def test_a_flip_alone_mirrors_exactly_the_images_drawn():
    x = _uint8(n=16).astype("float32")
    layer = CropFlip(crop=None, seed=4)
    params = layer.draw(16, 12, 12)
    out, flip = to_numpy(layer.apply(x, params)), to_numpy(params["flip"])
    assert 0 < flip.sum() < 16
    np.testing.assert_array_equal(out, np.where(flip[:, None, None, None], x[:, :, ::-1], x))
