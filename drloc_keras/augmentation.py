"""The authors' training augmentation (timm's), per image, as Keras layers that run inside
the training step.

The authors train with timm's `create_transform` and `Mixup` (`configs` of their code:
`rand-m9-mstd0.5-inc1`, random erasing 0.25 in `pixel` mode, MixUp 0.8 / CutMix 1.0 in
`batch` mode, bicubic interpolation; for inputs of 32 pixels or less their `data/build.py`
replaces the random resized crop by a random crop with 4 pixels of zero padding). Each part
is a layer here, computed with `keras.ops` on the whole batch, every image with its own
random parameters:

- `CropFlip`: timm's `RandomResizedCropAndInterpolation` or the padded random crop, then a
  horizontal flip with probability 0.5, in one resampling.
- `RandAugment`: timm's `rand_augment_transform` (its operations, magnitude mapping, signs,
  per-image choice of the operations), with Pillow's arithmetic (`drloc_keras.image_ops`).
- `RandomErasing`: timm's `RandomErasing` in `pixel` mode: Gaussian noise of mean 0 and
  standard deviation 1 *after* the input normalisation. The model normalises inside the
  backbone, so the layer draws that noise in pixel units: `mean + std * N(0, 1)` per channel,
  with the normalisation's statistics (`mean`, `std`).
- `MixUpCutMix`: timm's `Mixup` in `batch` mode: one lambda per batch, every image mixed with
  the image at the mirrored position of the batch, CutMix's lambda corrected to the box's area.

`Augmentation` chains them in timm's order (crop and flip, RandAugment, erasing, then the
batch mixing with the labels). Each layer has a `draw` method that returns its random
parameters and an `apply` method that uses given ones, which is how the tests compare every
distribution and every operation with timm's own code. Every layer draws from its own
`drloc_keras.streams.Stream`.
"""

import math

import keras
from keras import ops

from drloc_keras import image_ops, streams
from drloc_keras.replicas import replica_context
from drloc_keras.timm_policy import CROPS, LEVEL_DENOMINATOR, RANDAUGMENT_POLICY, parse_randaugment

# timm's `_RAND_INCREASING_TRANSFORMS`, in its order.
RAND_INCREASING_OPERATIONS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
)
_OP = {name: k for k, name in enumerate(RAND_INCREASING_OPERATIONS)}
CANDIDATES = 16  # candidates per Gamma draw of MixUpCutMix (Marsaglia and Tsang's method)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1. Found {name}={value!r}")


def _number(name, value, low=None, high=None, low_open=False, allowed=None):
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
    if not bad and low is not None:
        bad = value <= low if low_open else value < low
    if not bad and high is not None:
        bad = value > high
    if bad:
        raise ValueError(f"`{name}` must be {allowed}. Found {name}={value!r}")
    return float(value)


def _seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"`seed` must be an int or None. Found seed={seed!r}")
    return seed


def _channels(name, value, allowed):
    """A per-channel value: a number (every channel) or a sequence of numbers."""
    values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        values = []
    if not values or any(math.isnan(v) for v in values):
        raise ValueError(f"`{name}` must be {allowed}. Found {name}={value!r}")
    return values


class _RandomLayer(keras.layers.Layer):
    """What the augmentation's random layers share: float32 under any dtype policy, a `seed`
    and its own `drloc_keras.streams.Stream` (`self.generator`), and draws per data-parallel
    replica (`_draw`).

    Under a multi-replica `tf.distribute` strategy every replica runs the step with the same
    generator state: a draw of shape `[B, ...]` would give replica 1's image `i` the
    parameters of replica 0's image `i`. So each draw is made for all replicas and this
    replica keeps its own (as the DRLoc pairs, `drloc_keras.replicas`): every image of the
    global batch gets its own parameters, and each replica its own mixing lambda (as each
    process of the authors' distributed timm training draws its own). One replica elsewhere.
    """

    def __init__(self, seed=None, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.seed = _seed(seed)
        self.generator = streams.Stream(seed, name=f"{self.name}_generator")

    def _draw(self, function, shape, *args):
        replica, replicas = replica_context()
        if replicas == 1:
            return function(shape, *args, seed=self.generator)
        return ops.take(function((replicas, *shape), *args, seed=self.generator), replica, axis=0)

    def _uniforms(self, shape, columns):
        """Every uniform in [0, 1) one `draw` needs, from one call of the generator:
        `[*shape, columns]`, each column (or group of columns) one quantity.

        Each call of a generator compiles its own random-number program: one call per layer
        instead of one per quantity took a fifth of the augmentation's compile time off
        (docs/benchmarks.md)."""
        return self._draw(keras.random.uniform, (*shape, columns))


def _normal(uniform, mean=0.0, std=1.0):
    """N(mean, std) values from uniforms in [0, 1) (the inverse of the normal CDF; the
    uniforms' 24 bits keep the values within 5.3 standard deviations)."""
    u = ops.clip(uniform, 2.0**-25, 1.0 - 2.0**-24)
    return mean + std * math.sqrt(2.0) * ops.erfinv(2.0 * u - 1.0)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config["seed"] = self.seed
        return config


class _ImageLayer(_RandomLayer):
    """A per-image layer: `call` is `apply(images, draw(batch, height, width))` in training and
    a cast to float32 outside it."""

    def call(self, images, training=True):
        images = ops.cast(images, "float32")
        if not training:
            return images
        return self.apply(images, self.draw(ops.shape(images)[0], images.shape[1], images.shape[2]))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="drloc")
