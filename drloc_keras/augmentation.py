"""The recipe's training augmentation as one Keras layer that runs inside the training step.

`Augmentation` takes a batch of images (uint8 or float, 0-255 range), or a dict
`{"images": ..., "labels": one-hot}`, and in training applies per image a horizontal flip,
RandAugment (2 operations, magnitude 0.5) and random erasing, then per batch MixUp or CutMix
(one of the two, chosen at random per batch when both are on, as in the authors' timm
recipe), mixing the labels with the images. Outside training it only casts the images to
float32. Every operation is a Keras preprocessing layer (`keras.layers.RandomFlip`,
`RandAugment`, `RandomErasing`, `MixUp`, `CutMix`) on `keras.ops`, so the layer runs on every
backend, compiled into the step with the model: `DRLocModel(backbone,
augmentation=Augmentation(...))` augments the batches that `fit` gives it on the device that
trains, and its random generators are model state (saved, restored, re-seeded per epoch by
`drloc_keras.pipeline.EpochSeeds`).

The per-image layers and the mixers are also available on their own (`augmenter`, `mixers`)
for a user's own input pipeline.
"""

import functools

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="drloc")
class Equalization(keras.layers.Equalization):
    """`keras.layers.Equalization` whose histogram on JAX is one scatter-add.

    On JAX, Keras' layer counts each of the 256 bins with its own comparison and sum, a
    loop unrolled into the compiled step: 768 reductions for an RGB batch, which took 18 s
    of XLA compilation on its own (of about 41 s for a whole tiny training step on the
    CPU). Here `ops.segment_sum` counts them all at once. The histogram is the same, and so
    is the output; the other backends keep Keras' `bincount`.
    """

    def _custom_histogram_fixed_width(self, values, value_range, nbins):
        if self.backend.name != "jax":
            return super()._custom_histogram_fixed_width(values, value_range, nbins)
        values = self.backend.cast(values, "float32")
        low, high = (self.backend.cast(v, "float32") for v in value_range)
        indices = self.backend.cast((values - low) * (nbins - 1) / (high - low), "int32")
        indices = self.backend.numpy.reshape(self.backend.numpy.clip(indices, 0, nbins - 1), [-1])
        ones = self.backend.numpy.ones_like(indices, dtype="int32")
        return self.backend.math.segment_sum(ones, indices, num_segments=nbins)


