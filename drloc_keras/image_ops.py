"""Image operations of timm's training transforms, per image, in `keras.ops`.

timm's RandAugment (`timm.data.auto_augment`) applies Pillow operations to one uint8 image at
a time. The functions here compute the same operations on a whole batch at once, each image
with its own parameters, so that they compile into the training step on every backend. They
take float images `[B, H, W, C]` holding 0-255 values and return the values Pillow returns
(integers, rounded as Pillow rounds them): a later operation then sees what it would see in
timm. An operation that maps each value of a channel to a value (autocontrast, equalize,
posterize, ...) is a table per image and channel, `[B, C, 256]`, read by `lookup` (Pillow's
`Image.point`); the tables that need the image's statistics are built here (`equalize_table`,
`autocontrast_table`), the others by `drloc_keras.augmentation.RandAugment`. Where Pillow's result is an integer computed in float64, the float32 arithmetic here can
land one grey level off on a few pixels; `tests/keras/test_timm_augmentation.py` states the
tolerance of each operation against Pillow.

Geometry follows Pillow's convention: pixel `i` covers `[i, i + 1)`, so its centre is
`i + 0.5`. `sample` reads an image at such coordinates: a point outside the image takes the
fill colour, a point inside reads its neighbours clamped to the edge (Pillow's `transform`).
"""

import math

from keras import ops

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


def _gather(flat, rows, cols, width):
    """`flat[b, rows * width + cols, :]` for index maps `[B, N]`: `[B, N, C]`.

    One gather along the first axis of the batch's pixels `[B * H * W, C]` (`flat` is
    `[B, H * W, C]`): `take_along_axis` costs several times as much on TensorFlow without XLA
    (Keras' default on the CPU), where it builds index tensors for every axis."""
    batch, pixels, channels = ops.shape(flat)[0], flat.shape[1], flat.shape[2]
    offsets = ops.reshape(ops.arange(batch, dtype="int32") * pixels, (-1, 1))
    index = ops.cast(rows * width + cols, "int32") + offsets
    return ops.take(ops.reshape(flat, (-1, channels)), index, axis=0)


def _cubic(d, a):
    """The four weights of cubic convolution (parameter `a`) at fraction `d` past the second tap."""
    def near(t):  # |t| <= 1
        return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0

    def far(t):  # 1 < |t| < 2
        return ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a

    return far(1.0 + d), near(d), near(1.0 - d), far(2.0 - d)


def _pillow_cubic(v1, v2, v3, v4, d):
    """Cubic convolution (a = -1) of four taps at fraction `d` past the second, in Pillow's
    form: `v2 + d (p2 + d (p3 + d p4))`."""
    return v2 + d * ((v3 - v1) + d * ((2.0 * (v1 - v2) + v3 - v4) + d * (v2 - v1 + v4 - v3)))


