"""Input pipelines (`tf.data`): batches of `(images float32 in [0, 255], one-hot labels)`
from NumPy arrays.

A training epoch is a function of the seed and the epoch's number alone: epoch `e` of seed
`s` shuffles the images with the stateless seed `(s, e)`, and `EpochSeeds` re-seeds the
augmentation and the batch mixers from `(s, e)` before the epoch starts. A run resumed after
epoch `e` therefore sees the batches that the run that was not stopped saw. Augmentation and
mixing run in one `tf.data` thread, in batch order (random draws taken in parallel would be
taken in an order that changes from run to run).
"""

import keras
import numpy as np


def _prepare(tf, image_size):
    def prepare(images):
        images = tf.cast(images, "float32")
        if images.shape[-1] == 1:
            images = tf.image.grayscale_to_rgb(images)
        if image_size is not None and tuple(images.shape[-3:-1]) != (image_size, image_size):
            images = tf.image.resize(images, (image_size, image_size))
        return images

    return prepare


class EpochSeeds(keras.callbacks.Callback):
    """Before epoch `e`: sets the epoch that `train_dataset` shuffles with (`set_epoch(e)`)
    and re-seeds the random generators of its augmentation layers from `(seed, e)`."""

    def __init__(self, set_epoch, layers, seed):
        super().__init__()
        self.set_epoch = set_epoch
        self.layers = [layer for layer in layers if layer is not None]
        self.seed = int(seed)

    def generators(self):
        found = []
        for top in self.layers:
            for layer in top._flatten_layers(include_self=True, recursive=True):
                if hasattr(layer, "generator"):
                    found.append(layer.generator)
                found.extend(getattr(layer, "_backend_generators", {}).values())
        return found

    def on_epoch_begin(self, epoch, logs=None):
        self.set_epoch(epoch)
        for k, generator in enumerate(self.generators()):
            # (seed, epoch, k) -> a 2-word state; the generator's own draws count up from it.
            state = np.array([(self.seed * 1_000_003 + epoch) % 2**31, k * 7919 + 1], "int64")
            generator.state.assign(state.astype(keras.backend.standardize_dtype(generator.state.dtype)))


