"""DRLocModel under mixed precision: the DRLoc term and the loss stay float32."""

import keras
import numpy as np
import pytest

from drloc_keras import DRLocModel, losses
from drloc_keras.head import DRLocHead
from tests.keras.helpers import BatchLogs, record_difference, tiny_backbone


@pytest.fixture(params=["mixed_bfloat16", "mixed_float16"])
def policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


def test_head_computes_in_the_policy_and_returns_float32(policy):
    head = DRLocHead(sample_size=8, hidden=16, mode="cbr", seed=0)
    features = keras.random.normal((2, 4, 4, 8), dtype=policy.split("_")[1])
    (rows, cols), target = head(features)
    assert head.trunk[0].compute_dtype == policy.split("_")[1]
    for tensor in (rows, cols, target):
        assert keras.backend.standardize_dtype(tensor.dtype) == "float32"
    loss = losses.cbr((rows, cols), target)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"


def test_a_few_steps_are_finite(policy):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, 16)
    model = DRLocModel(tiny_backbone(), lam=0.5, sample_size=8, hidden=16, seed=0)
    model.compile(optimizer="adam")
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    logs = BatchLogs()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[logs])
    for step in logs.batches:
        for key in ("loss", "ce_loss", "drloc_loss"):
            assert np.isfinite(step[key]), (key, step)
    assert all(step["drloc_loss"] > 0 for step in logs.batches)



# Training under a mixed policy must follow float32 training closely when the two start
# from the same weights, see the same batches and sample the same DRLoc pairs. Per-step
# losses may differ by the rounding of the policy's compute dtype carried through a few
# layers: bfloat16 keeps 8 significant bits (unit roundoff 2**-8, 0.4%), float16 keeps 11
# (2**-11, 0.05%). The bounds are about one unit of that roundoff, relative to the loss:
# a loss computed in the compute dtype instead of float32 would already spend that much.
CLOSE_TO_FLOAT32 = {"mixed_bfloat16": 5e-3, "mixed_float16": 5e-4}


class _FirstWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [np.array(w) for w in self.model.get_weights()]


def _train(policy_name, x, y):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy_name)
    try:
        keras.utils.set_random_seed(0)
        model = DRLocModel(tiny_backbone(width=16), lam=0.5, sample_size=8, hidden=16, mode="l1", seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        first, logs = _FirstWeights(), BatchLogs()
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[first, logs])
        return first.weights, logs.batches
    finally:
        keras.config.set_dtype_policy(previous)


def test_a_few_steps_stay_close_to_float32_training(policy):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, 32)
    start_32, steps_32 = _train("float32", x, y)
    start_mixed, steps_mixed = _train(policy, x, y)
    assert len(steps_32) == len(steps_mixed) == 4
    for a, b in zip(start_32, start_mixed):  # the same starting point
        np.testing.assert_array_equal(a, b.astype(a.dtype))
    bound = CLOSE_TO_FLOAT32[policy]
    for step, (s32, smixed) in enumerate(zip(steps_32, steps_mixed)):
        for key in ("loss", "ce_loss", "drloc_loss"):
            assert np.isfinite(smixed[key]), (step, key, smixed)
            relative = abs(smixed[key] - s32[key]) / abs(s32[key])
            record_difference(f"{policy} vs float32, relative {key}", relative, 0.0)
            assert relative <= bound, (step, key, smixed[key], s32[key])