def sample(images, x, y, interpolation="bilinear", fill=0.0, cubic_a=-1.0, box=None):
    """Read `images` `[B, H, W, C]` at Pillow coordinates `x`, `y` (`[B, Ho, Wo]` each).

    A point with `x` outside `[0, W)` or `y` outside `[0, H)` takes `fill` (a number or one
    per channel); inside, `interpolation` (`nearest`, `bilinear` or `bicubic`) reads the
    neighbours, clamped to the image. `cubic_a` is the cubic kernel's parameter: Pillow's
    `transform` uses -1, its `resize` -0.5. With `box` (`(top, left, bottom, right)`, each
    `[B, 1, 1]`, whole pixels) the image is read as if cropped to the box first, as Pillow's
    `crop(...).resize(...)`: neighbours outside the box get no weight and the others are
    renormalised. Returns float `[B, Ho, Wo, C]`, not rounded.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"`interpolation` must be one of {INTERPOLATIONS}. Found {interpolation!r}")
    shape = ops.shape(images)
    batch, height, width, channels = shape[0], images.shape[1], images.shape[2], images.shape[3]
    out_h, out_w = x.shape[1], x.shape[2]
    flat = ops.reshape(images, (batch, height * width, channels))
    x = ops.reshape(x, (batch, out_h * out_w))
    y = ops.reshape(y, (batch, out_h * out_w))
    inside = (x >= 0.0) & (x < width) & (y >= 0.0) & (y < height)

    def clamp_rows(r):
        return ops.clip(r, 0, height - 1)

    def clamp_cols(c):
        return ops.clip(c, 0, width - 1)

    if box is not None:
        top, left, bottom, right = (ops.reshape(v, (batch, 1)) for v in box)
    if interpolation == "nearest":
        value = _gather(flat, clamp_rows(ops.floor(y)), clamp_cols(ops.floor(x)), width)
    else:
        xs, ys = x - 0.5, y - 0.5
        x0, y0 = ops.floor(xs), ops.floor(ys)
        dx, dy = xs - x0, ys - y0
        offsets = (0, 1) if interpolation == "bilinear" else (-1, 0, 1, 2)
        cols = [clamp_cols(x0 + ox) for ox in offsets]
        if interpolation == "bicubic" and cubic_a == -1.0 and box is None:
            # Pillow's transform: each row's four taps, then the four rows, as one polynomial in
            # the fraction (its BICUBIC macro). Exact on a flat region, where summing weighted
            # taps lands a hair below the value and the 8-bit truncation then a level lower.
            ex, ey = ops.expand_dims(dx, -1), ops.expand_dims(dy, -1)
            rows = [_pillow_cubic(*(_gather(flat, clamp_rows(y0 + oy), c, width) for c in cols), ex)
                    for oy in offsets]
            value = _pillow_cubic(*rows, ey)
        else:
            if interpolation == "bilinear":
                wx, wy = (1.0 - dx, dx), (1.0 - dy, dy)
            else:
                wx, wy = _cubic(dx, cubic_a), _cubic(dy, cubic_a)
            if box is not None:  # taps outside the box get no weight; the rest sum to 1
                wx = [w * ops.cast((x0 + o >= left) & (x0 + o < right), w.dtype) for w, o in zip(wx, offsets)]
                wy = [w * ops.cast((y0 + o >= top) & (y0 + o < bottom), w.dtype) for w, o in zip(wy, offsets)]
                sx, sy = sum(wx[1:], wx[0]), sum(wy[1:], wy[0])
                wx = [w / sx for w in wx]
                wy = [w / sy for w in wy]
            value = None
            for i, oy in enumerate(offsets):
                row = None
                rows = clamp_rows(y0 + oy)
                for j, c in enumerate(cols):
                    tap = _gather(flat, rows, c, width) * ops.expand_dims(wx[j], -1)
                    row = tap if row is None else row + tap
                term = row * ops.expand_dims(wy[i], -1)
                value = term if value is None else value + term
    fill = ops.reshape(ops.cast(ops.convert_to_tensor(fill), value.dtype), (1, 1, -1))
    value = ops.where(ops.expand_dims(inside, -1), value, fill)
    return ops.reshape(value, (batch, out_h, out_w, channels))


def pixel_grid(batch, height, width):
    """Pillow coordinates of the pixel centres, `(x, y)`, each `[B, H, W]`."""
    cols = ops.arange(width, dtype="float32") + 0.5
    rows = ops.arange(height, dtype="float32") + 0.5
    x = ops.broadcast_to(ops.reshape(cols, (1, 1, width)), (batch, height, width))
    y = ops.broadcast_to(ops.reshape(rows, (1, height, 1)), (batch, height, width))
    return x, y


def affine(images, matrix, interpolation="bicubic", fill=128.0):
    """Pillow's `Image.transform(size, AFFINE, (a, b, c, d, e, f))`, per image.

    `matrix` `[B, 6]`: output pixel centre `(x, y)` reads the input at
    `(a x + b y + c, d x + e y + f)`. Truncated to integers as Pillow's 8-bit result.
    """
    batch = ops.shape(images)[0]
    x, y = pixel_grid(batch, images.shape[1], images.shape[2])
    m = [ops.reshape(matrix[:, k], (-1, 1, 1)) for k in range(6)]
    xin = m[0] * x + m[1] * y + m[2]
    yin = m[3] * x + m[4] * y + m[5]
    return to_uint8(sample(images, xin, yin, interpolation, fill, cubic_a=-1.0))


def rotation_matrix(degrees, height, width):
    """Pillow's `Image.rotate(degrees)` (counter-clockwise, about the centre) as affine
    coefficients `[B, 6]` for `affine`."""
    angle = -ops.cast(degrees, "float32") * (math.pi / 180.0)
    cos, sin = ops.cos(angle), ops.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    c = -cos * cx - sin * cy + cx
    f = sin * cx - cos * cy + cy
    return ops.stack([cos, sin, c, -sin, cos, f], axis=1)


def to_uint8(values):
    """Pillow's 8-bit store of a float result: clipped to [0, 255], truncated."""
    return ops.floor(ops.clip(values, 0.0, 255.0))