class RandAugment(_ImageLayer):
    """timm's RandAugment (`rand_augment_transform`, increasing operations), per image.

    Every image gets `num_ops` operations, each drawn uniformly (with replacement) from
    `RAND_INCREASING_OPERATIONS` and applied with probability `probability`, at a magnitude
    drawn from `N(magnitude, magnitude_std)` clipped to `[0, magnitude_max]`; the geometric
    and the enhancing operations get a random sign. The arguments follow timm's mapping
    (magnitude 9: rotations of 27 degrees, shears of 0.27, translations of 0.405 of the side,
    enhancement factors 1 +- 0.81, posterize to 1 bit, solarize from 26).

    Args:
        num_ops, magnitude, magnitude_std, probability, magnitude_max: as in timm's string
            (`RandAugment.from_policy("rand-m9-mstd0.5-inc1")` gives the authors').
        translate_fraction: the largest translation, a fraction of the side (timm's
            `translate_pct`, 0.45).
        fill: the colour geometric operations fill with, 0-255, a number or one per channel
            (timm's `img_mean`: the normalisation's mean; default 128).
        interpolation: `"bicubic"` (the authors'), `"bilinear"` or `"nearest"`.
        seed: int or None.

    Call arguments:
        images: float `[B, H, W, C]`, 0-255 values; `training`: augment only when true.

    Output: float `[B, H, W, C]`, integer values 0-255 (as timm's uint8 images).
    """

    def __init__(self, num_ops=2, magnitude=9.0, magnitude_std=0.5, probability=0.5, magnitude_max=10.0,
                 translate_fraction=0.45, fill=128.0, interpolation="bicubic", seed=None, **kwargs):
        _positive_int("num_ops", num_ops)
        magnitude_max = _number("magnitude_max", magnitude_max, 0, allowed="a number >= 0")
        magnitude = _number("magnitude", magnitude, 0, magnitude_max, allowed=f"a number in [0, {magnitude_max:g}]")
        if not (isinstance(magnitude_std, (int, float)) and not isinstance(magnitude_std, bool)
                and (magnitude_std == math.inf or 0 <= magnitude_std < math.inf)):
            raise ValueError(f"`magnitude_std` must be a number >= 0 (inf: uniform in [0, magnitude]). "
                             f"Found magnitude_std={magnitude_std!r}")
        probability = _number("probability", probability, 0, 1, allowed="a number in [0, 1]")
        translate_fraction = _number("translate_fraction", translate_fraction, 0, 1, allowed="a number in [0, 1]")
        if interpolation not in image_ops.INTERPOLATIONS:
            raise ValueError(f"`interpolation` must be one of {image_ops.INTERPOLATIONS}. "
                             f"Found interpolation={interpolation!r}")
        super().__init__(seed=seed, **kwargs)
        self.num_ops, self.magnitude, self.magnitude_std = num_ops, magnitude, float(magnitude_std)
        self.probability, self.magnitude_max, self.translate_fraction = probability, magnitude_max, translate_fraction
        self.fill = _channels("fill", fill, "a number or one number per channel, 0-255")
        self.interpolation = interpolation

    @classmethod
    def from_policy(cls, policy=RANDAUGMENT_POLICY, **kwargs):
        """The layer of a timm string such as `rand-m9-mstd0.5-inc1` (`parse_randaugment`)."""
        return cls(**parse_randaugment(policy), **kwargs)

    def draw(self, batch_size, height=None, width=None):
        """The random parameters of a batch: `operation` (int32), `applied` (bool),
        `magnitude` (float) and `negate` (bool), each `[batch_size, num_ops]` (the image's
        size does not enter)."""
        shape = (batch_size, self.num_ops)
        count = len(RAND_INCREASING_OPERATIONS)
        u = self._uniforms(shape, 4)
        operation = ops.cast(ops.minimum(ops.floor(u[..., 0] * count), count - 1), "int32")
        applied = u[..., 1] <= self.probability
        if self.magnitude_std == math.inf:
            magnitude = u[..., 2] * self.magnitude
        elif self.magnitude_std > 0:
            magnitude = _normal(u[..., 2], self.magnitude, self.magnitude_std)
        else:
            magnitude = ops.full(shape, self.magnitude)
        magnitude = ops.clip(magnitude, 0.0, self.magnitude_max)
        negate = u[..., 3] > 0.5  # timm's `_randomly_negate`
        return {"operation": operation, "applied": applied, "magnitude": magnitude, "negate": negate}

    def arguments(self, magnitude, negate, height, width):
        """timm's argument of every operation at `magnitude`, `negate` (`[B]` each): a dict
        from operation name to `[B]` (degrees, factors, bits, thresholds, pixels)."""
        level = ops.cast(magnitude, "float32") / LEVEL_DENOMINATOR
        sign = ops.where(negate, -1.0, 1.0)
        enhance = ops.maximum(0.1, 1.0 + sign * level * 0.9)
        translate = sign * level * self.translate_fraction
        return {
            "Rotate": sign * level * 30.0,
            "PosterizeIncreasing": 4.0 - ops.floor(level * 4.0),
            "SolarizeIncreasing": 256.0 - ops.minimum(256.0, ops.floor(level * 256.0)),
            "SolarizeAdd": ops.minimum(128.0, ops.floor(level * 110.0)),
            "ColorIncreasing": enhance, "ContrastIncreasing": enhance, "BrightnessIncreasing": enhance,
            "SharpnessIncreasing": enhance,
            "ShearX": sign * level * 0.3, "ShearY": sign * level * 0.3,
            "TranslateXRel": translate * width, "TranslateYRel": translate * height,
        }

    def apply_operation(self, images, operation, magnitude, negate):
        """One operation per image: `operation` (index into `RAND_INCREASING_OPERATIONS`),
        `magnitude` and `negate` `[B]` each.

        The eight operations that map each value of a channel to a value (autocontrast,
        equalize, invert, posterize, solarize, solarize-add, brightness, contrast) become one
        table per image and channel, `[B, C, 256]`, read with one gather; the five geometric
        ones share one resampling; colour and sharpness are computed for the batch; each image
        keeps its own result."""
        height, width = images.shape[1], images.shape[2]
        args = self.arguments(magnitude, negate, height, width)

        def is_(name):
            return operation == _OP[name]

        one, zero = ops.ones_like(args["Rotate"]), ops.zeros_like(args["Rotate"])
        matrices = {
            "Rotate": image_ops.rotation_matrix(args["Rotate"], height, width),
            "ShearX": ops.stack([one, args["ShearX"], zero, zero, one, zero], axis=1),
            "ShearY": ops.stack([one, zero, zero, args["ShearY"], one, zero], axis=1),
            "TranslateXRel": ops.stack([one, zero, args["TranslateXRel"], zero, one, zero], axis=1),
            "TranslateYRel": ops.stack([one, zero, zero, zero, one, args["TranslateYRel"]], axis=1),
        }
        matrix = ops.stack([one, zero, zero, zero, one, zero], axis=1)
        geometric_op = ops.zeros_like(operation, dtype="bool")
        for name, m in matrices.items():
            matrix = ops.where(ops.expand_dims(is_(name), 1), m, matrix)
            geometric_op = geometric_op | is_(name)
        geometric = image_ops.affine(images, matrix, self.interpolation, self.fill)

        def per_image(v):  # [B] -> [B, 1, 1], against the tables' [B, C, 256]
            return ops.reshape(ops.cast(v, "float32"), (-1, 1, 1))

        levels = ops.reshape(ops.arange(256, dtype="float32"), (1, 1, 256))
        mean_grey = ops.floor(ops.mean(image_ops.grayscale(images), axis=(1, 2, 3)) + 0.5)  # Contrast's
        step = per_image(ops.power(2.0, 8.0 - args["PosterizeIncreasing"]))
        threshold, add = per_image(args["SolarizeIncreasing"]), per_image(args["SolarizeAdd"])
        brightness, contrast = per_image(args["BrightnessIncreasing"]), per_image(args["ContrastIncreasing"])
        mean_grey = per_image(mean_grey)
        tables = {
            "AutoContrast": image_ops.autocontrast_table(images),
            "Equalize": image_ops.equalize_table(images),
            "Invert": 255.0 - levels,
            "PosterizeIncreasing": ops.floor(levels / step) * step,
            "SolarizeIncreasing": ops.where(levels < threshold, levels, 255.0 - levels),
            "SolarizeAdd": ops.where(levels < 128.0, ops.minimum(levels + add, 255.0), levels),
            "BrightnessIncreasing": image_ops.to_uint8(brightness * levels),
            "ContrastIncreasing": image_ops.to_uint8(mean_grey + contrast * (levels - mean_grey)),
        }
        channels = images.shape[-1]
        table = ops.broadcast_to(levels, (ops.shape(images)[0], channels, 256))
        for name, t in tables.items():
            table = ops.where(ops.reshape(is_(name), (-1, 1, 1)), t, table)
        out = image_ops.lookup(images, table)
        for name, result in (("ColorIncreasing", image_ops.color(images, args["ColorIncreasing"])),
                             ("SharpnessIncreasing", image_ops.sharpness(images, args["SharpnessIncreasing"]))):
            out = ops.where(ops.reshape(is_(name), (-1, 1, 1, 1)), result, out)
        return ops.where(ops.reshape(geometric_op, (-1, 1, 1, 1)), geometric, out)

    def apply(self, images, params):
        """`images` with the operations of `params` (from `draw`)."""
        images = ops.cast(images, "float32")
        for i in range(self.num_ops):
            done = self.apply_operation(images, params["operation"][:, i], params["magnitude"][:, i],
                                        params["negate"][:, i])
            images = ops.where(ops.reshape(params["applied"][:, i], (-1, 1, 1, 1)), done, images)
        return images

    def get_config(self):
        config = super().get_config()
        config.update(num_ops=self.num_ops, magnitude=self.magnitude, magnitude_std=self.magnitude_std,
                      probability=self.probability, magnitude_max=self.magnitude_max,
                      translate_fraction=self.translate_fraction, fill=self.fill,
                      interpolation=self.interpolation)
        return config


