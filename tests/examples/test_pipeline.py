"""The input pipeline of the training program (drloc_keras.pipeline, tf.data with Keras augmentation
layers) and the recipe's input normalisation."""

import keras
import numpy as np
import pytest

from drloc_keras import pipeline, recipe


def _data(n=16, size=12, channels=3, classes=4):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, size, size, channels)).astype("uint8")
    return x, rng.integers(0, classes, n)


def _batches(ds):
    return [(np.asarray(x), np.asarray(y)) for x, y in ds]


def test_evaluation_batches_are_exact_images_and_one_hot_labels():
    x, y = _data()
    batches = _batches(pipeline.eval_dataset(x, y, 4, batch_size=5))
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert [len(b[0]) for b in batches] == [5, 5, 5, 1]  # no image dropped in evaluation
    np.testing.assert_array_equal(images, x.astype("float32"))
    np.testing.assert_array_equal(labels, np.eye(4)[y])


def test_grayscale_becomes_rgb_at_the_requested_size():
    x, y = _data(channels=1, size=28)
    (images, _), *_ = _batches(pipeline.eval_dataset(x, y, 4, 8, image_size=32))
    assert images.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_training_batches_are_shuffled_augmented_and_mixed():
    x, y = _data(n=32)
    augment = recipe.augmenter(12, randaugment=True, random_erasing=0.25, seed=0)
    ds, epoch_seeds = pipeline.train_dataset(x, y, 4, 8, augment=augment, mixers=recipe.mixers(0.8, 1.0, seed=0),
                                             seed=0)
    epoch_seeds.on_epoch_begin(0)
    batches = _batches(ds)
    assert len(batches) == 4 and all(b[0].shape == (8, 12, 12, 3) for b in batches)
    labels = np.concatenate([b[1] for b in batches])
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-5)
    assert np.any((labels > 0.01) & (labels < 0.99)), "no batch was mixed"
    images = np.concatenate([b[0] for b in batches])
    assert not any(np.array_equal(images[i], x[j]) for i in range(4) for j in range(32))


def test_random_erasing_probability_is_exact():
    erase = recipe.augmenter(16, randaugment=False, random_erasing=0.25, flip=False, seed=1)
    images = np.full((400, 16, 16, 3), 128.0, "float32")
    out = keras.ops.convert_to_numpy(erase(images, training=True))
    erased = np.mean(np.any(out != 128.0, axis=(1, 2, 3)))
    assert 0.18 < erased < 0.32, erased


def test_a_keras_cv_augmenter_works_in_the_pipeline():
    if keras.backend.backend() != "tensorflow":
        pytest.fail("this pipeline test runs under KERAS_BACKEND=tensorflow (scripts/test.sh)")
    keras_cv = pytest.importorskip("keras_cv", reason="keras-cv is part of the test extra")
    x, y = _data(n=16)
    augment = keras_cv.layers.RandAugment(value_range=(0, 255), augmentations_per_image=2, magnitude=0.5, seed=0)
    batches = _batches(pipeline.train_dataset(x, y, 4, 8, augment=augment, seed=0)[0])
    assert len(batches) == 2 and batches[0][0].shape == (8, 12, 12, 3)
    assert not np.array_equal(np.sort(np.concatenate([b[0] for b in batches]).ravel()),
                              np.sort(x.astype("float32").ravel()))


def test_channel_statistics_are_numpy_s_over_chunks_and_grey_counts_as_rgb():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 5, 4, 3), dtype=np.uint8)
    mean, variance = recipe.channel_statistics(images, chunk=8)
    as_float = images.astype("float64")
    np.testing.assert_allclose(mean, as_float.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(variance, as_float.var(axis=(0, 1, 2)), rtol=1e-9)
    grey = images[..., :1]
    mean, variance = recipe.channel_statistics(grey)
    assert mean.shape == variance.shape == (3,)
    np.testing.assert_allclose(mean, [as_float[..., 0].mean()] * 3, rtol=1e-12)
    with pytest.raises(ValueError, match="images"):
        recipe.channel_statistics(np.zeros((0, 4, 4, 3)))


def test_input_normalization_scales_each_channel_and_spares_a_constant_one():
    inputs = keras.Input((4, 4, 3))
    backbone = keras.Model(inputs, {"logits": keras.layers.Flatten()(inputs), "feature_maps": [inputs]})
    model = recipe.with_input_normalization(backbone, [10.0, 20.0, 30.0], [4.0, 0.0, 100.0])
    x = np.full((1, 4, 4, 3), [12.0, 21.0, 50.0], "float32")
    out = keras.ops.convert_to_numpy(model(x)["feature_maps"][0])
    # (12 - 10) / 2, (21 - 20) / max(sqrt(0), 1) (variance raised to 1), (50 - 30) / 10
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 1.0, 2.0], rtol=1e-6)
    assert model.input_shape == (None, 4, 4, 3)