def grayscale(images):
    """Pillow's `convert("L")`: `(299 R + 587 G + 114 B) / 1000` in its fixed point,
    rounded; `[B, H, W, 1]`. Images with one channel are returned as they are."""
    if images.shape[-1] == 1:
        return images
    r, g, b = images[..., 0:1], images[..., 1:2], images[..., 2:3]
    return ops.floor((r * 19595.0 + g * 38470.0 + b * 7471.0 + 32768.0) / 65536.0)


def blend(degenerate, images, factor):
    """Pillow's `Image.blend(degenerate, images, factor)` (`ImageEnhance`): per image
    `factor` `[B]`; truncated to 8 bits."""
    factor = ops.reshape(ops.cast(factor, images.dtype), (-1, 1, 1, 1))
    return to_uint8(degenerate + factor * (images - degenerate))


def color(images, factor):
    """`ImageEnhance.Color(img).enhance(factor)`: towards (0) or away from grey."""
    return blend(ops.broadcast_to(grayscale(images), ops.shape(images)), images, factor)


def smooth(images):
    """Pillow's `ImageFilter.SMOOTH` (3x3 kernel, 5 in the middle, 1 around, divided by 13),
    rounded; the one-pixel frame keeps its values, as in Pillow."""
    height, width = images.shape[1], images.shape[2]
    padded = ops.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)))
    total = None
    for dy in range(3):
        for dx in range(3):
            part = padded[:, dy:dy + height, dx:dx + width, :]
            part = part * 5.0 if (dy, dx) == (1, 1) else part
            total = part if total is None else total + part
    smoothed = to_uint8(total / 13.0 + 0.5)
    rows = ops.arange(height)
    cols = ops.arange(width)
    inner_rows = (rows > 0) & (rows < height - 1)
    inner_cols = (cols > 0) & (cols < width - 1)
    inner = ops.reshape(inner_rows, (1, height, 1, 1)) & ops.reshape(inner_cols, (1, 1, width, 1))
    return ops.where(inner, smoothed, images)


def sharpness(images, factor):
    """`ImageEnhance.Sharpness(img).enhance(factor)`: towards (0) or away from `smooth`."""
    return blend(smooth(images), images, factor)


def lookup(images, table):
    """`table[b, c, images[b, h, w, c]]` for a per-image, per-channel table `[B, C, 256]`
    (Pillow's `Image.point`): one gather along the first axis of the flattened tables."""
    shape = ops.shape(images)
    channels = images.shape[-1]
    groups = ops.reshape(ops.arange(shape[0] * channels, dtype="int32"), (shape[0], 1, 1, channels)) * 256
    index = groups + ops.cast(ops.clip(images, 0, 255), "int32")
    return ops.reshape(ops.take(ops.reshape(table, (-1,)), ops.reshape(index, (-1,)), axis=0), shape)


def histogram(images):
    """Counts of each value 0-255 per image and channel, `[B, C, 256]` (float)."""
    shape = ops.shape(images)
    batch, channels = shape[0], images.shape[-1]
    values = ops.cast(ops.transpose(ops.reshape(images, (batch, -1, channels)), (0, 2, 1)), "int32")
    groups = ops.reshape(ops.arange(batch * channels, dtype="int32"), (batch, channels, 1)) * 256
    index = ops.reshape(groups + ops.clip(values, 0, 255), (-1,))
    counts = ops.segment_sum(ops.ones_like(index, dtype="float32"), index, num_segments=batch * channels * 256,
                             sorted=False)
    return ops.reshape(counts, (batch, channels, 256))


