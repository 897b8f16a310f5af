"""The DRLoc reference: the executable form of `docs/spec.md`, NumPy only.

Each function cites the section of the specification it implements; the module reads
top to bottom in the specification's order: sampling (2), gathering (3), targets (4),
the head (5), the losses (6) and the lambda schedule (7). Arrays are NumPy arrays;
feature maps are channels last, `[B, H, W, C]`; positions are `(row, col)`, 0-based.

Everything is computed in float64: this module defines the numbers that the Keras
implementation must reproduce, so it should not add rounding of its own.
"""

import numpy as np

MODES = ("l1", "ce", "cbr")
# The defaults of the method: pairs per image m (spec section 2), the head's width (section 5),
# the loss (section 6) and the lambda schedule's warm-up and end (section 7).
SAMPLE_SIZE = 64
HIDDEN = 512
MODE = "l1"
WARMUP_EPOCHS = 20
TOTAL_EPOCHS = 300

# The constants of the cycle-back regression loss (spec section 6).
CBR_VARIANCE_EPS = 1e-8
CBR_LOG_VARIANCE_WEIGHT = 0.001


# --- Argument checks -------------------------------------------------------------------


def _check_grid(height, width):
    """Spec section 1: both axes at least 2 long (a 1-wide axis has no offset)."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"`{name}` must be an integer >= 2. Found: {value!r}")
        if value < 2:
            raise ValueError(
                f"`{name}` must be >= 2: a feature map axis of length 1 has no relative "
                f"position. Found {name}={value}"
            )


def _check_count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Found: {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Found {name}={value}")


def _check_positions(name, positions, height, width, batch=None):
    positions = np.asarray(positions)
    if positions.ndim != 3 or positions.shape[-1] != 2:
        raise ValueError(
            f"`{name}` must have shape [B, m, 2] (row, col). Found shape {positions.shape}"
        )
    if not np.issubdtype(positions.dtype, np.integer):
        raise ValueError(f"`{name}` must hold integers. Found dtype {positions.dtype}")
    if batch is not None and positions.shape[0] != batch:
        raise ValueError(
            f"`{name}` has batch size {positions.shape[0]} but the feature map has {batch}"
        )
    rows, cols = positions[..., 0], positions[..., 1]
    if positions.size and (rows.min() < 0 or rows.max() >= height):
        raise ValueError(
            f"`{name}` has a row outside the grid: rows must be in [0, {height - 1}] "
            f"(height={height}). Found rows in [{rows.min()}, {rows.max()}]"
        )
    if positions.size and (cols.min() < 0 or cols.max() >= width):
        raise ValueError(
            f"`{name}` has a column outside the grid: columns must be in [0, {width - 1}] "
            f"(width={width}). Found columns in [{cols.min()}, {cols.max()}]"
        )
    return positions


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Found mode={mode!r}")


# --- Section 2: pair sampling ----------------------------------------------------------


def sample_positions(rng, batch, height, width, m):
    """Draw `m` grid positions per image, uniformly and with replacement (spec section 2).

    A pair is two calls: `p = sample_positions(...)`, then `q = sample_positions(...)`,
    which makes the four coordinates of a pair independent. Rows are drawn before
    columns, so a `Generator` in a given state always gives the same positions.

    Args:
        rng: a `numpy.random.Generator`: sampling is a pure function of its state.
        batch: number of images `B` (>= 1).
        height, width: the grid size `H`, `W` (each >= 2).
        m: positions per image (>= 1).

    Returns:
        int64 array `[B, m, 2]` of `(row, col)`.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"`rng` must be a numpy.random.Generator (np.random.default_rng(seed)). "
            f"Found: {type(rng).__name__}"
        )
    _check_count("batch", batch)
    _check_grid(height, width)
    _check_count("m", m)
    rows = rng.integers(0, height, size=(batch, m))
    cols = rng.integers(0, width, size=(batch, m))
    return np.stack([rows, cols], axis=-1).astype(np.int64)


# --- Section 3: gathering --------------------------------------------------------------


def gather(features, positions):
    """The feature vectors at `positions`: `out[b, i] = features[b, row, col]` (spec section 3).

    Args:
        features: `[B, H, W, C]` feature map.
        positions: int `[B, m, 2]` of `(row, col)` inside the grid.

    Returns:
        `[B, m, C]`, the dtype of `features`.
    """
    features = np.asarray(features)
    if features.ndim != 4:
        raise ValueError(
            f"`features` must have shape [B, H, W, C] (channels last). "
            f"Found shape {features.shape}"
        )
    batch, height, width, _ = features.shape
    positions = _check_positions("positions", positions, height, width, batch=batch)
    b = np.arange(batch)[:, None]
    return features[b, positions[..., 0], positions[..., 1]]


# --- Section 4: targets ----------------------------------------------------------------


