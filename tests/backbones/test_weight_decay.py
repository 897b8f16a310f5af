"""What AdamW decays: kernels, never biases, norms, position embeddings, class tokens or
relative position bias tables, for every registered backbone and its DRLoc head."""

import keras
import numpy as np
import pytest

from drloc_keras import DRLocModel, backbones
from drloc_keras.optimizers import AdamW
from tests.backbones.test_registry import TINY
from tests.keras.helpers import tiny_backbone, to_numpy

# Per size: the trainable variables of rank 2 or more that are NOT decayed (path suffixes).
# Every other variable of rank 2 or more is a kernel, and is decayed.
NOT_DECAYED_TABLES = {
    "cvt_13": [],
    "cvt_13_32": [],
    "cct_7_3x1": ["positional_embedding/embedding"],
    "swin_tiny": ["attention/relative_position_bias_table"] * 3,
    "swin_tiny_32": ["attention/relative_position_bias_table"] * 3,
    "t2t_vit_14": ["class_token/token"],  # its position embedding is fixed (sinusoidal)
    "t2t_vit_14_32": ["class_token/token"],
    "vit_base_16": ["position_embedding/embedding", "class_token/token"],
    "vit_32": ["position_embedding/embedding", "class_token/token"],
    "resnet50": [],
    "resnet50_32": [],
}


def _built_optimizer(model):
    optimizer = AdamW(1e-3, weight_decay=0.05)
    optimizer.build(model.trainable_variables)
    return optimizer


@pytest.mark.parametrize("size", sorted(TINY))
def test_what_is_decayed_for_every_registered_size(size):
    args = dict(TINY[size])
    image_size = args.pop("image_size")
    model = DRLocModel(backbones.get(size, image_size=image_size, num_classes=3, **args), lam=0.5,
                       sample_size=4, hidden=8, seed=0)
    decayed = set(_built_optimizer(model).decayed_paths())
    variables = {v.path: v for v in model.trainable_variables}
    assert decayed <= set(variables)
    # Every decayed variable is a kernel (conv or dense, the DRLoc head's included).
    assert all(path.endswith("/kernel") for path in decayed), sorted(decayed)
    assert any("drloc_head_0/" in path for path in decayed)
    # Every kernel is decayed; nothing of rank 0 or 1 is.
    kernels = {path for path in variables if path.endswith("/kernel")}
    assert kernels == decayed
    assert all(len(variables[p].shape) >= 2 for p in decayed)
    # The tables of rank 2 or more that are not decayed are exactly the listed ones.
    tables = sorted(
        p for p, v in variables.items() if len(v.shape) >= 2 and p not in decayed
    )
    expected = sorted(NOT_DECAYED_TABLES[size])
    matched = sorted(next((s for s in expected if path.endswith(s)), path) for path in tables)
    assert matched == expected, tables


def test_a_bias_with_zero_gradient_keeps_its_value_and_a_kernel_decays():
    model = DRLocModel(tiny_backbone(), lam=1.0, sample_size=4, hidden=8, seed=0)
    optimizer = AdamW(learning_rate=0.1, weight_decay=0.5)
    variables = model.trainable_variables
    kernel = next(v for v in variables if v.path == "stage_0/kernel")
    bias = next(v for v in variables if v.path == "stage_0/bias")
    bias.assign(keras.ops.ones(bias.shape))
    before_kernel = to_numpy(kernel).copy()
    optimizer.apply_gradients([(keras.ops.zeros(v.shape), v) for v in variables])
    np.testing.assert_array_equal(to_numpy(bias), np.ones(bias.shape))
    # Decoupled decay: kernel * (1 - lr * wd); a zero gradient adds no Adam step.
    np.testing.assert_allclose(to_numpy(kernel), before_kernel * (1 - 0.1 * 0.5), rtol=1e-6)


def test_decay_vectors_and_patterns_are_options_kept_in_the_config():
    model = DRLocModel(tiny_backbone(), lam=1.0, sample_size=4, hidden=8, seed=0)
    optimizer = AdamW(1e-3, weight_decay=0.05, decay_vectors=True, no_decay_patterns=["stage_0"])
    optimizer.build(model.trainable_variables)
    decayed = set(optimizer.decayed_paths())
    assert "logits/bias" in decayed and "stage_0/kernel" not in decayed and "stage_0/bias" not in decayed
    config = optimizer.get_config()
    assert config["decay_vectors"] is True and config["no_decay_patterns"] == ["stage_0"]
    again = AdamW.from_config(config)
    again.build(model.trainable_variables)
    assert set(again.decayed_paths()) == decayed
    with pytest.raises(ValueError, match="no_decay_patterns"):
        AdamW(1e-3, no_decay_patterns=[3])


def test_a_saved_and_loaded_model_decays_the_same_variables(tmp_path):
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    y = np.arange(16) % 4
    model = DRLocModel(tiny_backbone(), lam=1.0, sample_size=4, hidden=8, seed=0)
    model.compile(optimizer=AdamW(1e-3, weight_decay=0.05))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, AdamW)
    assert loaded.optimizer.decayed_paths() == model.optimizer.decayed_paths()
    assert "stage_0/bias" not in loaded.optimizer.decayed_paths()