def train_dataset(x, y, num_classes, batch_size, image_size=None, augment=None, mixers=(), seed=0):
    """`(dataset, epoch_seeds)`: one epoch of shuffled, augmented, mixed training batches
    (the remainder dropped) and the `EpochSeeds` callback that must run with it.

    On the TensorFlow backend a `tf.data` pipeline; on JAX and PyTorch an `ArrayBatches`
    (no TensorFlow needed), with the same order of images for a seed and an epoch.

    `augment` is a Keras layer applied per image (flip, RandAugment, erasing); `mixers`
    are batch mixers (MixUp, CutMix), one of them chosen per batch with the stateless seed
    `(seed, epoch, batch)` when there are two, as in the authors' timm recipe.
    """
    n = len(x)
    if keras.backend.backend() != "tensorflow":
        batches = ArrayBatches(x, y, num_classes, batch_size, image_size=image_size, training=True,
                               augment=augment, mixers=mixers, seed=seed)
        return batches, EpochSeeds(batches.set_epoch, [augment, *mixers], seed)
    import tensorflow as tf

    if n < batch_size:
        raise ValueError(f"`batch_size` ({batch_size}) is larger than the training set ({n} images)")
    epoch = tf.Variable(0, dtype="int64", trainable=False, name="epoch")
    images, labels = tf.constant(x), tf.constant(np.asarray(y).astype("int64"))
    prepare = _prepare(tf, image_size)
    seed = int(seed)

    def order(_):
        shuffled = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype="int64"), seed=tf.stack([tf.constant(seed, "int64"), epoch.read_value()])
        )
        return tf.data.Dataset.from_tensor_slices(shuffled)

    ds = tf.data.Dataset.from_tensors(0).flat_map(order)
    ds = ds.batch(batch_size, drop_remainder=True).enumerate()

    def gather(step, index):
        batch = prepare(tf.gather(images, index))
        return step, batch, tf.one_hot(tf.gather(labels, index), num_classes)

    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    mixers = list(mixers)

    def augment_and_mix(step, batch, onehot):
        if augment is not None:
            batch = augment(batch, training=True)
        if mixers:
            data = {"images": batch, "labels": onehot}
            if len(mixers) == 1:
                out = mixers[0](data, training=True)
            else:
                pick = tf.random.stateless_uniform(
                    (), seed=tf.stack([tf.constant(seed, "int64") * 65_537 + epoch.read_value(), step])
                ) < 0.5
                out = tf.cond(pick, lambda: mixers[0](data, training=True), lambda: mixers[1](data, training=True))
            batch, onehot = out["images"], out["labels"]
        return batch, onehot

    ds = ds.map(augment_and_mix)  # one thread, in order: see the module's docstring
    ds = ds.apply(tf.data.experimental.assert_cardinality(n // batch_size))
    return ds.prefetch(tf.data.AUTOTUNE), EpochSeeds(epoch.assign, [augment, *mixers], seed)


def eval_dataset(x, y, num_classes, batch_size, image_size=None, pad_last_batch=False):
    """Evaluation batches of `(x, y)`, in order, every image once.

    `pad_last_batch=True` makes every batch full, as data-parallel evaluation needs (each
    device an equal share): the last batch is filled up with copies of the first images,
    and the batches carry a third element, sample weights: 0 for the copies and
    `padded size / len(x)` for the real images. Weighted metrics (accuracy, top-k) and the
    mean loss over the padded set then equal those over `x`.
    """
    if len(x) == 0:
        raise ValueError("found an empty `x`: there is nothing to evaluate")
    if keras.backend.backend() != "tensorflow":
        return ArrayBatches(x, y, num_classes, batch_size, image_size=image_size, pad_last_batch=pad_last_batch)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y).astype("int64")))
    if pad_last_batch:
        padded = -(-len(x) // batch_size) * batch_size
        weight = tf.constant(padded / len(x), "float32")
        real = ds.map(lambda image, label: (image, label, weight))
        filler = ds.repeat().take(padded - len(x)).map(lambda image, label: (image, label, tf.constant(0.0)))
        ds = real.concatenate(filler)
    prepare = _prepare(tf, image_size)

    def finish(images, labels, *weights):
        return (prepare(images), tf.one_hot(labels, num_classes), *weights)

    ds = ds.batch(batch_size).map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_order(n, seed, epoch):
    """The order of the `n` training images in epoch `epoch` of seed `seed` (ArrayBatches)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


class ArrayBatches(keras.utils.PyDataset):
    """Batches of `(images float32 in [0, 255], one-hot labels[, weights])` gathered from
    in-memory arrays with NumPy and augmented with Keras layers on the current backend: the
    pipeline of the JAX and PyTorch backends, which needs no TensorFlow.

    Training (`training=True`): epoch `e` (`set_epoch`) takes the images in the order
    `epoch_order(len(x), seed, e)`, drops the remainder, applies `augment` per image and one
    of `mixers` per batch (chosen with the seed `(seed, e, batch)` when there are two).
    Evaluation: every image once, in order; `pad_last_batch` as `eval_dataset`. With
    `shard=(p, k)` each batch is this process's `p`-th of `k` equal slices (data-parallel
    JAX over several processes).
    """

    def __init__(self, x, y, num_classes, batch_size, image_size=None, training=False, augment=None,
                 mixers=(), seed=0, pad_last_batch=False, shard=(0, 1)):
        super().__init__(workers=1, use_multiprocessing=False)
        if training and pad_last_batch:
            raise ValueError("`pad_last_batch` is for evaluation; training batches drop the remainder")
        if training and len(x) < batch_size:
            raise ValueError(f"`batch_size` ({batch_size}) is larger than the training set ({len(x)} images)")
        self.x, self.y = x, np.asarray(y).astype("int64")
        self.num_classes, self.batch_size, self.image_size = num_classes, batch_size, image_size
        self.training, self.augment, self.mixers = training, augment, list(mixers)
        self.seed, self.pad_last_batch, self.shard = int(seed), pad_last_batch, shard
        self.padded = -(-len(x) // batch_size) * batch_size if pad_last_batch else len(x)
        self.set_epoch(0)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)
        self.order = epoch_order(len(self.x), self.seed, epoch) if self.training else None

    def __len__(self):
        if self.training:
            return len(self.x) // self.batch_size
        return -(-self.padded // self.batch_size)

    def _prepare(self, images):
        images = images.astype("float32")
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        if self.image_size is not None and images.shape[1:3] != (self.image_size, self.image_size):
            images = keras.ops.convert_to_numpy(
                keras.ops.image.resize(images, (self.image_size, self.image_size), interpolation="bilinear"))
        return images

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        start, stop = i * self.batch_size, (i + 1) * self.batch_size
        if self.training:
            index = self.order[start:stop]
        else:
            index = np.arange(start, min(stop, self.padded)) % len(self.x)
        images = self._prepare(self.x[index])
        labels = np.eye(self.num_classes, dtype="float32")[self.y[index]]
        if self.training:
            if self.augment is not None:
                images = self.augment(images, training=True)
            if self.mixers:
                rng = np.random.default_rng([self.seed, self.epoch, i])
                mixer = self.mixers[int(rng.integers(len(self.mixers)))]
                out = mixer({"images": images, "labels": labels}, training=True)
                images, labels = out["images"], out["labels"]
            images = keras.ops.convert_to_numpy(images)
            labels = keras.ops.convert_to_numpy(labels)
        batch = [images, labels]
        if self.pad_last_batch:
            weights = np.where(np.arange(start, start + len(index)) < len(self.x), self.padded / len(self.x), 0.0)
            batch.append(weights.astype("float32"))
        p, k = self.shard
        if k > 1:
            share = len(index) // k
            batch = [part[p * share:(p + 1) * share] for part in batch]
        return tuple(batch)
