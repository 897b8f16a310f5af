"""The lambda schedules of DRLoc (spec section 7), evaluated inside the compiled step.

- `"constant"`: `lambda` at every step.
- `"warmup-decay"`: the authors' schedule over 0-based epochs `e`: `lambda * e / warmup`
  while `e <= warmup`, then `lambda * (1 - (e - warmup) / (total - warmup))`, and 0 from
  `total` on. The epoch of a training step is `floor(step / steps_per_epoch)`, so lambda
  is constant within an epoch, exactly as in the authors' code and `drloc_ref.lambda_at`.
"""

from keras import ops

from drloc_keras.catalog import LAMBDA_SCHEDULES as SCHEDULES
from drloc_ref import TOTAL_EPOCHS, WARMUP_EPOCHS


def check_schedule(schedule, lam, warmup_epochs, total_epochs):
    if schedule not in SCHEDULES:
        raise ValueError(
            f"`lam_schedule` must be one of {SCHEDULES}. Found lam_schedule={schedule!r}"
        )
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
        raise ValueError(f"`lam` must be a number >= 0. Found lam={lam!r}")
    for name, value in (("warmup_epochs", warmup_epochs), ("total_epochs", total_epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0. Found {name}={value!r}")
    if schedule == "warmup-decay" and total_epochs <= warmup_epochs:
        raise ValueError(
            f"`total_epochs` must be greater than `warmup_epochs`. "
            f"Found total_epochs={total_epochs}, warmup_epochs={warmup_epochs}"
        )


def lambda_at_epoch(epoch, lam, schedule="constant", warmup_epochs=WARMUP_EPOCHS, total_epochs=TOTAL_EPOCHS):
    """Lambda for a (float32 tensor) 0-based `epoch`, as a float32 tensor."""
    lam = ops.convert_to_tensor(float(lam), dtype="float32")
    if schedule == "constant":
        return lam
    epoch = ops.cast(epoch, "float32")
    if warmup_epochs == 0:
        ramp = ops.ones_like(epoch)
    else:
        ramp = ops.minimum(epoch / float(warmup_epochs), 1.0)
    decay = 1.0 - (epoch - warmup_epochs) / float(total_epochs - warmup_epochs)
    return lam * ops.where(epoch <= warmup_epochs, ramp, ops.maximum(decay, 0.0))