def relative_targets(p, q, height, width, *, use_abs=True, normalize=False):
    """The regression/classification target for each pair (spec section 4).

    Per axis, with `d = p - q` and `K = height` for rows, `K = width` for columns:

    | use_abs | normalize | target              | range       |
    | False   | False     | d + (K-1)           | [0, 2K-2]   |
    | False   | True      | (d + (K-1))/(2(K-1))| [0, 1]      |
    | True    | False     | |d|                 | [0, K-1]    |
    | True    | True      | |d| / (K-1)         | [0, 1]      |

    Args:
        p, q: int `[B, m, 2]` positions (first and second point of each pair).
        height, width: the grid size.
        use_abs: predict the unsigned distance (default, the authors' `--use_abs`).
        normalize: scale the target into [0, 1] (default False, as the authors' code).

    Returns:
        float64 `[B, m, 2]`: (row target, column target).
    """
    _check_grid(height, width)
    p = _check_positions("p", p, height, width)
    q = _check_positions("q", q, height, width)
    if p.shape != q.shape:
        raise ValueError(f"`p` and `q` must have the same shape. Found {p.shape} and {q.shape}")
    k_minus_1 = np.array([height - 1, width - 1], dtype=np.float64)
    d = (p - q).astype(np.float64)
    if use_abs:
        target = np.abs(d)
        scale = k_minus_1
    else:
        target = d + k_minus_1
        scale = 2.0 * k_minus_1
    if normalize:
        target = target / scale
    return target


def num_classes(height, width, *, use_abs=True):
    """Classes per axis for the `ce` and `cbr` heads (spec section 5).

    `K` classes for unsigned targets (0 .. K-1), `2K-1` for signed ones (0 .. 2K-2).

    Returns:
        `(K_rows, K_cols)`, from `height` and `width` respectively.
    """
    _check_grid(height, width)
    if use_abs:
        return int(height), int(width)
    return 2 * int(height) - 1, 2 * int(width) - 1


# --- Section 5: the head ---------------------------------------------------------------


def _check_linear(name, layer, in_dim):
    try:
        weight, bias = layer
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a (weight [in, out], bias [out]) pair") from None
    weight, bias = np.asarray(weight), np.asarray(bias)
    if weight.ndim != 2 or bias.shape != (weight.shape[1],):
        raise ValueError(
            f"`{name}` must be (weight [in, out], bias [out]). "
            f"Found weight {weight.shape}, bias {bias.shape}"
        )
    if weight.shape[0] != in_dim:
        raise ValueError(
            f"`{name}` expects inputs of width {weight.shape[0]} but receives width {in_dim}"
        )
    return weight, bias


def head_forward(pairs, trunk, heads=()):
    """The DRLoc MLP (spec section 5).

    `trunk` is applied with ReLU between its linear layers and none after the last.
    For `l1` (`heads=()`) the trunk's output is the prediction, `[B, m, 2]`. For `ce` and
    `cbr`, `heads = ((w_rows, b_rows), (w_cols, b_cols))` are two unshared linear layers
    applied to the trunk's output, giving per-axis logits.

    Args:
        pairs: `[B, m, 2C]`, `concat([f_p, f_q])`.
        trunk: list of `(weight [in, out], bias [out])`.
        heads: `()` or the two per-axis `(weight, bias)` pairs.

    Returns:
        `[B, m, out]` for `heads=()`; otherwise `(rows [B, m, K_r], cols [B, m, K_c])`.
    """
    x = np.asarray(pairs, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"`pairs` must have shape [B, m, 2C]. Found shape {x.shape}")
    trunk = list(trunk)
    if not trunk:
        raise ValueError("`trunk` must hold at least one (weight, bias) pair. Found none")
    for i, layer in enumerate(trunk):
        weight, bias = _check_linear(f"trunk[{i}]", layer, x.shape[-1])
        if i > 0:
            x = np.maximum(x, 0.0)
        x = x @ weight + bias
    heads = tuple(heads)
    if not heads:
        return x
    if len(heads) != 2:
        raise ValueError(
            f"`heads` must be () (l1) or ((w_rows, b_rows), (w_cols, b_cols)) (ce, cbr). "
            f"Found {len(heads)} entries"
        )
    outputs = []
    for name, layer in zip(("heads[0] (rows)", "heads[1] (cols)"), heads):
        weight, bias = _check_linear(name, layer, x.shape[-1])
        outputs.append(x @ weight + bias)
    return tuple(outputs)


# --- Section 6: the losses -------------------------------------------------------------


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _l1_loss(pred, target):
    """Mean absolute error over all `B*m*2` elements (the authors' reduction)."""
    return float(np.mean(np.abs(pred - target)))


def _ce_axis(logits, target):
    """Softmax cross-entropy against integer targets, mean over the `N = B*m` pairs."""
    log_p = _log_softmax(logits)
    picked = np.take_along_axis(log_p, target[..., None], axis=-1)[..., 0]
    return float(-np.mean(picked))


