"""Input pipelines: batches of uint8 images and one-hot labels from in-memory arrays (or from
image files streamed from disk, `drloc_keras.data.ImageFiles`).

The images are made RGB at the training size once, up front (`prepare_images`), and kept as
uint8: CIFAR-10 is 150 MB, small enough for any accelerator. A step gathers its batch from
them; the augmentation (flip, RandAugment, erasing, MixUp / CutMix) is not done here but
inside the model's compiled training step (`DRLocModel(augmentation=...)`,
`drloc_keras.augmentation`), on the device that trains. Training batches are
`({"images": uint8 [B, H, W, 3], "labels": one-hot}, one-hot)` (the model mixes the labels
with the images); evaluation batches are `(uint8 images, one-hot[, weights])`.

On TensorFlow the batches come from `tf.data` (which `tf.distribute` strategies need); on
JAX and PyTorch from `ArrayBatches`, which needs no TensorFlow and holds the arrays as tensors
of the backend (on the GPU where there is one).

A training epoch is a function of the seed and the epoch's number alone: epoch `e` of seed
`s` takes the images in the order `epoch_order(n, s, e)` (both pipelines, every backend), and
`EpochSeeds` re-seeds every random generator of the model from `(s, e)` before the epoch
starts (`drloc_keras.streams`). A run resumed after epoch `e`, on any machine or backend,
therefore sees the batches that the run that was not stopped saw.
"""

import keras
import numpy as np

from drloc_keras import streams


def _streamed(x):
    from drloc_keras.data import ImageFiles

    return isinstance(x, ImageFiles)


def prepare_images(x, image_size=None):
    """`x` as the pipelines hold it: `[N, H, W, 3]` at `image_size` (an int or `(height,
    width)`; None keeps the size). Grey images are repeated over three channels; uint8
    images are resized with antialiasing (`drloc_keras.data.to_rgb_and_resize`). Images
    of another dtype pass through when they already have the size and three channels.
    Images streamed from disk (`drloc_keras.data.ImageFiles`) pass through as they are:
    they are decoded at their size when a batch is gathered."""
    streamed = _streamed(x)
    if not streamed:
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"`x` must be images [N, H, W, 1 or 3]. Found shape {list(x.shape)}")
    size = tuple(x.shape[1:3]) if image_size is None else (
        (image_size, image_size) if isinstance(image_size, int) else tuple(image_size))
    if streamed:
        if tuple(x.shape[1:3]) != size:
            raise ValueError(f"images streamed from disk are decoded at {list(x.shape[1:3])}, not at the "
                             f"requested {list(size)}: load the folder with that image_size")
        return x
    if x.shape[-1] == 3 and tuple(x.shape[1:3]) == size:
        return x
    if x.dtype != np.uint8:
        raise ValueError(f"`x` of dtype {x.dtype} and shape {list(x.shape)} would have to be resized to {size} "
                         f"and made RGB here, which is done for uint8 images only: give uint8 images, or "
                         f"images of shape [N, {size[0]}, {size[1]}, 3]")
    from drloc_keras.data import to_rgb_and_resize

    return to_rgb_and_resize(x, size)


class EpochSeeds(keras.callbacks.Callback):
    """Before epoch `e`: sets the epoch that the training batches follow (`set_epoch(e)`)
    and re-seeds, with `streams.reseed(..., seed, e)`, every random generator of `layers`,
    or when `layers` is None every generator of the model that `fit` trains: the
    augmentation's, the DRLoc pair sampler, dropout and drop path alike, so that none
    repeats another's draws or an earlier epoch's, and epoch `e` is a function of
    `(seed, e)` whatever epochs came before it."""

    def __init__(self, set_epoch, seed, layers=None):
        super().__init__()
        self.set_epoch = set_epoch
        self.layers = None if layers is None else [layer for layer in layers if layer is not None]
        self.seed = int(seed)

    def on_epoch_begin(self, epoch, logs=None):
        self.set_epoch(epoch)
        streams.reseed(self.layers if self.layers is not None else getattr(self, "model", None), self.seed, epoch)


