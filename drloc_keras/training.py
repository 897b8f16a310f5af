"""Pieces of the training program: the authors' recipe, input pipelines, checkpoints, reports.

`examples/train_cifar.py` strings these together; each piece also works on its own in
user code.
"""

import csv
import json
import math
import os
import tempfile

import keras
import numpy as np

from drloc_keras.optimizers import AdamW

# --- The recipe ---------------------------------------------------------------------------


def scaled_learning_rate(base_lr, batch_size):
    """The authors' linear scaling rule: `base_lr * batch_size / 512`."""
    return base_lr * batch_size / 512.0


@keras.saving.register_keras_serializable(package="drloc")
class WarmupCosineDecay(keras.optimizers.schedules.CosineDecay):
    """`keras.optimizers.schedules.CosineDecay` with a linear warm-up, the same values,
    with the warm-up and the decay picked by `ops.where` instead of `ops.cond`.

    The optimizer reads its learning rate once per variable (TensorFlow's weight decay
    does), so the schedule is traced once per variable too: a cond there costs tens of
    milliseconds of tracing each, seconds over a model's variables, where the element-wise
    select costs a few ops.
    """

    def __call__(self, step):
        if self.warmup_target is None:
            return super().__call__(step)
        ops = keras.ops
        with keras.name_scope(self.name):
            start = ops.convert_to_tensor(self.initial_learning_rate)
            dtype = start.dtype
            decay_steps = ops.cast(self.decay_steps, dtype)
            warmup_steps = ops.cast(self.warmup_steps, dtype)
            target = ops.cast(self.warmup_target, dtype)
            step = ops.minimum(ops.cast(step, dtype), decay_steps + warmup_steps)
            warm = (target - start) * (step / warmup_steps) + start
            cosine = 0.5 * (1.0 + ops.cos(math.pi * ((step - warmup_steps) / decay_steps)))
            decayed = target * ((1 - self.alpha) * cosine + self.alpha)
            return ops.where(step < warmup_steps, warm, decayed)


def make_optimizer(lr, weight_decay, steps_per_epoch, epochs, warmup_epochs, decay_all=False):
    """AdamW with linear warm-up to `lr` over `warmup_epochs`, then cosine decay to 0.

    Weight decay skips biases, normalisation parameters, position embeddings, class tokens
    and relative position bias tables, as in the authors' recipe
    (`drloc_keras.optimizers.AdamW`); `decay_all=True` decays every variable, as
    `keras.optimizers.AdamW` does.
    """
    total = max(1, steps_per_epoch * epochs)
    warmup = min(steps_per_epoch * warmup_epochs, total - 1)
    if warmup > 0:
        schedule = WarmupCosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(1, total - warmup),
            warmup_target=lr,
            warmup_steps=warmup,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
    if decay_all:
        return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
    return AdamW(learning_rate=schedule, weight_decay=weight_decay)


# --- Input normalisation ------------------------------------------------------------------