def test_an_epoch_is_a_function_of_the_seed_and_its_number():
    """Epoch e gives the same batches whatever epochs came before it (what exact resume
    needs), and two epochs differ."""
    x, y = _data(n=32)

    def epochs(numbers):
        augment = recipe.augmenter(12, randaugment=True, random_erasing=0.5, seed=3)
        ds, epoch_seeds = pipeline.train_dataset(x, y, 4, 8, augment=augment,
                                                 mixers=recipe.mixers(0.8, 1.0, seed=3), seed=3)
        out = []
        for e in numbers:
            epoch_seeds.on_epoch_begin(e)
            out.append(np.concatenate([b[0] for b in _batches(ds)]))
        return out

    zero, one, two = epochs([0, 1, 2])
    (two_alone,) = epochs([2])
    np.testing.assert_array_equal(two_alone, two)
    assert not np.array_equal(one, two)


# === ArrayBatches: the pipeline of the JAX and PyTorch backends (no TensorFlow) ===


def test_array_batches_evaluate_every_image_once_and_pad_with_zero_weights():
    x, y = _data(n=18)
    plain = pipeline.ArrayBatches(x, y, 4, 8)
    assert len(plain) == 3 and [len(plain[i][0]) for i in range(3)] == [8, 8, 2]
    np.testing.assert_array_equal(np.concatenate([plain[i][0] for i in range(3)]), x.astype("float32"))
    np.testing.assert_array_equal(np.concatenate([plain[i][1] for i in range(3)]), np.eye(4)[y])
    with pytest.raises(IndexError):
        plain[3]
    padded = pipeline.ArrayBatches(x, y, 4, 8, pad_last_batch=True)
    weights = np.concatenate([padded[i][2] for i in range(len(padded))])
    np.testing.assert_allclose(weights, [24 / 18] * 18 + [0] * 6)
    assert all(len(padded[i][0]) == 8 for i in range(len(padded)))


def test_array_batches_train_in_the_order_of_the_seed_and_epoch_and_shard_per_process():
    x, y = _data(n=32)
    batches = pipeline.ArrayBatches(x, y, 4, 8, training=True, seed=5)
    batches.set_epoch(3)
    order = pipeline.epoch_order(32, 5, 3)
    got = np.concatenate([batches[i][0] for i in range(len(batches))])
    np.testing.assert_array_equal(got, x[order].astype("float32"))
    halves = [pipeline.ArrayBatches(x, y, 4, 8, training=True, seed=5, shard=(p, 2)) for p in range(2)]
    for half in halves:
        half.set_epoch(3)
    np.testing.assert_array_equal(np.concatenate([halves[0][1][0], halves[1][1][0]]), batches[1][0])
    with pytest.raises(ValueError, match="pad_last_batch"):
        pipeline.ArrayBatches(x, y, 4, 8, training=True, pad_last_batch=True)


def test_array_batches_augment_and_mix_the_same_way_for_an_epoch_whatever_came_before():
    x, y = _data(n=32)

    def epoch(numbers):
        augment = recipe.augmenter(12, randaugment=False, random_erasing=0.5, seed=1)
        mixers = recipe.mixers(0.8, 1.0, seed=1)
        batches = pipeline.ArrayBatches(x, y, 4, 8, training=True, augment=augment, mixers=mixers, seed=1)
        seeds = pipeline.EpochSeeds(batches.set_epoch, [augment, *mixers], 1)
        for e in numbers:
            seeds.on_epoch_begin(e)
            out = [batches[i] for i in range(len(batches))]
        return np.concatenate([b[0] for b in out]), np.concatenate([b[1] for b in out])

    (a_images, a_labels), (b_images, b_labels) = epoch([0, 1]), epoch([1])
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)
    assert np.any((a_labels > 0.01) & (a_labels < 0.99)), "no batch was mixed"