@keras.saving.register_keras_serializable(package="drloc")
class CropFlip(_ImageLayer):
    """A random crop and a random horizontal flip, per image, in one resampling.

    - `crop="resized"`: timm's `RandomResizedCropAndInterpolation` (torchvision's
      algorithm): ten tries of an area fraction uniform in `scale` and an aspect ratio
      log-uniform in `ratio`, the first box that fits, else the central crop of the
      clamped ratio; resized back to the input size (`interpolation`, bicubic by default:
      Pillow's resize kernel).
    - `crop="padded"`: torchvision's `RandomCrop(size, padding=4)`: the image shifted by a
      uniform integer in `[-padding, padding]` on each axis, with zeros coming in.
    - `crop=None`: no crop.

    Then the image is mirrored with probability `flip` (0.5 in timm; 0 turns it off).

    Args:
        crop, padding, scale, ratio, interpolation, flip: as above.
        seed: int or None.
    """

    TRIES = 10  # torchvision's tries of a resized crop's box before its fallback

    def __init__(self, crop="padded", flip=0.5, padding=4, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 interpolation="bicubic", seed=None, **kwargs):
        if crop is not None and crop not in CROPS:
            raise ValueError(f"`crop` must be one of {CROPS} or None. Found crop={crop!r}")
        flip = _number("flip", flip, 0, 1, allowed="a probability in [0, 1]")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"`padding` must be an integer >= 0. Found padding={padding!r}")
        for name, pair, low in (("scale", scale, 0.0), ("ratio", ratio, 0.0)):
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > low for v in pair)
                    or pair[0] > pair[1]):
                raise ValueError(f"`{name}` must be a pair (low, high) of numbers > 0 with low <= high. "
                                 f"Found {name}={pair!r}")
        if interpolation not in image_ops.INTERPOLATIONS:
            raise ValueError(f"`interpolation` must be one of {image_ops.INTERPOLATIONS}. "
                             f"Found interpolation={interpolation!r}")
        super().__init__(seed=seed, **kwargs)
        self.crop, self.flip, self.padding = crop, flip, padding
        self.scale, self.ratio = tuple(float(v) for v in scale), tuple(float(v) for v in ratio)
        self.interpolation = interpolation

    def draw(self, batch_size, height, width):
        """The random parameters of a batch, each `[batch_size]` float: `top`, `left`,
        `height`, `width` of the crop (in pixels; for `padded`, of the padded image's
        window, `top` and `left` in `[0, 2 * padding]`) and `flip` (bool)."""
        shape = (batch_size,)
        tries = self.TRIES if self.crop == "resized" else 1
        u = self._uniforms(shape, 1 + 4 * tries)  # the flip, then four groups of `tries`
        if self.crop == "resized":
            top, left, h, w = self._resized_box(u[:, 1:], height, width)
        elif self.crop == "padded":
            span = 2.0 * self.padding
            top = image_ops.uniform_int(u[:, 1], 0.0, span)
            left = image_ops.uniform_int(u[:, 2], 0.0, span)
            h, w = ops.full(shape, float(height)), ops.full(shape, float(width))
        else:
            top, left = ops.zeros(shape), ops.zeros(shape)
            h, w = ops.full(shape, float(height)), ops.full(shape, float(width))
        flip = u[:, 0] < self.flip
        return {"top": top, "left": left, "height": h, "width": w, "flip": flip}

    def _resized_box(self, u, height, width):
        """The resized crop's box from uniforms `u` `[B, 4 * TRIES]`."""
        tries = self.TRIES
        area = float(height * width)
        low, high = self.scale
        target = (low + (high - low) * u[:, :tries]) * area
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        log_ratio = log_low + (log_high - log_low) * u[:, tries:2 * tries]
        aspect = ops.exp(log_ratio)
        w = ops.round(ops.sqrt(target * aspect))  # Python's round: half to even, as ops.round
        h = ops.round(ops.sqrt(target / aspect))
        fits = (w <= width) & (h <= height)
        u_top = u[:, 2 * tries:3 * tries]
        u_left = u[:, 3 * tries:4 * tries]
        top = image_ops.uniform_int(u_top, 0.0, height - h)
        left = image_ops.uniform_int(u_left, 0.0, width - w)
        # The first try that fits; its index is the first True.
        index = ops.argmax(ops.cast(fits, "int32"), axis=1)
        found = ops.any(fits, axis=1)

        def first(values):
            return ops.squeeze(ops.take_along_axis(values, ops.expand_dims(index, 1), axis=1), 1)

        # torchvision's fallback: the central crop of the ratio clamped into `ratio`.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            fw, fh = float(width), float(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            fw, fh = float(round(height * self.ratio[1])), float(height)
        else:
            fw, fh = float(width), float(height)
        fall = {"top": float((height - int(fh)) // 2), "left": float((width - int(fw)) // 2), "h": fh, "w": fw}
        return (ops.where(found, first(top), fall["top"]), ops.where(found, first(left), fall["left"]),
                ops.where(found, first(h), fall["h"]), ops.where(found, first(w), fall["w"]))

    def apply(self, images, params):
        """`images` cropped and flipped with `params` (from `draw`)."""
        images = ops.cast(images, "float32")
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        x, y = image_ops.pixel_grid(batch, height, width)
        flip = ops.reshape(params["flip"], (-1, 1, 1))
        x = ops.where(flip, width - x, x)

        def per_image(v):
            return ops.reshape(ops.cast(v, "float32"), (-1, 1, 1))

        top, left = per_image(params["top"]), per_image(params["left"])
        if self.crop == "resized":
            # Pillow's resize (torchvision's `resized_crop` of a PIL image) with its kernel (bicubic:
            # a = -0.5): a horizontal pass, then a vertical one, each rounded half up and clipped to 8
            # bits. In one 2-D pass the overshoot Pillow clips between the passes survives: up to 9
            # grey levels off on a noisy image (tests/keras/test_timm_augmentation.py).
            h, w = per_image(params["height"]), per_image(params["width"])
            zero, rows, cols = ops.zeros_like(top), ops.full_like(top, height), ops.full_like(top, width)
            across = image_ops.sample(images, left + x * w / width, y, self.interpolation, 0.0, cubic_a=-0.5,
                                      box=(zero, left, rows, left + w))
            across = ops.floor(ops.clip(across, 0.0, 255.0) + 0.5)
            centres, _ = image_ops.pixel_grid(batch, height, width)
            out = image_ops.sample(across, centres, top + y * h / height, self.interpolation, 0.0, cubic_a=-0.5,
                                   box=(top, zero, top + h, cols))
            return ops.floor(ops.clip(out, 0.0, 255.0) + 0.5)
        if self.crop is None:  # a flip alone moves no pixel off the grid
            return ops.where(ops.reshape(params["flip"], (-1, 1, 1, 1)), ops.flip(images, axis=2), images)
        # Whole-pixel shifts: nearest sampling is exact.
        return image_ops.sample(images, x + left - self.padding, y + top - self.padding, "nearest", 0.0)

    def get_config(self):
        config = super().get_config()
        config.update(crop=self.crop, flip=self.flip, padding=self.padding, scale=list(self.scale),
                      ratio=list(self.ratio), interpolation=self.interpolation)
        return config


@keras.saving.register_keras_serializable(package="drloc")
class RandomErasing(_ImageLayer):
    """timm's `RandomErasing` in `pixel` mode (one box), per image.

    With probability `probability` an image gets one box: ten tries of an area fraction
    uniform in `[min_area, max_area]` and an aspect ratio log-uniform in
    `[min_aspect, 1 / min_aspect]` (sides rounded half to even), the first that fits strictly
    inside the image, at a uniform position. The box is filled with per-pixel Gaussian noise
    that is `N(0, 1)` after the input normalisation: `mean + std * N(0, 1)` per channel here,
    in the units the layer sees (`mean=0, std=1` when the images it sees are already
    normalised).

    Args:
        probability, min_area, max_area, min_aspect: timm's (0.25, 0.02, 1/3, 0.3).
        mean, std: the input normalisation's per-channel statistics (numbers or one per channel).
        seed: int or None.
    """

    def __init__(self, probability=0.25, min_area=0.02, max_area=1 / 3, min_aspect=0.3, mean=0.0, std=1.0,
                 seed=None, **kwargs):
        probability = _number("probability", probability, 0, 1, allowed="a probability in [0, 1]")
        min_area = _number("min_area", min_area, 0, 1, low_open=True, allowed="a number in (0, 1]")
        max_area = _number("max_area", max_area, min_area, 1, allowed=f"a number in [min_area={min_area:g}, 1]")
        min_aspect = _number("min_aspect", min_aspect, 0, low_open=True, allowed="a number > 0")
        super().__init__(seed=seed, **kwargs)
        self.probability, self.min_area, self.max_area, self.min_aspect = probability, min_area, max_area, min_aspect
        self.mean = _channels("mean", mean, "a number or one number per channel")
        self.std = _channels("std", std, "a number or one number per channel")

    def draw(self, batch_size, height, width):
        """`erase` (bool) and the box `top`, `left`, `height`, `width` (float), each `[batch_size]`."""
        tries = 10
        u = self._uniforms((batch_size,), 2 + 4 * tries)  # erase, the noise's key, four groups of `tries`
        erase = u[:, 0] <= self.probability
        area = float(height * width)
        target = (self.min_area + (self.max_area - self.min_area) * u[:, 2:2 + tries]) * area
        log_low = math.log(self.min_aspect)
        aspect = ops.exp(log_low + (-2.0 * log_low) * u[:, 2 + tries:2 + 2 * tries])
        h = ops.round(ops.sqrt(target * aspect))
        w = ops.round(ops.sqrt(target / aspect))
        fits = (w < width) & (h < height)
        top = image_ops.uniform_int(u[:, 2 + 2 * tries:2 + 3 * tries], 0.0, height - h)
        left = image_ops.uniform_int(u[:, 2 + 3 * tries:2 + 4 * tries], 0.0, width - w)
        index = ops.expand_dims(ops.argmax(ops.cast(fits, "int32"), axis=1), 1)

        def first(values):
            return ops.squeeze(ops.take_along_axis(values, index, axis=1), 1)

        # The noise's key: 24 bits of the first image's uniform (image_ops.hashed_normal).
        key = ops.cast(ops.floor(u[0, 1] * float(1 << 24)), "int32")
        return {"erase": erase & ops.any(fits, axis=1), "top": first(top), "left": first(left),
                "height": first(h), "width": first(w), "key": key}

    def apply(self, images, params):
        """`images` with the boxes of `params` (from `draw`) filled with the noise
        `params["noise"]` (`[B, H, W, C]`, N(0, 1); drawn here when absent)."""
        images = ops.cast(images, "float32")
        height, width = images.shape[1], images.shape[2]
        noise = params.get("noise")
        if noise is None:  # a hash of a drawn key: XLA's CPU generator is slow (image_ops.hashed_normal)
            key = params["key"]
            noise = image_ops.hashed_normal((images.shape[0] or ops.shape(images)[0], height, width,
                                             images.shape[3]), key)
        rows = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1, 1))
        cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width, 1))

        def per_image(v):
            return ops.reshape(ops.cast(v, "float32"), (-1, 1, 1, 1))

        top, left = per_image(params["top"]), per_image(params["left"])
        box = ((rows >= top) & (rows < top + per_image(params["height"]))
               & (cols >= left) & (cols < left + per_image(params["width"])))
        box = box & ops.reshape(params["erase"], (-1, 1, 1, 1))
        fill = (ops.reshape(ops.convert_to_tensor(self.mean, "float32"), (1, 1, 1, -1))
                + ops.reshape(ops.convert_to_tensor(self.std, "float32"), (1, 1, 1, -1)) * noise)
        return ops.where(box, fill, images)

    def get_config(self):
        config = super().get_config()
        config.update(probability=self.probability, min_area=self.min_area, max_area=self.max_area,
                      min_aspect=self.min_aspect, mean=self.mean, std=self.std)
        return config


