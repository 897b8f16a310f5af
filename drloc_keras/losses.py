"""The DRLoc losses (spec section 6), with `keras.ops` only.

Every function computes in float32 whatever the dtype of its inputs (so a
`mixed_float16` or `mixed_bfloat16` head still gets a float32 loss), and every mean
runs over all `N = B*m` sampled pairs of the batch, exactly as `drloc_ref.drloc_loss`.
"""

from keras import ops

MODES = ("l1", "ce", "cbr")

CBR_VARIANCE_EPS = 1e-8
CBR_LOG_VARIANCE_WEIGHT = 0.001


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Found mode={mode!r}")
    return mode


def l1(pred, target):
    """Mean absolute error over all `B*m*2` elements.

    Args:
        pred: `[B, m, 2]` predicted offsets (rows, cols).
        target: `[B, m, 2]` targets from `relative_targets`.
    """
    pred = ops.cast(pred, "float32")
    target = ops.cast(target, "float32")
    return ops.mean(ops.abs(pred - target))


def _class_index(target):
    # Targets for `ce`/`cbr` are integer valued floats; round before casting so that
    # a value like 2.9999999 still selects class 3.
    return ops.cast(ops.round(ops.cast(target, "float32")), "int32")


def _ce_axis(logits, target):
    log_p = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    index = ops.expand_dims(_class_index(target), -1)
    return -ops.mean(ops.take_along_axis(log_p, index, axis=-1))


def _cbr_axis(logits, target):
    logits = ops.cast(logits, "float32")
    beta = ops.softmax(logits, axis=-1)
    classes = ops.cast(ops.arange(ops.shape(logits)[-1]), "float32")
    mu = ops.sum(beta * classes, axis=-1)
    var = ops.sum(beta * ops.square(classes - ops.expand_dims(mu, -1)), axis=-1)
    var = var + CBR_VARIANCE_EPS
    t = ops.cast(target, "float32")
    return ops.mean(ops.square(mu - t) / var + CBR_LOG_VARIANCE_WEIGHT * ops.log(var))


def ce(pred, target):
    """Softmax cross-entropy per axis against the integer target, rows + cols.

    Args:
        pred: `(rows [B, m, K_r], cols [B, m, K_c])` logits.
        target: `[B, m, 2]` integer-valued targets (`normalize=False`).
    """
    rows, cols = pred
    return _ce_axis(rows, target[..., 0]) + _ce_axis(cols, target[..., 1])


def cbr(pred, target):
    """Cycle-back variance-aware regression per axis, rows + cols.

    Per axis, with `beta = softmax(logits)` over classes `c`: `mu = sum(beta * c)`,
    `var = sum(beta * (c - mu)^2) + 1e-8`, loss `mean((mu - t)^2 / var + 0.001 log var)`.

    Args:
        pred: `(rows [B, m, K_r], cols [B, m, K_c])` logits.
        target: `[B, m, 2]` integer-valued targets (`normalize=False`).
    """
    rows, cols = pred
    return _cbr_axis(rows, target[..., 0]) + _cbr_axis(cols, target[..., 1])


_LOSSES = {"l1": l1, "ce": ce, "cbr": cbr}


def drloc_loss(pred, target, mode="l1"):
    """The DRLoc loss of one head: `l1`, `ce` or `cbr` (a float32 scalar)."""
    return _LOSSES[check_mode(mode)](pred, target)
