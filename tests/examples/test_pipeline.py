"""The input pipeline of the training program (drloc_keras.pipeline: uint8 batches from
in-memory arrays, tf.data on TensorFlow, ArrayBatches elsewhere) and the recipe's input
normalisation. The augmentation itself runs in the model (tests/keras/test_augmentation.py)."""

import keras
import numpy as np
import pytest

from drloc_keras import pipeline, recipe
from drloc_keras.augmentation import Augmentation


def _data(n=16, size=12, channels=3, classes=4):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, size, size, channels)).astype("uint8")
    return x, rng.integers(0, classes, n)


def _batches(ds):
    return [(np.asarray(x), np.asarray(y)) for x, y in ds]


def test_evaluation_batches_are_exact_uint8_images_and_one_hot_labels():
    x, y = _data()
    batches = _batches(pipeline.eval_dataset(x, y, 4, batch_size=5))
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert [len(b[0]) for b in batches] == [5, 5, 5, 1]  # no image dropped in evaluation
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, np.eye(4)[y])


def test_grayscale_becomes_rgb_at_the_requested_size():
    x, y = _data(channels=1, size=28)
    (images, _), *_ = _batches(pipeline.eval_dataset(x, y, 4, 8, image_size=32))
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_float_images_that_would_need_resizing_are_refused_with_the_reason():
    x, _ = _data(size=12)
    with pytest.raises(ValueError, match="uint8"):
        pipeline.prepare_images(x.astype("float32"), 16)
    same = x.astype("float32")
    assert pipeline.prepare_images(same, 12) is same
    with pytest.raises(ValueError, match=r"\[N, H, W, 1 or 3\]"):
        pipeline.prepare_images(x[..., :2], 12)


def test_training_batches_hold_every_image_once_per_epoch_with_its_label():
    x, y = _data(n=32)
    ds, epoch_seeds = pipeline.train_dataset(x, y, 4, 8, seed=0)
    epoch_seeds.on_epoch_begin(0)
    batches = [(np.asarray(inputs["images"]), np.asarray(inputs["labels"]), np.asarray(target))
               for inputs, target in ds]
    assert len(batches) == 4 and all(b[0].shape == (8, 12, 12, 3) and b[0].dtype == np.uint8 for b in batches)
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(labels, np.concatenate([b[2] for b in batches]))
    found = [next(j for j in range(32) if np.array_equal(images[i], x[j])) for i in range(32)]
    assert sorted(found) == list(range(32)) and found != list(range(32))  # shuffled, each once
    np.testing.assert_array_equal(labels, np.eye(4)[y[found]])


def test_random_erasing_probability_is_exact():
    erase = Augmentation(randaugment=False, random_erasing=0.25, flip=False, seed=1)
    images = np.full((400, 16, 16, 3), 128.0, "float32")
    out = keras.ops.convert_to_numpy(erase(images, training=True))
    erased = np.mean(np.any(out != 128.0, axis=(1, 2, 3)))
    assert 0.18 < erased < 0.32, erased


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


