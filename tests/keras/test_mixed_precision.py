"""DRLocModel under mixed precision: the DRLoc term and the loss stay float32."""

import keras
import numpy as np
import pytest

from drloc_keras import DRLocModel, losses
from drloc_keras.layers import DRLocHead
from tests.keras.helpers import BatchLogs, tiny_backbone


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