def train_dataset(x, y, num_classes, batch_size, image_size=None, seed=0):
    """`(dataset, epoch_seeds)`: one epoch of shuffled training batches `({"images": uint8,
    "labels": one-hot}, one-hot)` (the remainder dropped) and the `EpochSeeds` callback that
    must run with it (it sets the epoch and re-seeds the model's augmentation).

    On the TensorFlow backend a `tf.data` pipeline; on JAX and PyTorch, and for images
    streamed from disk on every backend, an `ArrayBatches` (no TensorFlow needed), with the
    same order of images for a seed and an epoch.
    """
    x = prepare_images(x, image_size)
    n = len(x)
    if n < batch_size:
        raise ValueError(f"`batch_size` ({batch_size}) is larger than the training set ({n} images)")
    if keras.backend.backend() != "tensorflow" or _streamed(x):
        batches = ArrayBatches(x, y, num_classes, batch_size, training=True, seed=seed)
        return batches, EpochSeeds(batches.set_epoch, seed)
    import tensorflow as tf

    # The order of the epoch, as ArrayBatches takes it: set before each epoch by EpochSeeds
    # and read by each new pass over the dataset.
    seed = int(seed)
    order = tf.Variable(epoch_order(n, seed, 0), dtype="int64", trainable=False, name="epoch_order")
    images, labels = tf.constant(x), tf.constant(np.asarray(y).astype("int64"))

    def set_epoch(epoch):
        order.assign(epoch_order(n, seed, epoch))

    def gather(index):
        onehot = tf.one_hot(tf.gather(labels, index), num_classes)
        return {"images": tf.gather(images, index), "labels": onehot}, onehot

    ds = tf.data.Dataset.from_tensors(0).flat_map(lambda _: tf.data.Dataset.from_tensor_slices(order.read_value()))
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n // batch_size))
    return ds.prefetch(tf.data.AUTOTUNE), EpochSeeds(set_epoch, seed)