def equalize_table(images):
    """The table `[B, C, 256]` of `ImageOps.equalize` for each image and channel: Pillow's
    histogram equalisation (a channel with one value, or whose step is 0, keeps its values)."""
    counts = histogram(images)
    levels = ops.arange(256, dtype="float32")
    present = counts > 0
    # The count of the highest value that occurs: Pillow leaves it out of the step.
    last = ops.max(ops.where(present, levels, -1.0), axis=-1, keepdims=True)
    last_count = ops.sum(ops.where(levels == last, counts, 0.0), axis=-1, keepdims=True)
    step = ops.floor((ops.sum(counts, axis=-1, keepdims=True) - last_count) / 255.0)
    before = ops.cumsum(counts, axis=-1) - counts  # pixels below each value
    table = ops.floor((ops.floor(step / 2.0) + before) / ops.maximum(step, 1.0))
    keep = (step <= 0) | (ops.sum(ops.cast(present, "float32"), axis=-1, keepdims=True) <= 1)
    return ops.where(keep, levels, ops.minimum(table, 255.0))


def autocontrast_table(images):
    """The table `[B, C, 256]` of `ImageOps.autocontrast` for each image and channel."""
    low = ops.expand_dims(ops.min(images, axis=(1, 2)), -1)  # [B, C, 1]
    high = ops.expand_dims(ops.max(images, axis=(1, 2)), -1)
    levels = ops.arange(256, dtype="float32")
    flat = high <= low
    scale = 255.0 / ops.where(flat, 1.0, high - low)
    stretched = ops.clip(ops.trunc(levels * scale - low * scale), 0.0, 255.0)
    return ops.where(flat, levels, stretched)


def uniform_int(generator_uniform, low, high):
    """An integer uniform in `[low, high]` (both included) from a uniform in [0, 1)."""
    return ops.minimum(ops.floor(low + generator_uniform * (high - low + 1.0)), high)


def _int32(value):
    """The int32 of a 32-bit pattern (for the hash's odd constants)."""
    return value - (1 << 32) if value >= 1 << 31 else value


def _logical_shift(values, bits):
    """`values >> bits` on int32 with zeros shifted in (a right shift of a negative int32 copies
    its sign bit on every backend)."""
    return ops.bitwise_and(ops.right_shift(values, bits), (1 << (32 - bits)) - 1)


def _fmix32(x):
    """MurmurHash3's finaliser on int32 (products wrap around as uint32 ones do)."""
    x = ops.bitwise_xor(x, _logical_shift(x, 16))
    x = x * _int32(0x85EBCA6B)
    x = ops.bitwise_xor(x, _logical_shift(x, 13))
    x = x * _int32(0xC2B2AE35)
    return ops.bitwise_xor(x, _logical_shift(x, 16))


def hashed_normal(shape, key):
    """Standard normal values of `shape` from an int32 `key` (two Box-Muller uniforms per
    value from a counter hash of the element's index and the key).

    Why not `keras.random.normal`: XLA's random-number generator on the CPU takes about a
    microsecond a value (80 ms for the 98 304 values of a batch of 32 images of 32x32, the
    size of random erasing's noise, on TensorFlow), where the hash is a few integer
    operations. The key comes from the layer's generator, so the noise is a function of its
    stream. The uniforms have 24 bits; the values are N(0, 1) to the precision augmentation
    noise needs (tested against N(0, 1) and against timm's noise).
    """
    count = 1
    for size in shape:
        count *= size
    index = ops.arange(count, dtype="int32")
    key = ops.cast(key, "int32")
    first = _fmix32(ops.bitwise_xor(index * _int32(0x9E3779B1), key))
    second = _fmix32(ops.bitwise_xor(first + _int32(0x7F4A7C15), key))
    u1 = (ops.cast(_logical_shift(first, 8), "float32") + 1.0) / float(1 << 24)  # (0, 1]
    u2 = ops.cast(_logical_shift(second, 8), "float32") / float(1 << 24)  # [0, 1)
    normal = ops.sqrt(-2.0 * ops.log(u1)) * ops.cos(2.0 * math.pi * u2)
    return ops.reshape(normal, shape)