def _cbr_axis(logits, target):
    """Cycle-back variance-aware regression on one axis (from Temporal Cycle-Consistency)."""
    beta = np.exp(_log_softmax(logits))
    classes = np.arange(logits.shape[-1], dtype=np.float64)
    mu = np.sum(beta * classes, axis=-1)
    var = np.sum(beta * (classes - mu[..., None]) ** 2, axis=-1) + CBR_VARIANCE_EPS
    loss = (mu - target) ** 2 / var + CBR_LOG_VARIANCE_WEIGHT * np.log(var)
    return float(np.mean(loss))


def _check_class_pred(pred, target, mode):
    try:
        rows, cols = pred
    except (TypeError, ValueError):
        raise ValueError(
            f"`pred` must be the tuple (rows [B, m, K_r], cols [B, m, K_c]) for mode={mode!r}"
        ) from None
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    for name, logits in (("pred[0] (rows)", rows), ("pred[1] (cols)", cols)):
        if logits.ndim != 3 or logits.shape[:2] != target.shape[:2]:
            raise ValueError(
                f"`{name}` must have shape [B, m, K] with [B, m] = {list(target.shape[:2])} "
                f"from `target`. Found shape {logits.shape}"
            )
    if not np.all(target == np.round(target)):
        raise ValueError(
            f"`target` must hold integer class indices for mode={mode!r}: build it with "
            f"normalize=False (normalize=True is only allowed with mode='l1')"
        )
    int_target = np.round(target).astype(np.int64)
    for axis, (name, logits) in enumerate((("rows", rows), ("cols", cols))):
        k = logits.shape[-1]
        t = int_target[..., axis]
        if t.size and (t.min() < 0 or t.max() >= k):
            raise ValueError(
                f"`target` {name} must be in [0, {k - 1}] for {k} classes. "
                f"Found values in [{t.min()}, {t.max()}]"
            )
    return rows, cols, int_target


def drloc_loss(pred, target, mode="l1"):
    """The DRLoc loss of one head (spec section 6); every mean is over the `N = B*m` pairs.

    - `l1`: `mean(|pred - target|)` over all `N*2` elements.
    - `ce`: per axis, softmax cross-entropy against the integer target; rows + cols.
    - `cbr`: per axis, `mean((mu - t)^2 / var + 0.001 * log(var))` where `mu` and `var` are
      the mean and variance (plus 1e-8) of the class index under `softmax(logits)`;
      rows + cols.

    Args:
        pred: `[B, m, 2]` for `l1`; `(rows [B, m, K_r], cols [B, m, K_c])` otherwise.
        target: `[B, m, 2]` from `relative_targets` (integer valued for `ce`/`cbr`).
        mode: one of `"l1"`, `"ce"`, `"cbr"`.

    Returns:
        The loss, a Python float.
    """
    _check_mode(mode)
    target = np.asarray(target, dtype=np.float64)
    if target.ndim != 3 or target.shape[-1] != 2:
        raise ValueError(f"`target` must have shape [B, m, 2]. Found shape {target.shape}")
    if mode == "l1":
        if isinstance(pred, (tuple, list)):
            raise ValueError("`pred` must be one [B, m, 2] array for mode='l1'. Found a tuple")
        pred = np.asarray(pred, dtype=np.float64)
        if pred.shape != target.shape:
            raise ValueError(
                f"`pred` must have the shape of `target`, {target.shape}. "
                f"Found shape {pred.shape}"
            )
        return _l1_loss(pred, target)
    rows, cols, int_target = _check_class_pred(pred, target, mode)
    axis_loss = _ce_axis if mode == "ce" else _cbr_axis
    return axis_loss(rows, int_target[..., 0]) + axis_loss(cols, int_target[..., 1])


# --- Section 7: the lambda schedule ----------------------------------------------------


def lambda_at(epoch, lam, warmup_epochs=WARMUP_EPOCHS, total_epochs=TOTAL_EPOCHS):
    """The authors' lambda for a 0-based `epoch` (spec section 7).

    Linear warm-up from 0 to `lam` over `warmup_epochs` (so `lambda_at(0, lam) == 0`), then
    linear decay that reaches 0 at `total_epochs`; past `total_epochs` it stays 0. With
    `warmup_epochs=0` there is no warm-up. The multi-scale sum of head losses (several
    feature maps, one head each) is what this lambda multiplies.
    """
    for name, value in (("epoch", epoch), ("lam", lam)):
        if isinstance(value, bool) or not np.isscalar(value) or not value >= 0:
            raise ValueError(f"`{name}` must be a number >= 0. Found {name}={value!r}")
    _check_count("warmup_epochs", warmup_epochs, minimum=0)
    _check_count("total_epochs", total_epochs, minimum=1)
    if total_epochs <= warmup_epochs:
        raise ValueError(
            f"`total_epochs` must be greater than `warmup_epochs`. "
            f"Found total_epochs={total_epochs}, warmup_epochs={warmup_epochs}"
        )
    if epoch <= warmup_epochs:
        ramp = 1.0 if warmup_epochs == 0 else min(epoch / warmup_epochs, 1.0)
        return float(lam * ramp)
    decay = 1.0 - (epoch - warmup_epochs) / (total_epochs - warmup_epochs)
    return float(lam * max(decay, 0.0))