def channel_statistics(images, channels=3, chunk=4096):
    """Per-channel mean and variance of `images` `[N, H, W, C]` (any dtype, 0-255 range).

    Grey images (`C == 1`) are counted as the `channels`-channel images the input pipeline
    makes of them (the grey value in every channel). Computed in float64, `chunk` images
    at a time, so a large uint8 set is never held as floats at once.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"`images` must be a non-empty [N, H, W, C] array. Found shape {images.shape}")
    total = np.zeros(images.shape[-1])
    squares = np.zeros(images.shape[-1])
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].astype("float64")
        total += part.sum(axis=(0, 1, 2))
        squares += np.square(part).sum(axis=(0, 1, 2))
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    variance = np.maximum(squares / count - np.square(mean), 0.0)
    if images.shape[-1] == 1 and channels != 1:
        mean, variance = np.repeat(mean, channels), np.repeat(variance, channels)
    return mean, variance


def with_input_normalization(backbone, mean, variance, name=None):
    """`backbone` behind a `keras.layers.Normalization` with the given per-channel
    statistics: a functional model with the backbone's input shape and outputs, whose
    statistics are saved with it (so a loaded model takes raw 0-255 images).

    The normalisation computes in float32 under any dtype policy. Variances below 1 (a
    standard deviation under one grey level, such as a channel that is constant in the
    training images) are raised to 1, so that such a channel is shifted rather than blown
    up by `1 / epsilon` on other images.
    """
    shape = tuple(backbone.inputs[0].shape[1:])
    inputs = keras.Input(shape, name="images")
    normalized = keras.layers.Normalization(
        mean=[float(m) for m in mean], variance=[max(float(v), 1.0) for v in variance],
        dtype="float32", name="input_normalization",
    )(inputs)
    return keras.Model(inputs, backbone(normalized), name=name or backbone.name)


# --- Input pipelines ----------------------------------------------------------------------


def augmenter(image_size, randaugment=True, random_erasing=0.25, flip=True, seed=None):
    """Per-image augmentation of uint8-range float images: flip, RandAugment, erasing."""
    stages = []
    if flip:
        stages.append(keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"))
    if randaugment:
        stages.append(keras.layers.RandAugment(
            value_range=(0, 255), num_ops=2, factor=0.5, seed=seed, dtype="float32"
        ))
    if random_erasing > 0:
        # A (p, p) factor erases each image with probability exactly p.
        stages.append(
            keras.layers.RandomErasing(
                factor=(random_erasing, random_erasing), value_range=(0, 255), seed=seed,
                dtype="float32",
            )
        )
    # Input augmentation stays float32 under a mixed-precision policy: the model casts.
    return keras.layers.Pipeline(stages) if stages else None


def make_dataset(
    x,
    y,
    num_classes,
    batch_size,
    training,
    image_size=None,
    augment=None,
    mixup=0.0,
    cutmix=0.0,
    seed=0,
    pad_last_batch=False,
):
    """A `tf.data` pipeline of `(images float32 in [0, 255], one-hot labels)` batches.

    Training batches are shuffled, augmented per image (`augment`, a Keras layer) and
    mixed per batch (MixUp with `alpha=mixup` or CutMix with `factor=cutmix`, one of the
    two chosen at random per batch when both are on, as in the authors' timm recipe).
    Keras preprocessing layers run inside `tf.data` on every Keras backend.

    `pad_last_batch=True` (evaluation only) makes every batch full, as data-parallel
    evaluation needs (each device an equal share): the last batch is filled up with
    copies of the first images, and the batches carry a third element, sample weights:
    0 for the copies and `padded size / len(x)` for the real images. Weighted metrics
    (accuracy, top-k) and the mean loss over the padded set then equal those over `x`.
    """
    import tensorflow as tf

    if pad_last_batch and training:
        raise ValueError("`pad_last_batch` is for evaluation; training batches drop the remainder")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if pad_last_batch:
        if len(x) == 0:
            raise ValueError("`pad_last_batch` needs at least one example; found an empty `x`")
        padded = -(-len(x) // batch_size) * batch_size
        weight = tf.constant(padded / len(x), "float32")
        real = ds.map(lambda image, label: (image, label, weight))
        filler = ds.repeat().take(padded - len(x)).map(lambda image, label: (image, label, tf.constant(0.0)))
        ds = real.concatenate(filler)
    if training:
        ds = ds.shuffle(min(len(x), 50_000), seed=seed, reshuffle_each_iteration=True)

    def prepare(image, label, *weight):
        image = tf.cast(image, "float32")
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        if image_size is not None and tuple(image.shape[:2]) != (image_size, image_size):
            image = tf.image.resize(image, (image_size, image_size))
        return (image, tf.one_hot(tf.cast(label, "int32"), num_classes), *weight)

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    if training and augment is not None:
        ds = ds.map(lambda i, l: (augment(i, training=True), l), num_parallel_calls=tf.data.AUTOTUNE)
    if training and (mixup > 0 or cutmix > 0):
        mixers = []
        if mixup > 0:
            mixers.append(keras.layers.MixUp(alpha=mixup, seed=seed, dtype="float32"))
        if cutmix > 0:
            mixers.append(keras.layers.CutMix(factor=cutmix, seed=seed, dtype="float32"))

        def mix(images, labels):
            data = {"images": images, "labels": labels}
            if len(mixers) == 1:
                out = mixers[0](data, training=True)
            else:
                pick = tf.random.uniform((), seed=seed) < 0.5
                out = tf.cond(pick, lambda: mixers[0](data, training=True), lambda: mixers[1](data, training=True))
            return out["images"], out["labels"]

        ds = ds.map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


# --- Checkpoints --------------------------------------------------------------------------


def atomic_write_text(path, text):
    """Write `text` to `path` so that a reader sees the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save_model(model, path):
    """`model.save(path)` through a temporary file and `os.replace`."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def weights_are_finite(model):
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(v))) for v in model.weights
               if "float" in str(v.dtype))


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` after every epoch (atomically) and `best.keras` on a new best.

    `state.json` beside them records the number of finished epochs and the best score, so
    a run can resume from the last finished epoch. A checkpoint whose loss or weights are
    not finite is never written: the last good one stays.
    """

    def __init__(self, directory, monitor="val_accuracy", initial_best=-math.inf):
        super().__init__()
        self.directory = directory
        self.monitor = monitor
        self.best = initial_best
        self.nan_seen = False

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = logs.get("loss")
        if loss is None or not math.isfinite(loss) or not weights_are_finite(self.model):
            self.nan_seen = True
            self.model.stop_training = True
            return
        atomic_save_model(self.model, os.path.join(self.directory, "last.keras"))
        score = logs.get(self.monitor)
        if score is not None and score > self.best:
            self.best = float(score)
            atomic_save_model(self.model, os.path.join(self.directory, "best.keras"))
        state = {"epochs_done": epoch + 1, "best": self.best, "monitor": self.monitor}
        atomic_write_text(os.path.join(self.directory, "state.json"), json.dumps(state, indent=2))


def read_state(directory):
    path = os.path.join(directory, "state.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def truncate_history(path, epochs_done):
    """Drop rows of `history.csv` for epochs after the last checkpoint (a killed run)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and int(float(r[0])) < epochs_done]
    out = [header] + kept
    text = "".join(",".join(r) + "\n" for r in out)
    atomic_write_text(path, text)


def config_difference(saved, current, ignore=()):
    """`[(key, saved value, current value)]` for every setting that differs."""
    keys = sorted((set(saved) | set(current)) - set(ignore))
    return [(k, saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)]


# --- Reports ------------------------------------------------------------------------------


def plot_curves(history_csv, path):
    """`curves.png`: accuracy and loss per epoch, with the CE and DRLoc terms apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(float(r["epoch"])) + 1 for r in rows]

    def column(name):
        return [float(r[name]) for r in rows] if name in rows[0] and rows[0][name] != "" else None

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, label in (("accuracy", "train top-1"), ("val_accuracy", "val top-1"),
                        ("val_top5", "val top-5")):
        values = column(name)
        if values:
            left.plot(epochs, values, marker="o", label=label)
    left.set_xlabel("epoch")
    left.set_ylabel("accuracy")
    left.legend()
    left.grid(alpha=0.3)
    for name, label in (("loss", "train loss (total)"), ("ce_loss", "train CE"),
                        ("drloc_loss", "train DRLoc (before lambda)"), ("val_loss", "val loss")):
        values = column(name)
        if values:
            right.plot(epochs, values, marker="o", label=label)
    right.set_xlabel("epoch")
    right.set_ylabel("loss")
    right.legend()
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_history(path):
    """`history.csv` as a list of dicts of floats (empty if there is none)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
