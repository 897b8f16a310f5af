"""drloc_ref: the NumPy reference implementation of the DRLoc loss.

It is the executable specification (`docs/spec.md`) that `drloc_keras` is tested
against. NumPy only: it imports no deep-learning framework.
"""

from drloc_ref.reference import (
    MODES,
    drloc_loss,
    gather,
    head_forward,
    lambda_at,
    num_classes,
    relative_targets,
    sample_positions,
)

__all__ = [
    "MODES",
    "drloc_loss",
    "gather",
    "head_forward",
    "lambda_at",
    "num_classes",
    "relative_targets",
    "sample_positions",
]
