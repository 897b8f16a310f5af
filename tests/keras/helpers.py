"""Helpers shared by the Keras tests: tiny backbones, NumPy conversion, gradients."""

import keras
import numpy as np
from keras import layers


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def tiny_backbone(image_size=8, channels=3, num_classes=4, width=8, strides=(2,), name=None):
    """A functional backbone of the drloc protocol: one feature map per conv stage."""
    inputs = keras.Input((image_size, image_size, channels))
    x = inputs
    maps = []
    for i, stride in enumerate(strides):
        x = layers.Conv2D(width, 3, strides=stride, padding="same", name=f"stage_{i}")(x)
        maps.append(x)
    logits = layers.Dense(num_classes, name="logits")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, {"logits": logits, "feature_maps": maps}, name=name)


def position_backbone(grid=5, width=16, num_classes=2):
    """Tokens in, tokens out: a per-token Dense, so features carry what the input carries."""
    inputs = keras.Input((grid, grid, 2 * grid + 2))
    features = layers.Dense(width, activation="relu", name="tokens")(inputs)
    logits = layers.Dense(num_classes, name="logits")(layers.GlobalAveragePooling2D()(features))
    return keras.Model(inputs, {"logits": logits, "feature_maps": [features]})


def position_images(n, grid=5, seed=0):
    """Each token holds a one-hot of its row, a one-hot of its column and two noise values."""
    rng = np.random.default_rng(seed)
    rows = np.eye(grid)[:, None, :].repeat(grid, axis=1)
    cols = np.eye(grid)[None, :, :].repeat(grid, axis=0)
    grid_code = np.concatenate([rows, cols], axis=-1)
    x = np.concatenate(
        [np.broadcast_to(grid_code, (n, grid, grid, 2 * grid)), rng.normal(size=(n, grid, grid, 2))],
        axis=-1,
    )
    return x.astype("float32"), rng.integers(0, 2, size=n)


def head_weights(head):
    """The reference's (trunk, heads) from a built DRLocHead."""
    trunk = [(to_numpy(d.kernel).astype(np.float64), to_numpy(d.bias).astype(np.float64)) for d in head.trunk]
    heads = tuple(
        (to_numpy(d.kernel).astype(np.float64), to_numpy(d.bias).astype(np.float64)) for d in head.offset_classifiers
    )
    return trunk, heads


def value_and_grad(fn, x):
    """`(fn(x), d fn / d x)` as NumPy, on the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return to_numpy(value), to_numpy(tape.gradient(value, x))
    if backend == "jax":
        import jax

        value, grad = jax.value_and_grad(fn)(keras.ops.convert_to_tensor(x))
        return to_numpy(value), to_numpy(grad)
    if backend == "torch":
        import torch

        x = torch.tensor(np.asarray(x), requires_grad=True)
        value = fn(x)
        value.backward()
        return value.detach().cpu().numpy(), x.grad.detach().cpu().numpy()
    raise NotImplementedError(backend)


class BatchLogs(keras.callbacks.Callback):
    """Records the logs of every training batch."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append({k: float(v) for k, v in (logs or {}).items()})


# The largest |keras - reference| seen per quantity, reported at the end of the run.
LARGEST_DIFFERENCE = {}


def record_difference(name, got, expected):
    diff = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(expected, np.float64)), initial=0.0))
    LARGEST_DIFFERENCE[name] = max(LARGEST_DIFFERENCE.get(name, 0.0), diff)
