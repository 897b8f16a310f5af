"""The authors' training recipe: the learning-rate rule and schedule, AdamW without decay
on biases, norms and embeddings and with its gradients clipped, input normalisation, the
augmentations, and the model and its compilation as the training program builds them. Each
piece also works on its own in user code.
"""

import math

import keras
import numpy as np

from drloc_keras import backbones
from drloc_keras.catalog import LR_SCHEDULES
from drloc_keras.augmentation import Augmentation
from drloc_keras.model import DRLocModel
from drloc_keras.optimizers import AdamW

# --- The recipe ---------------------------------------------------------------------------


def scaled_learning_rate(base_lr, batch_size):
    """The authors' linear scaling rule: `base_lr * batch_size / 512` (for the learning
    rate, the warm-up's first and the cosine decay's last)."""
    return base_lr * batch_size / 512.0


@keras.saving.register_keras_serializable(package="drloc")
class WarmupCosineDecay(keras.optimizers.schedules.CosineDecay):
    """`keras.optimizers.schedules.CosineDecay` with a linear warm-up, the same values,
    with the warm-up and the decay picked by `ops.where` instead of `ops.cond`.

    The warm-up goes from `initial_learning_rate` to `warmup_target` over `warmup_steps`,
    then the cosine decays to `alpha * warmup_target` over `decay_steps`.

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


def make_schedule(lr, steps_per_epoch, epochs, warmup_epochs, schedule="cosine", warmup_lr=0.0, min_lr=0.0):
    """Linear warm-up from `warmup_lr` to `lr` over `warmup_epochs`, then cosine decay to
    `min_lr` at `epochs` (`schedule="cosine"`) or `lr` from then on (`schedule="constant"`,
    whatever `epochs`). The authors warm up from 5e-7 and decay to 5e-6 (for batch 512).

    The cosine starts at `lr` when the warm-up ends (as Keras' `CosineDecay` and timm's
    `warmup_prefix=True`); the authors' timm scheduler counts its phase from the first step,
    so their decay has begun when their warm-up ends (docs/spec.md, section 11).
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"`schedule` must be one of {LR_SCHEDULES}. Found schedule={schedule!r}")
    if not 0 <= min_lr <= lr:
        raise ValueError(f"`min_lr` must be in [0, lr]. Found min_lr={min_lr}, lr={lr}")
    total = max(1, steps_per_epoch * epochs)
    warmup = min(steps_per_epoch * warmup_epochs, total - 1)
    # The cosine's floor as a fraction of `lr` (`alpha`): 1 keeps all of it, a flat rate.
    alpha = 1.0 if schedule == "constant" else min_lr / lr
    if warmup > 0:
        return WarmupCosineDecay(
            initial_learning_rate=warmup_lr,
            decay_steps=1 if schedule == "constant" else max(1, total - warmup),
            warmup_target=lr,
            warmup_steps=warmup,
            alpha=alpha,
        )
    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=1 if schedule == "constant" else total,
                                                  alpha=alpha)


def make_optimizer(lr, weight_decay, steps_per_epoch, epochs, warmup_epochs, decay_all=False,
                   schedule="cosine", warmup_lr=0.0, min_lr=0.0, clip_grad=0.0):
    """AdamW on `make_schedule`'s learning rate, its gradients clipped to the global norm
    `clip_grad` (the authors' 5; 0: not clipped).

    Weight decay skips biases, normalisation parameters, position embeddings, class tokens
    and relative position bias tables, as in the authors' recipe
    (`drloc_keras.optimizers.AdamW`); `decay_all=True` decays every variable, as
    `keras.optimizers.AdamW` does. The clipping is of the whole batch's gradient, also
    under data parallelism, and is kept in the optimizer's config (a resumed run clips the
    same). Epsilon is the authors' 1e-8 (Keras' default is 1e-7).
    """
    schedule = make_schedule(lr, steps_per_epoch, epochs, warmup_epochs, schedule, warmup_lr, min_lr)
    if clip_grad < 0:
        raise ValueError(f"`clip_grad` must be >= 0 (0: no clipping). Found clip_grad={clip_grad}")
    everything = dict(decay_vectors=True, no_decay_patterns=()) if decay_all else {}
    return AdamW(learning_rate=schedule, weight_decay=weight_decay, epsilon=1e-8, global_clipnorm=clip_grad or None,
                 **everything)


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


@keras.saving.register_keras_serializable(package="drloc")
class InputNormalization(keras.layers.Normalization):
    """`keras.layers.Normalization` whose per-channel statistics are the layer's weights,
    read at every call.

    Keras' layer turns given (or adapted) statistics into constants of the compiled
    training step, so runs that differ only in their training subset (the cells of the
    study) each compile their own step. Here the statistics are state that the step takes
    as input: every run of one model and batch shape has the same compiled program, which
    the JAX persistent compilation cache (`JAX_COMPILATION_CACHE_DIR`) then compiles once.
    Set them with `set_statistics`; they are saved with the model's weights.
    """

    def __init__(self, axis=-1, invert=False, **kwargs):
        for name in ("mean", "variance"):
            if kwargs.pop(name, None) is not None:
                raise ValueError(f"InputNormalization takes no `{name}` argument: build the layer, "
                                 f"then call `set_statistics(mean, variance)`")
        super().__init__(axis=axis, invert=invert, **kwargs)

    def set_statistics(self, mean, variance):
        """Assign the statistics (each of the built layer's `[channels]` shape)."""
        if not self.built:
            raise ValueError("build InputNormalization (call it, or `build(input_shape)`) before "
                             "set_statistics")
        self.adapt_mean.assign(np.asarray(mean, "float32").reshape(self.adapt_mean.shape))
        self.adapt_variance.assign(np.asarray(variance, "float32").reshape(self.adapt_variance.shape))
        self.finalize_state()

    def call(self, inputs):
        mean = keras.ops.reshape(keras.ops.cast(self.adapt_mean, self.compute_dtype), self._broadcast_shape)
        variance = keras.ops.reshape(keras.ops.cast(self.adapt_variance, self.compute_dtype),
                                     self._broadcast_shape)
        inputs = keras.ops.cast(inputs, self.compute_dtype)
        scale = keras.ops.maximum(keras.ops.sqrt(variance), keras.backend.epsilon())
        return mean + inputs * scale if self.invert else (inputs - mean) / scale


