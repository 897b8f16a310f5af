"""`DRLocHead`: pair sampling, gathering, targets and the DRLoc MLP (spec sections 2 to 5)."""

import keras
from keras import ops

from drloc_keras import streams
from drloc_keras import initializers
from drloc_keras.catalog import HEAD_INITIALIZERS as INITIALIZERS
from drloc_keras.losses import check_mode
from drloc_ref import HIDDEN, MODE, SAMPLE_SIZE
from drloc_keras.replicas import replica_context


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Found {name}={value!r}")


HIDDEN_AUTO = "auto"
AUTO_HIDDEN_CAP = 512


def check_hidden(hidden, name="hidden"):
    if hidden != HIDDEN_AUTO and (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1):
        raise ValueError(f"`{name}` must be an integer >= 1 or 'auto'. Found {name}={hidden!r}")


def check_initializer(initializer, name="initializer"):
    if initializer not in INITIALIZERS:
        raise ValueError(f"`{name}` must be one of {INITIALIZERS}. Found {name}={initializer!r}")


def hidden_width(hidden, channels):
    """The MLP width of a head on `channels`-channel features: `hidden` itself, or for
    `"auto"` twice the channels, at most 512 (so 512, the authors' width, for C >= 256)."""
    if hidden == HIDDEN_AUTO:
        return min(AUTO_HIDDEN_CAP, 2 * int(channels))
    return hidden


def _dense_initializers(initializer, fan_in, fan_out):
    """`{"kernel_initializer", "bias_initializer"}` of a head's Dense layer from `fan_in` to
    `fan_out` features. The authors' code re-initialises the DRLoc MLP with the model it sits
    in: "trunc_normal" (Swin, T2T-ViT: timm's truncated normal, std 0.02, zero biases) or
    "torch_default" (ViT, CvT, ResNet-50: PyTorch's `nn.Linear` default, uniform with bound
    1/sqrt(fan_in) for the weight and the bias); "glorot" is Keras' Dense default."""
    if initializer == "glorot":
        return {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}
    return initializers.dense(initializer, fan_in, fan_out)


def _check_grid(height, width, where):
    for name, value in (("height", height), ("width", width)):
        if value is None:
            raise ValueError(
                f"The feature map {where} must have a static {name}; found shape with "
                f"{name}=None. DRLoc needs the grid size to define its targets."
            )
        if value < 2:
            raise ValueError(
                f"The feature map {where} must have height and width >= 2 (a 1-wide axis has "
                f"no relative position). Found {name}={value}"
            )


def sample_positions(batch, height, width, m, seed, replica=0, replicas=1):
    """`m` uniform grid positions per image, `int32 [B, m, 2]` of (row, col) (spec section 2).

    `seed` is a `keras.random.SeedGenerator` (or an int): the draw is a pure function of
    its state, so it is reproducible and new at every step of a compiled training loop.

    `replica` and `replicas` serve data-parallel replicas that share one seed state (see
    `drloc_keras.replicas`): the positions are drawn for all `replicas * batch` images and
    replica `replica` keeps its own slice of `batch` images. Every image of the global
    batch then gets its own positions, the same ones a single device would draw for it.
    """
    if replicas == 1:
        rows = keras.random.randint((batch, m), 0, height, dtype="int32", seed=seed)
        cols = keras.random.randint((batch, m), 0, width, dtype="int32", seed=seed)
    else:
        rows = keras.random.randint((replicas, batch, m), 0, height, dtype="int32", seed=seed)
        cols = keras.random.randint((replicas, batch, m), 0, width, dtype="int32", seed=seed)
        rows, cols = ops.take(rows, replica, axis=0), ops.take(cols, replica, axis=0)
    return ops.stack([rows, cols], axis=-1)


def gather(features, positions):
    """`out[b, i] = features[b, row, col]` without loops: `[B, m, C]` (spec section 3)."""
    shape = ops.shape(features)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    positions = ops.cast(positions, "int32")
    image_offset = ops.expand_dims(ops.arange(batch, dtype="int32") * (height * width), -1)
    flat_index = image_offset + positions[..., 0] * width + positions[..., 1]
    flat = ops.reshape(features, (-1, channels))
    return ops.take(flat, flat_index, axis=0)