@keras.saving.register_keras_serializable(package="drloc")
class MixUpCutMix(_RandomLayer):
    """timm's `Mixup` in `batch` mode: one lambda for the whole batch.

    With probability `probability` the batch is mixed: CutMix with probability
    `switch_probability` (when both are on), else MixUp; lambda ~ Beta(alpha, alpha) of the
    chosen one. Image `i` is mixed with image `B - 1 - i`. MixUp:
    `lam * x + (1 - lam) * x_mirrored`. CutMix pastes the mirrored images' box of sides
    `int(side * sqrt(1 - lam))` centred at a uniform pixel (clipped to the image) and sets
    lambda to one minus the box's share of the image. Labels are mixed with the same lambda
    (label smoothing is the loss's: on mixed one-hot labels it equals timm's
    `mixup_target`).

    Args:
        mixup: MixUp's alpha (0: off). cutmix: CutMix's alpha (0: off).
        switch_probability: timm's `switch_prob` (0.5). probability: timm's `prob` (1.0).
        seed: int or None.

    Call arguments: `{"images": [B, H, W, C], "labels": [B, K]}`; returns the same dict.
    """

    def __init__(self, mixup=0.8, cutmix=1.0, switch_probability=0.5, probability=1.0, seed=None, **kwargs):
        mixup = _number("mixup", mixup, 0, allowed="a number >= 0 (MixUp's alpha; 0 turns it off)")
        cutmix = _number("cutmix", cutmix, 0, allowed="a number >= 0 (CutMix's alpha; 0 turns it off)")
        switch_probability = _number("switch_probability", switch_probability, 0, 1, allowed="a probability in [0, 1]")
        probability = _number("probability", probability, 0, 1, allowed="a probability in [0, 1]")
        super().__init__(seed=seed, **kwargs)
        self.mixup, self.cutmix = mixup, cutmix
        self.switch_probability, self.probability = switch_probability, probability

    def draw(self, height, width, count=None):
        """The batch's parameters (scalars): `mixed` (bool), `use_cutmix` (bool), `lam` (the
        drawn lambda) and the CutMix box `top`, `bottom`, `left`, `right` (rows `top:bottom`,
        columns `left:right`). With `count`, `count` batches' parameters (each `[count]`)."""
        shape = () if count is None else (count,)
        per_beta = 2 * (2 * CANDIDATES + 1)  # two Gamma draws
        u = self._uniforms(shape, 4 + 2 * per_beta)
        mixed = u[..., 0] < self.probability
        switch = u[..., 1] < self.switch_probability
        if self.mixup > 0 and self.cutmix > 0:
            use_cutmix = switch
        else:
            use_cutmix = ops.full(shape, self.cutmix > 0)
        # Both lambdas are drawn (a select, not a branch: one program on every backend).
        lam = ops.where(use_cutmix, self._beta(self.cutmix, u[..., 4:4 + per_beta]),
                        self._beta(self.mixup, u[..., 4 + per_beta:]))
        ratio = ops.sqrt(1.0 - lam)
        cut_h, cut_w = ops.floor(height * ratio), ops.floor(width * ratio)
        cy = image_ops.uniform_int(u[..., 2], 0.0, height - 1.0)
        cx = image_ops.uniform_int(u[..., 3], 0.0, width - 1.0)
        top = ops.clip(cy - ops.floor(cut_h / 2), 0.0, height)
        bottom = ops.clip(cy + ops.floor((cut_h + 1) / 2), 0.0, height)
        left = ops.clip(cx - ops.floor(cut_w / 2), 0.0, width)
        right = ops.clip(cx + ops.floor((cut_w + 1) / 2), 0.0, width)
        return {"mixed": mixed, "use_cutmix": use_cutmix, "lam": lam, "top": top, "bottom": bottom, "left": left,
                "right": right}

    def _beta(self, alpha, u):
        """Beta(alpha, alpha) from the uniforms `u` `[..., 2 * (2 * CANDIDATES + 1)]` (one value
        per leading index), as the ratio of two Gamma(alpha) draws.

        Not `keras.random.beta`: TensorFlow's gamma sampler has no XLA kernel, so a step that
        draws it cannot be compiled there (the augmentation is compiled by XLA on TensorFlow).
        Each Gamma is Marsaglia and Tsang's method with `CANDIDATES` candidates at once, the
        first accepted one kept (each is accepted with probability above 0.95 for shape >= 1,
        so all are rejected with probability below 1e-20), and for alpha < 1 the boost
        `Gamma(alpha + 1) * U ** (1 / alpha)`. An alpha of 0 (the mixer is off) gives 1."""
        if alpha == 0:
            return ops.ones_like(u[..., 0])
        boosted = alpha < 1
        a = alpha + 1.0 if boosted else alpha
        d = a - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)

        def gamma(u):
            normal = _normal(u[..., :CANDIDATES])
            uniform = u[..., CANDIDATES:2 * CANDIDATES]
            v = (1.0 + c * normal) ** 3
            safe_v = ops.maximum(v, 1e-30)
            accept = (v > 0) & (ops.log(ops.maximum(uniform, 1e-30))
                                < 0.5 * normal**2 + d - d * safe_v + d * ops.log(safe_v))
            first = ops.expand_dims(ops.argmax(ops.cast(accept, "int32"), axis=-1), -1)
            log_value = math.log(d) + ops.log(ops.squeeze(ops.take_along_axis(safe_v, first, axis=-1), -1))
            if boosted:  # in logarithms: U ** (1 / alpha) underflows float32 for a small alpha
                log_value = log_value + ops.log(ops.maximum(u[..., 2 * CANDIDATES], 1e-37)) / alpha
            return log_value

        half = 2 * CANDIDATES + 1
        log_x, log_y = gamma(u[..., :half]), gamma(u[..., half:])
        return ops.sigmoid(log_x - log_y)  # x / (x + y)

    def apply(self, images, labels, params):
        """`(images, labels, lam)` mixed with `params` (from `draw`); `lam` is the labels'
        weight of the unmirrored image (CutMix's corrected to the box's area; 1 when the
        batch was not mixed)."""
        images = ops.cast(images, "float32")
        labels = ops.cast(labels, "float32")
        height, width = images.shape[1], images.shape[2]
        mirrored = ops.flip(images, axis=0)
        rows = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1, 1))
        cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width, 1))
        box = ((rows >= params["top"]) & (rows < params["bottom"]) & (cols >= params["left"])
               & (cols < params["right"]))
        cut = ops.where(box, mirrored, images)
        box_area = (params["bottom"] - params["top"]) * (params["right"] - params["left"])
        lam_cut = 1.0 - box_area / float(height * width)
        lam = params["lam"]
        blended = lam * images + (1.0 - lam) * mirrored
        use_cutmix = params["use_cutmix"]
        out = ops.where(use_cutmix, cut, blended)
        lam = ops.where(use_cutmix, lam_cut, lam)
        out = ops.where(params["mixed"], out, images)
        lam = ops.where(params["mixed"], lam, 1.0)
        labels = lam * labels + (1.0 - lam) * ops.flip(labels, axis=0)
        return out, labels, lam

    def call(self, inputs, training=True):
        images, labels = inputs["images"], inputs["labels"]
        if not training or (self.mixup == 0 and self.cutmix == 0):
            return {**inputs, "images": ops.cast(images, "float32")}
        images, labels, _ = self.apply(images, labels, self.draw(images.shape[1], images.shape[2]))
        return {**inputs, "images": images, "labels": labels}

    def compute_output_spec(self, inputs, training=True):
        return {k: keras.KerasTensor(v.shape, dtype="float32") for k, v in inputs.items()}

    def get_config(self):
        config = super().get_config()
        config.update(mixup=self.mixup, cutmix=self.cutmix, switch_probability=self.switch_probability,
                      probability=self.probability)
        return config