def test_input_statistics_are_state_of_the_compiled_step_not_constants():
    """New statistics set after the model has compiled its predict step take effect in that
    step (they are weights it reads, so runs on other subsets share one compiled program),
    and they are saved with the model."""
    inputs = keras.Input((2, 2, 3))
    backbone = keras.Model(inputs, keras.layers.Flatten()(inputs))
    model = recipe.with_input_normalization(backbone, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    x = np.full((2, 2, 2, 3), 5.0, "float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), 5.0)
    layer = model.get_layer("input_normalization")
    assert {id(v) for v in layer.non_trainable_weights} >= {id(layer.adapt_mean), id(layer.adapt_variance)}
    layer.set_statistics([1.0, 2.0, 3.0], [4.0, 4.0, 4.0])
    expected = np.tile([2.0, 1.5, 1.0], 4)
    np.testing.assert_allclose(model.predict(x, verbose=0)[0], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="set_statistics"):
        recipe.InputNormalization(mean=[0.0], variance=[1.0])


def test_an_epoch_is_a_function_of_the_seed_and_its_number():
    """Epoch e gives the same batches and augmentation whatever epochs came before it (what
    exact resume needs), and two epochs differ."""
    x, y = _data(n=32)

    def epochs(numbers):
        augment = Augmentation(crop="padded", randaugment=True, random_erasing=0.5, mixup=0.8, cutmix=1.0, seed=3)
        ds, epoch_seeds = pipeline.train_dataset(x, y, 4, 8, seed=3)
        epoch_seeds.layers = [augment]
        out = []
        for e in numbers:
            epoch_seeds.on_epoch_begin(e)
            done = [augment(inputs, training=True) for inputs, _ in ds]
            out.append(np.concatenate([keras.ops.convert_to_numpy(d["images"]) for d in done]))
        return out

    zero, one, two = epochs([0, 1, 2])
    (two_alone,) = epochs([2])
    np.testing.assert_array_equal(two_alone, two)
    assert not np.array_equal(one, two)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data is the TensorFlow backend's pipeline")
def test_independent_streams_give_tf_data_and_array_batches_one_epoch_order():
    """A seed and an epoch give the same batches from tf.data (TensorFlow) as from
    ArrayBatches (JAX, PyTorch, streamed folders): a run resumed on another backend or
    machine sees the batches of the run it continues."""
    x, y = _data(n=30)
    ds, epoch_seeds = pipeline.train_dataset(x, y, 4, 8, seed=6)
    arrays = pipeline.ArrayBatches(x, y, 4, 8, training=True, seed=6)
    for epoch in (0, 1, 5, 0):
        epoch_seeds.on_epoch_begin(epoch)
        arrays.set_epoch(epoch)
        got = [np.asarray(inputs["images"]) for inputs, _ in ds]
        want = [keras.ops.convert_to_numpy(arrays[i][0]["images"]) for i in range(len(arrays))]
        assert len(got) == len(want) == 3
        np.testing.assert_array_equal(np.stack(got), np.stack(want))


# === ArrayBatches: the pipeline of the JAX and PyTorch backends (no TensorFlow) ===


def test_array_batches_evaluate_every_image_once_and_pad_with_zero_weights():
    x, y = _data(n=18)
    plain = pipeline.ArrayBatches(x, y, 4, 8)
    assert len(plain) == 3 and [len(plain[i][0]) for i in range(3)] == [8, 8, 2]
    got = np.concatenate([keras.ops.convert_to_numpy(plain[i][0]) for i in range(3)])
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(np.concatenate([keras.ops.convert_to_numpy(plain[i][1]) for i in range(3)]),
                                  np.eye(4)[y])
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
    got = [batches[i] for i in range(len(batches))]
    images = np.concatenate([keras.ops.convert_to_numpy(inputs["images"]) for inputs, _ in got])
    np.testing.assert_array_equal(images, x[order])
    labels = np.concatenate([keras.ops.convert_to_numpy(target) for _, target in got])
    np.testing.assert_array_equal(labels, np.eye(4)[y[order]])
    halves = [pipeline.ArrayBatches(x, y, 4, 8, training=True, seed=5, shard=(p, 2)) for p in range(2)]
    for half in halves:
        half.set_epoch(3)
    np.testing.assert_array_equal(np.concatenate([halves[0][1][0]["images"], halves[1][1][0]["images"]]),
                                  x[order[8:16]])
    with pytest.raises(ValueError, match="pad_last_batch"):
        pipeline.ArrayBatches(x, y, 4, 8, training=True, pad_last_batch=True)


def _as_numpy(batch):
    return keras.tree.map_structure(lambda v: keras.ops.convert_to_numpy(v), batch)


def test_images_streamed_from_disk_give_the_batches_of_the_same_images_in_memory(tmp_path):
    """Training and padded evaluation batches of `ImageFiles` (decoded per batch) equal those
    of the decoded array, on every backend (TensorFlow included: streamed images take the
    `ArrayBatches` pipeline there too), and a wrong size is refused."""
    from PIL import Image

    from drloc_keras import data

    x, y = _data(n=20, size=8)
    paths = []
    for i, image in enumerate(x):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    files = data.ImageFiles(paths, 8, workers=3)
    streamed, epoch_seeds = pipeline.train_dataset(files, y, 4, 6, image_size=8, seed=5)
    assert isinstance(streamed, pipeline.ArrayBatches) and len(streamed) == 3
    in_memory = pipeline.ArrayBatches(x, y, 4, 6, training=True, seed=5)
    for epoch in (0, 1):
        epoch_seeds.set_epoch(epoch)
        in_memory.set_epoch(epoch)
        for i in range(len(streamed)):
            got, want = _as_numpy(streamed[i]), _as_numpy(in_memory[i])
            np.testing.assert_array_equal(got[0]["images"], want[0]["images"])
            np.testing.assert_array_equal(got[0]["labels"], want[0]["labels"])
    evaluation = pipeline.eval_dataset(files, y, 4, 6, image_size=8, pad_last_batch=True)
    expected = pipeline.ArrayBatches(x, y, 4, 6, pad_last_batch=True)
    assert len(evaluation) == len(expected) == 4
    for i in range(len(evaluation)):
        for got, want in zip(_as_numpy(evaluation[i]), _as_numpy(expected[i])):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="decoded at"):
        pipeline.train_dataset(files, y, 4, 6, image_size=16)


def test_streamed_batches_are_refused_by_multi_worker_tensorflow_and_sharded_for_jax_processes():
    from drloc_keras import distribute, options

    x, y = _data(n=8)
    batches = pipeline.ArrayBatches(x, y, 4, 4, training=True)
    workers = distribute.Distribution(kind=distribute.MULTI_WORKER, processes=2, batch_size=4)
    with pytest.raises(options.UsageError, match="--stream-images"):
        workers.prepare_dataset(batches, 2)
    jax_processes = distribute.Distribution(kind=distribute.JAX_DATA_PARALLEL, processes=2, process_index=1,
                                            batch_size=4)
    assert jax_processes.prepare_dataset(batches, 2).shard == (1, 2)