def eval_dataset(x, y, num_classes, batch_size, image_size=None, pad_last_batch=False):
    """Evaluation batches `(images, one-hot)` of `(x, y)`, in order, every image once.

    `pad_last_batch=True` makes every batch full, as data-parallel evaluation needs (each
    device an equal share): the last batch is filled up with copies of the first images,
    and the batches carry a third element, sample weights: 0 for the copies and
    `padded size / len(x)` for the real images. Weighted metrics (accuracy, top-k) and the
    mean loss over the padded set then equal those over `x`.
    """
    if len(x) == 0:
        raise ValueError("found an empty `x`: there is nothing to evaluate")
    x = prepare_images(x, image_size)
    if keras.backend.backend() != "tensorflow" or _streamed(x):
        return ArrayBatches(x, y, num_classes, batch_size, pad_last_batch=pad_last_batch)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, np.asarray(y).astype("int64")))
    if pad_last_batch:
        padded = -(-len(x) // batch_size) * batch_size
        weight = tf.constant(padded / len(x), "float32")
        real = ds.map(lambda image, label: (image, label, weight))
        filler = ds.repeat().take(padded - len(x)).map(lambda image, label: (image, label, tf.constant(0.0)))
        ds = real.concatenate(filler)

    def finish(images, labels, *weights):
        return (images, tf.one_hot(labels, num_classes), *weights)

    ds = ds.batch(batch_size).map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_order(n, seed, epoch):
    """The order of the `n` training images in epoch `epoch` of seed `seed`: the one order of
    both pipelines (ArrayBatches and tf.data), on every backend and machine."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


# The training set goes on the accelerator only when it takes at most this share of the
# device's free memory (the rest is the training step's).
DEVICE_SHARE = 0.5


def device_free_bytes():
    """Free memory of the accelerator the backend computes on, in bytes, asked of the device;
    None on a CPU (the arrays are host memory there) or when the device does not say."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "cpu":
                return None
            stats = device.memory_stats() or {}
            if "bytes_limit" not in stats:
                return None
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        if backend == "torch":
            import torch

            if not torch.cuda.is_available():
                return None
            free, _ = torch.cuda.mem_get_info()
            return int(free)
    except Exception:  # a device that cannot say: as if it were the host
        return None
    return None


def fits_on_device(nbytes, free=None):
    """Whether arrays of `nbytes` go on the accelerator: at most `DEVICE_SHARE` of its free
    memory (`free`, else asked of the device); always on a CPU."""
    free = device_free_bytes() if free is None else free
    return free is None or nbytes <= DEVICE_SHARE * free


class ArrayBatches(keras.utils.PyDataset):
    """Batches gathered from in-memory arrays held as tensors of the current backend (on
    the accelerator where there is one): the pipeline of the JAX and PyTorch backends, which
    needs no TensorFlow. Each batch is one `keras.ops.take` on the device.

    Training (`training=True`): epoch `e` (`set_epoch`) takes the images in the order
    `epoch_order(len(x), seed, e)` and drops the remainder; batches are `({"images",
    "labels"}, one-hot)`, to be augmented by the model. Evaluation: every image once, in
    order, `(images, one-hot[, weights])`; `pad_last_batch` as `eval_dataset`. With
    `shard=(p, k)` each batch is this process's `p`-th of `k` equal slices (data-parallel
    JAX over several processes; the slices then stay NumPy arrays, which JAX assembles
    into the global batch).

    Images streamed from disk (`drloc_keras.data.ImageFiles`) are never held whole: each
    batch decodes its images (in the files' threads) on the host and is then handed to the
    step, which moves it to the device. In-memory images go on the accelerator only when they
    take at most `DEVICE_SHARE` of its free memory, asked of the device (`fits_on_device`);
    else each batch is gathered on the host and moved by the step.
    """

    def __init__(self, x, y, num_classes, batch_size, image_size=None, training=False, seed=0,
                 pad_last_batch=False, shard=(0, 1)):
        super().__init__(workers=1, use_multiprocessing=False)
        if training and pad_last_batch:
            raise ValueError("`pad_last_batch` is for evaluation; training batches drop the remainder")
        if training and len(x) < batch_size:
            raise ValueError(f"`batch_size` ({batch_size}) is larger than the training set ({len(x)} images)")
        self.x = prepare_images(x, image_size)
        self.streamed = _streamed(self.x)  # decoded per batch on the host
        self.y = np.asarray(y).astype("int64")
        self.num_classes, self.batch_size = num_classes, batch_size
        self.training, self.seed, self.pad_last_batch = training, int(seed), pad_last_batch
        self.padded = -(-len(self.x) // batch_size) * batch_size if pad_last_batch else len(self.x)
        self._device = None
        self.on_device = None  # decided on the first batch (`_on_device`)
        self.shard = shard
        self.set_epoch(0)

    def _arrays(self):
        """The images and one-hot labels, as backend tensors (made once, on first use)."""
        if self._device is None:
            onehot = np.eye(self.num_classes, dtype="float32")[self.y]
            self._device = (keras.ops.convert_to_tensor(self.x), keras.ops.convert_to_tensor(onehot))
        return self._device

    def _on_device(self):
        """Whether the arrays live on the device (decided once: when they fit its free memory)."""
        if self.on_device is None:
            nbytes = self.x.nbytes + len(self.y) * self.num_classes * 4
            self.on_device = fits_on_device(nbytes)
        return self.on_device

    def set_epoch(self, epoch):
        self.epoch = int(epoch)
        self.order = epoch_order(len(self.x), self.seed, epoch).astype("int32") if self.training else None

    def __len__(self):
        if self.training:
            return len(self.x) // self.batch_size
        return -(-self.padded // self.batch_size)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        start, stop = i * self.batch_size, (i + 1) * self.batch_size
        if self.training:
            index = self.order[start:stop]
        else:
            index = (np.arange(start, min(stop, self.padded)) % len(self.x)).astype("int32")
        p, k = self.shard
        if k > 1 or self.streamed or not self._on_device():  # from host memory (or disk)
            share = len(index) // k
            part = index[p * share:(p + 1) * share]
            images = self.x.read(part) if self.streamed else self.x[part]
            labels = np.eye(self.num_classes, dtype="float32")[self.y[part]]
            rows = np.arange(start, start + len(index))[p * share:(p + 1) * share]
        else:
            x, onehot = self._arrays()
            images, labels = keras.ops.take(x, index, axis=0), keras.ops.take(onehot, index, axis=0)
            rows = np.arange(start, start + len(index))
        if self.training:
            return {"images": images, "labels": labels}, labels
        batch = [images, labels]
        if self.pad_last_batch:
            batch.append(np.where(rows < len(self.x), self.padded / len(self.x), 0.0).astype("float32"))
        return tuple(batch)