def relative_targets(p, q, height, width, use_abs=True, normalize=False):
    """float32 `[B, m, 2]` targets of the spec's table (section 4); rows use H, cols W."""
    k_minus_1 = ops.convert_to_tensor([height - 1.0, width - 1.0], dtype="float32")
    d = ops.cast(ops.cast(p, "int32") - ops.cast(q, "int32"), "float32")
    if use_abs:
        target, scale = ops.abs(d), k_minus_1
    else:
        target, scale = d + k_minus_1, 2.0 * k_minus_1
    if normalize:
        target = target / scale
    return target


def offset_classes(height, width, use_abs=True):
    """Classes per axis for the `ce`/`cbr` heads: `(K_rows, K_cols)`."""
    if use_abs:
        return height, width
    return 2 * height - 1, 2 * width - 1


@keras.saving.register_keras_serializable(package="drloc")
class DRLocHead(keras.layers.Layer):
    """Dense relative localization head.

    Samples `sample_size` pairs of positions `(p, q)` per image of a feature map, feeds
    `concat([F[p], F[q]])` to a small MLP and returns its prediction together with the
    relative-position target of each pair. The MLP is
    `Dense(hidden) -> ReLU -> Dense(hidden) -> ReLU -> Dense(2)` for `mode="l1"`; for
    `"ce"` and `"cbr"` the last layer is `Dense(hidden)` and two unshared classifiers
    follow, one per axis, with as many classes as the axis has offsets.

    Args:
        mode: `"l1"` (regress the offsets), `"ce"` (classify them) or `"cbr"`
            (variance-aware regression over the class distribution).
        sample_size: pairs per image, `m` (default 64).
        hidden: width of the MLP (default 512, the authors'), or `"auto"`: twice the
            channels of the feature map, at most 512 (a head in proportion to a small
            backbone; 512 for C >= 256).
        use_abs: predict `|p - q|` (default) instead of the signed offset.
        normalize: divide targets into [0, 1] (only with `mode="l1"`).
        initializer: `"glorot"` (default: Keras' Dense initialisation, Glorot-uniform
            kernels, zero biases), `"trunc_normal"` (the authors' Swin and T2T-ViT: timm's
            truncated normal of std 0.02, zero biases) or `"torch_default"` (the authors'
            ViT, CvT and ResNet-50: PyTorch's default `nn.Linear`, uniform with bound
            1/sqrt(fan_in) for kernel and bias).
        seed: int or None, seeds the layer's own `keras.random.SeedGenerator`, from which
            it draws when it samples on its own (`DRLocModel` passes every head the
            model's one generator instead, see `sample`).

    Input shape:
        `[B, H, W, C]` with static `H, W >= 2` and `C`.

    Output:
        `(pred, target)`: `pred` is `[B, m, 2]` for `l1` and the tuple
        `(rows [B, m, K_r], cols [B, m, K_c])` otherwise, float32; `target` is float32
        `[B, m, 2]`.

    Example:

    >>> head = DRLocHead(sample_size=32, hidden=64, seed=0)
    >>> pred, target = head(keras.random.normal((2, 7, 7, 16)))
    >>> drloc_keras.losses.l1(pred, target)
    """

    def __init__(
        self,
        mode=MODE,
        sample_size=SAMPLE_SIZE,
        hidden=HIDDEN,
        use_abs=True,
        normalize=False,
        initializer="glorot",
        seed=None,
        **kwargs,
    ):
        check_mode(mode)
        _check_int("sample_size", sample_size, 1)
        check_hidden(hidden)
        check_initializer(initializer)
        if normalize and mode != "l1":
            raise ValueError(
                f"`normalize=True` is only allowed with mode='l1': mode={mode!r} needs integer "
                f"class targets. Use normalize=False or mode='l1'"
            )
        if seed is not None:
            _check_int("seed", seed, 0)
        super().__init__(**kwargs)
        self.mode = mode
        self.sample_size = sample_size
        self.hidden = hidden
        self.use_abs = bool(use_abs)
        self.normalize = bool(normalize)
        self.initializer = initializer
        self.seed = seed
        self.seed_generator = streams.Stream(seed, name="pair_sampler")

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"DRLocHead expects a feature map [B, H, W, C] (channels last). "
                f"Found input shape {tuple(input_shape)}"
            )
        _, height, width, channels = input_shape
        _check_grid(height, width, "given to DRLocHead")
        if channels is None:
            raise ValueError("DRLocHead needs a static channel count C; found C=None")
        self.height, self.width, self.channels = int(height), int(width), int(channels)
        self.units = hidden_width(self.hidden, self.channels)
        last_width = 2 if self.mode == "l1" else self.units

        def dense(fan_in, units, **kwargs):
            init = _dense_initializers(self.initializer, fan_in, units)
            return keras.layers.Dense(units, dtype=self.dtype_policy, **init, **kwargs)

        self.trunk = [
            dense(2 * self.channels, self.units, activation="relu", name="trunk_0"),
            dense(self.units, self.units, activation="relu", name="trunk_1"),
            dense(self.units, last_width, name="trunk_2"),
        ]
        in_width = 2 * self.channels
        for layer in self.trunk:
            layer.build((None, None, in_width))
            in_width = layer.units
        self.offset_classifiers = []
        if self.mode != "l1":
            k_rows, k_cols = offset_classes(self.height, self.width, self.use_abs)
            self.offset_classifiers = [
                dense(self.units, k_rows, name="rows"),
                dense(self.units, k_cols, name="cols"),
            ]
            for layer in self.offset_classifiers:
                layer.build((None, None, self.units))

    def sample(self, batch, seed_generator=None):
        """Draw `(p, q)`, each int32 `[batch, m, 2]`, from the layer's seed generator (or
        from `seed_generator`: `DRLocModel` draws every head's pairs from one generator).

        Under a multi-replica `tf.distribute` strategy `batch` is the replica's share of
        the global batch, and each replica keeps its own slice of a draw for the global
        batch (see `sample_positions`), so no two images share their positions.
        """
        replica, replicas = replica_context()
        seed = self.seed_generator if seed_generator is None else seed_generator
        args = (batch, self.height, self.width, self.sample_size, seed, replica, replicas)
        return sample_positions(*args), sample_positions(*args)

    def call(self, features, positions=None):
        """Args: `features [B, H, W, C]`; `positions`: optional `(p, q)` to use instead of sampling."""
        if positions is None:
            p, q = self.sample(ops.shape(features)[0])
        else:
            p, q = (ops.convert_to_tensor(x, dtype="int32") for x in positions)
        pairs = ops.concatenate([gather(features, p), gather(features, q)], axis=-1)
        target = relative_targets(p, q, self.height, self.width, self.use_abs, self.normalize)
        x = pairs
        for layer in self.trunk:
            x = layer(x)
        if self.mode == "l1":
            return ops.cast(x, "float32"), target
        rows, cols = (ops.cast(layer(x), "float32") for layer in self.offset_classifiers)
        return (rows, cols), target

    def compute_output_shape(self, features_shape, positions_shape=None):
        batch, height, width = features_shape[0], features_shape[1], features_shape[2]
        m = self.sample_size if positions_shape is None else positions_shape[0][1]
        target = (batch, m, 2)
        if self.mode == "l1":
            return target, target
        k_rows, k_cols = offset_classes(height, width, self.use_abs)
        return ((batch, m, k_rows), (batch, m, k_cols)), target

    def get_config(self):
        config = super().get_config()
        config.update(
            mode=self.mode,
            sample_size=self.sample_size,
            hidden=self.hidden,
            use_abs=self.use_abs,
            normalize=self.normalize,
            initializer=self.initializer,
            seed=self.seed,
        )
        return config