def _whole(images):
    """`images`, computed in full before any later operation reads them.

    XLA (the step on JAX; the augmentation's cluster on TensorFlow) fuses a layer's last
    operations into the operations that read its output. A reader that takes two elements of
    each image, as MixUp and CutMix do (the image and its partner in the flipped batch), then
    computes the whole previous layer twice: RandAugment followed by a mix took twice
    RandAugment's time. A branch boundary stops the fusion; the condition (the first value
    equals itself) holds for every number, and its other branch (taken only for a NaN) gives
    the same images. PyTorch runs the step without XLA: nothing to stop there."""
    if keras.backend.backend() == "torch":
        return images
    first = ops.reshape(images, (-1,))[0]
    return ops.cond(first == first, lambda: images, lambda: images + 0.0)


@keras.saving.register_keras_serializable(package="drloc")
class Augmentation(keras.layers.Layer):
    """The authors' training augmentation inside the model's step (see the module docstring).

    Args:
        crop: `"padded"` (random crop with 4 pixels of zero padding), `"resized"` (timm's
            random resized crop) or None (default).
        flip: random horizontal flip (default True; probability 0.5).
        randaugment: a timm RandAugment string (`"rand-m9-mstd0.5-inc1"`, the authors'),
            True (the same) or False / None (off). Default True.
        random_erasing: probability of erasing a box of an image (default 0.25; 0: off).
        mixup: MixUp's alpha (default 0: off; the authors' 0.8).
        cutmix: CutMix's alpha (default 0: off; the authors' 1.0).
        mix_switch_probability: the chance of CutMix when both are on (timm's 0.5).
        fill: RandAugment's fill colour (0-255; timm: the normalisation's mean; default 128).
        mean, std: the input normalisation's statistics in pixel units, for the erasing's
            noise (default 0 and 1: the images the model sees are its normalised input).
        interpolation: of the resized crop and of RandAugment's geometric operations
            (`"bicubic"`, the authors').
        seed: int or None; every sub-layer draws from its own stream of it.

    Called on images it returns float32 images; called on `{"images", "labels"}` it
    returns the same dict with augmented images and (when a mixer is on) mixed labels.
    """

    def __init__(self, flip=True, randaugment=True, random_erasing=0.25, mixup=0.0, cutmix=0.0, seed=None,
                 crop=None, mix_switch_probability=0.5, fill=128.0, mean=0.0, std=1.0, interpolation="bicubic",
                 **kwargs):
        if not isinstance(flip, bool):
            raise ValueError(f"`flip` must be True or False. Found flip={flip!r}")
        if randaugment is True:
            randaugment = RANDAUGMENT_POLICY
        elif randaugment is False:
            randaugment = None
        if randaugment is not None:
            parse_randaugment(randaugment)  # checked here, with the argument's name
        random_erasing = _number("random_erasing", random_erasing, 0, 1, allowed="a probability in [0, 1]")
        mixup = _number("mixup", mixup, 0, allowed="a number >= 0 (MixUp's alpha; 0 turns it off)")
        cutmix = _number("cutmix", cutmix, 0, allowed="a number >= 0 (CutMix's alpha; 0 turns it off)")
        seed = _seed(seed)
        kwargs["dtype"] = "float32"  # augmentation computes in float32 under any policy
        super().__init__(**kwargs)
        self.flip, self.randaugment, self.random_erasing = flip, randaugment, random_erasing
        self.mixup, self.cutmix, self.seed, self.crop = mixup, cutmix, seed, crop
        self.mix_switch_probability, self.interpolation = float(mix_switch_probability), interpolation
        self.fill = _channels("fill", fill, "a number or one number per channel, 0-255")
        self.mean = _channels("mean", mean, "a number or one number per channel")
        self.std = _channels("std", std, "a number or one number per channel")
        self.crop_flip = None
        if crop is not None or flip:
            self.crop_flip = CropFlip(crop=crop, flip=0.5 if flip else 0.0, interpolation=interpolation, seed=seed,
                                      name="crop_flip")
        self.rand_augment = None if randaugment is None else RandAugment.from_policy(
            randaugment, fill=self.fill, interpolation=interpolation, seed=seed, name="rand_augment")
        self.erasing = None if random_erasing == 0 else RandomErasing(
            random_erasing, mean=self.mean, std=self.std, seed=seed, name="random_erasing")
        self.mixing = None if mixup == 0 and cutmix == 0 else MixUpCutMix(
            mixup, cutmix, switch_probability=self.mix_switch_probability, seed=seed, name="mixup_cutmix")
        if seed is not None:  # sub-layers seeded alike would draw alike: each gets its own stream
            streams.reseed(self, seed)

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            images, labels = inputs["images"], inputs.get("labels")
        else:
            images, labels = inputs, None
        images = ops.cast(images, "float32")
        if training:
            augment = self._augment
            if keras.backend.backend() == "tensorflow":
                augment = self._xla_on_tensorflow()
            images, labels = augment(images, labels)
        if isinstance(inputs, dict):
            return {**inputs, "images": images, **({"labels": labels} if labels is not None else {})}
        return images

    def _augment(self, images, labels=None):
        for layer in (self.crop_flip, self.rand_augment, self.erasing):
            if layer is not None:
                images = _whole(layer(images, training=True))
        if labels is not None and self.mixing is not None:
            mixed = self.mixing({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        return images, labels

    def _xla_on_tensorflow(self):
        """`_augment` compiled by XLA inside a TensorFlow graph.

        Keras runs the TensorFlow step without XLA on a machine without an accelerator, where
        the augmentation's few hundred small operations run one by one (56 ms a batch of 128
        images of 32x32 on 2 cores, against about 24 ms as one XLA cluster; docs/benchmarks.md).
        Executed eagerly (a direct call) it runs op by op, with nothing to compile."""
        import tensorflow as tf

        if tf.executing_eagerly():
            return self._augment
        if getattr(self, "_xla_augment", None) is None:
            self._xla_augment = tf.function(self._augment, jit_compile=True, autograph=False)
        return self._xla_augment

    def compute_output_spec(self, inputs, training=None):
        def spec(x):
            return keras.KerasTensor(x.shape, dtype="float32")

        if isinstance(inputs, dict):
            return {k: spec(v) for k, v in inputs.items()}
        return spec(inputs)

    def get_config(self):
        config = super().get_config()
        config.update(flip=self.flip, randaugment=self.randaugment, random_erasing=self.random_erasing,
                      mixup=self.mixup, cutmix=self.cutmix, seed=self.seed, crop=self.crop,
                      mix_switch_probability=self.mix_switch_probability, fill=self.fill, mean=self.mean,
                      std=self.std, interpolation=self.interpolation)
        config.pop("dtype", None)
        return config

    def __repr__(self):
        return (f"Augmentation(crop={self.crop!r}, flip={self.flip}, randaugment={self.randaugment!r}, "
                f"random_erasing={self.random_erasing:g}, mixup={self.mixup:g}, cutmix={self.cutmix:g}, "
                f"seed={self.seed})")
