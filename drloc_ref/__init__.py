"""drloc_ref: the NumPy reference implementation of the DRLoc loss.

It is the executable specification (`docs/spec.md`) that `drloc_keras` is tested
against. NumPy only: it imports no deep-learning framework.
"""

from drloc_ref.reference import (
    HIDDEN,
    MODE,
    MODES,
    SAMPLE_SIZE,
    TOTAL_EPOCHS,
    WARMUP_EPOCHS,
    drloc_loss,
    gather,
    head_forward,
    lambda_at,
    num_classes,
    relative_targets,
    sample_positions,
)

__all__ = [
    "HIDDEN",
    "MODE",
    "MODES",
    "SAMPLE_SIZE",
    "TOTAL_EPOCHS",
    "WARMUP_EPOCHS",
    "drloc_loss",
    "gather",
    "head_forward",
    "lambda_at",
    "num_classes",
    "relative_targets",
    "sample_positions",
]