@keras.saving.register_keras_serializable(package="drloc")
class RandAugment(keras.layers.RandAugment):
    """`keras.layers.RandAugment` that computes only the operations it applies.

    Keras' layer draws `num_ops` operations per batch and then runs every one of its
    eleven operations on the whole batch `num_ops` times, keeping the drawn one by an
    element-wise select. This subclass draws the same operations with the same random
    parameters and runs only the drawn one (`ops.switch`), so its output is the same and
    a step costs two operations instead of twenty-two. Its equalization is `Equalization`
    above (the same output, compiled in a fraction of the time on JAX). As in Keras' layer, the operations
    are drawn once per batch (every image of a batch gets the same two kinds of operation,
    each image its own random parameters), where the authors' timm RandAugment draws them per
    image.

    On PyTorch, Keras' `RandomBrightness` writes its result into its input tensor and
    `RandomRotation` into its transformation; each operation here gets copies of both, so
    that neither the caller's images nor a second use of the transformation is changed.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        keras_layer = self.equalization
        self.equalization = Equalization(value_range=keras_layer.value_range, data_format=keras_layer.data_format,
                                         dtype=keras_layer.dtype_policy, name=keras_layer.name)
        self._layers = [layer for layer in self._layers if layer is not keras_layer]

    def transform_images(self, images, transformation, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training:
            return images
        transforms = transformation["transforms"]
        in_place = self.backend.name == "torch"

        def apply(name, x):
            given = transforms[name]
            if in_place:
                x = self.backend.numpy.copy(x)
                given = keras.tree.map_structure(
                    lambda v: self.backend.numpy.copy(v) if hasattr(v, "shape") else v, given)
            return self.backend.cast(getattr(self, name).transform_images(x, given), self.compute_dtype)

        branches = [functools.partial(apply, name) for name in transforms]
        for i in range(self.num_ops):
            index = transformation["layer_idxes"][i]
            drawn = _concrete_index(self.backend.name, index)
            if drawn is None:  # inside a compiled step: a switch, one branch runs
                images = self.backend.core.switch(index, branches, images)
            else:  # run op by op: call the drawn operation
                images = branches[min(max(drawn, 0), len(branches) - 1)](images)
        return images


def _concrete_index(backend, index):
    """`index` as an int when it has a value now (eager execution), None inside a trace."""
    if backend == "jax":
        import jax

        if isinstance(index, jax.core.Tracer):
            return None
    elif backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            return None
    return int(index)


def augmenter(randaugment=True, random_erasing=0.25, flip=True, seed=None):
    """Per-image augmentation of 0-255 float images: flip, RandAugment, erasing (a
    `keras.layers.Pipeline`, or None when all three are off)."""
    stages = []
    if flip:
        stages.append(keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"))
    if randaugment:
        stages.append(RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed, dtype="float32"))
    if random_erasing > 0:
        # A (p, p) factor erases each image with probability exactly p.
        stages.append(keras.layers.RandomErasing(factor=(random_erasing, random_erasing), value_range=(0, 255),
                                                 seed=seed, dtype="float32"))
    # Input augmentation stays float32 under a mixed-precision policy: the model casts.
    return keras.layers.Pipeline(stages) if stages else None


def mixers(mixup=0.0, cutmix=0.0, seed=None):
    """The batch mixers of the recipe: MixUp with `alpha=mixup` and CutMix with
    `factor=cutmix` (each only when positive)."""
    found = []
    if mixup > 0:
        found.append(keras.layers.MixUp(alpha=mixup, seed=seed, dtype="float32"))
    if cutmix > 0:
        found.append(keras.layers.CutMix(factor=cutmix, seed=seed, dtype="float32"))
    return found


def _check_probability(name, value, upper=1.0):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= upper:
        raise ValueError(f"`{name}` must be a number in [0, {upper:g}]. Found {name}={value!r}")


@keras.saving.register_keras_serializable(package="drloc")
class Augmentation(keras.layers.Layer):
    """Training augmentation inside the model's step (see the module docstring).

    Args:
        flip: random horizontal flip (default True).
        randaugment: RandAugment with 2 operations of magnitude 0.5 (default True).
        random_erasing: probability of erasing a random rectangle of an image (default 0.25;
            0 turns it off).
        mixup: MixUp's Beta `alpha` (default 0: off).
        cutmix: CutMix's Beta `factor` (default 0: off).
        seed: int or None; seeds every random generator of the layer.

    Called on images it returns float32 images; called on `{"images", "labels"}` it
    returns the same dict with augmented images and (when a mixer is on) mixed labels.
    """

    def __init__(self, flip=True, randaugment=True, random_erasing=0.25, mixup=0.0, cutmix=0.0, seed=None,
                 **kwargs):
        for name, value in (("flip", flip), ("randaugment", randaugment)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False. Found {name}={value!r}")
        _check_probability("random_erasing", random_erasing)
        for name, value in (("mixup", mixup), ("cutmix", cutmix)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be a number >= 0 (0 turns it off). Found {name}={value!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Found seed={seed!r}")
        kwargs["dtype"] = "float32"  # augmentation computes in float32 under any policy
        super().__init__(**kwargs)
        self.flip, self.randaugment, self.random_erasing = flip, randaugment, float(random_erasing)
        self.mixup, self.cutmix, self.seed = float(mixup), float(cutmix), seed
        self.per_image = augmenter(randaugment, random_erasing, flip, seed=seed)
        self.mixers = mixers(mixup, cutmix, seed=seed)
        # Picks MixUp or CutMix per batch when both are on.
        self.generator = keras.random.SeedGenerator(seed, name="mixer_choice")
        self._allow_non_tensor_positional_args = True
        if keras.backend.backend() == "jax":
            # RandomRotation, RandomShear and RandomTranslation (inside RandAugment) tell
            # Keras that they cannot be compiled, for TensorFlow's XLA, and one such layer
            # makes Keras run the model's whole step op by op. Their JAX implementation
            # compiles, and the JAX step is compiled with them.
            for layer in self._flatten_layers(include_self=False, recursive=True):
                layer.supports_jit = True

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            images, labels = inputs["images"], inputs.get("labels")
        else:
            images, labels = inputs, None
        images = ops.cast(images, "float32")
        if training:
            if self.per_image is not None:
                images = self.per_image(images, training=True)
            if labels is not None and self.mixers:
                labels = ops.cast(labels, "float32")
                mixed = [mixer({"images": images, "labels": labels}, training=True) for mixer in self.mixers]
                if len(mixed) == 1:
                    images, labels = mixed[0]["images"], mixed[0]["labels"]
                else:
                    # Both are computed and one is kept: a select, not a branch, so every
                    # backend compiles one program and both generators advance alike.
                    first = keras.random.uniform((), seed=self.generator) < 0.5
                    images = ops.where(first, mixed[0]["images"], mixed[1]["images"])
                    labels = ops.where(first, mixed[0]["labels"], mixed[1]["labels"])
        if isinstance(inputs, dict):
            return {**inputs, "images": images, **({"labels": labels} if labels is not None else {})}
        return images

    def compute_output_spec(self, inputs, training=None):
        def spec(x):
            return keras.KerasTensor(x.shape, dtype="float32")

        if isinstance(inputs, dict):
            return {k: spec(v) for k, v in inputs.items()}
        return spec(inputs)

    def get_config(self):
        config = super().get_config()
        config.update(flip=self.flip, randaugment=self.randaugment, random_erasing=self.random_erasing,
                      mixup=self.mixup, cutmix=self.cutmix, seed=self.seed)
        config.pop("dtype", None)
        return config

    def __repr__(self):
        return (f"Augmentation(flip={self.flip}, randaugment={self.randaugment}, random_erasing="
                f"{self.random_erasing:g}, mixup={self.mixup:g}, cutmix={self.cutmix:g}, seed={self.seed})")