def with_input_normalization(backbone, mean, variance, name=None):
    """`backbone` behind an `InputNormalization` (a `keras.layers.Normalization`) with the
    given per-channel statistics: a functional model with the backbone's input shape and
    outputs, whose statistics are saved with it (so a loaded model takes raw 0-255 images).

    The normalisation computes in float32 under any dtype policy. Variances below 1 (a
    standard deviation under one grey level, such as a channel that is constant in the
    training images) are raised to 1, so that such a channel is shifted rather than blown
    up by `1 / epsilon` on other images.
    """
    shape = tuple(backbone.inputs[0].shape[1:])
    inputs = keras.Input(shape, name="images")
    layer = InputNormalization(dtype="float32", name="input_normalization")
    layer.build((None, *shape))
    layer.set_statistics([float(m) for m in mean], [max(float(v), 1.0) for v in variance])
    return keras.Model(inputs, backbone(layer(inputs)), name=name or backbone.name)


# --- Augmentation -------------------------------------------------------------------------


def augmentation(args, input_stats=None):
    """The `Augmentation` layer of the settings `args` (it runs inside the training step).

    With the input normalisation's statistics `input_stats` (per-channel mean and variance,
    pixel units), RandAugment fills with the rounded mean (timm's `img_mean`) and random
    erasing draws noise that is N(0, 1) after the normalisation; without (raw pixels), timm's
    grey 128 and N(0, 1) in pixel units."""
    fill, mean, std = 128.0, 0.0, 1.0
    if input_stats is not None:
        fill = [float(min(255, round(m))) for m in input_stats[0]]
        mean = [float(m) for m in input_stats[0]]
        std = [max(float(v), 1.0) ** 0.5 for v in input_stats[1]]  # as with_input_normalization
    crop = None if args.crop in (None, "none") else args.crop
    return Augmentation(flip=args.flip, randaugment=args.randaugment, random_erasing=args.random_erasing,
                        mixup=args.mixup, cutmix=args.cutmix, seed=args.seed, crop=crop, fill=fill, mean=mean,
                        std=std, interpolation=args.interpolation)


# --- The model -------------------------------------------------------------------------------


def build_model(args, num_classes, steps_per_epoch, input_stats=None):
    """The `DRLocModel` of the settings `args` (`drloc_keras.options`): the backbone of
    `--backbone` (with `--backbone-args`, refused if unknown) behind the input normalisation
    (`input_stats`: per-channel mean and variance, or None for raw pixels), its heads, and
    the training augmentation of `--flip`, `--randaugment`, `--random-erasing`, `--mixup`
    and `--cutmix`, which runs inside the training step."""
    overrides = {**backbones.drop_path_overrides(args.backbone, args.image_size, args.drop_path),
                 **args.backbone_args}
    backbone = backbones.get(args.backbone, image_size=args.image_size, num_classes=num_classes, **overrides)
    if input_stats is not None:
        backbone = with_input_normalization(backbone, *input_stats)
    return DRLocModel(
        backbone, lam=args.lam, lam_schedule=args.lam_schedule, warmup_epochs=args.lam_warmup_epochs,
        total_epochs=args.lam_total_epochs, mode=args.mode, sample_size=args.sample_size,
        use_abs=args.offsets == "absolute", hidden=args.head_hidden,
        head_initializer=backbones.head_initializer(args.head_init, args.backbone),
        feature_maps="all" if args.multiscale else "last", steps_per_epoch=steps_per_epoch, seed=args.seed,
        augmentation=augmentation(args, input_stats),
    )


def evaluation_metrics(num_classes):
    """Top-1 and top-5 (top-k for fewer classes), weighted: the zero-weight padding of a
    data-parallel evaluation does not count (without sample weights they equal the plain
    metrics)."""
    return ["accuracy", keras.metrics.TopKCategoricalAccuracy(min(5, num_classes), name="top5")]


def compile_model(model, args, steps_per_epoch, num_classes):
    """Compile `model` with the recipe's AdamW, schedule, label-smoothed cross-entropy and
    metrics."""
    optimizer = make_optimizer(
        scaled_learning_rate(args.lr, args.batch_size), args.weight_decay, steps_per_epoch, args.epochs,
        args.warmup_epochs, decay_all=args.decay_all_weights, schedule=args.lr_schedule,
        warmup_lr=scaled_learning_rate(args.warmup_lr, args.batch_size),
        min_lr=scaled_learning_rate(args.min_lr, args.batch_size), clip_grad=args.clip_grad,
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing),
        metrics=[], weighted_metrics=evaluation_metrics(num_classes),
    )
    return model


def learning_rate_schedule(args, steps_per_epoch):
    """The learning-rate schedule of the settings `args`."""
    return make_schedule(scaled_learning_rate(args.lr, args.batch_size), steps_per_epoch, args.epochs,
                         args.warmup_epochs, args.lr_schedule,
                         warmup_lr=scaled_learning_rate(args.warmup_lr, args.batch_size),
                         min_lr=scaled_learning_rate(args.min_lr, args.batch_size))
