"""Bad input to the Keras half: a ValueError that names the argument and what is allowed."""

import keras
import numpy as np
import pytest
from keras import layers

from drloc_keras import DRLocModel
from drloc_keras.head import DRLocHead
from tests.keras.helpers import tiny_backbone


def _no_map_backbone():
    inputs = keras.Input((8, 8, 3))
    logits = layers.Dense(4)(layers.GlobalAveragePooling2D()(inputs))
    return keras.Model(inputs, {"logits": logits, "feature_maps": []})


def _logits_only_backbone():
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, layers.Dense(4)(layers.GlobalAveragePooling2D()(inputs)))


def _one_wide_backbone():
    inputs = keras.Input((8, 8, 3))
    feature = layers.Conv2D(4, (8, 1), padding="valid")(inputs)  # 1 x 8
    logits = layers.Dense(4)(layers.GlobalAveragePooling2D()(feature))
    return keras.Model(inputs, [logits, feature])


CASES = {
    "head mode": (lambda: DRLocHead(mode="l2"), "`mode` must be one of ('l1', 'ce', 'cbr')"),
    "head m = 0": (lambda: DRLocHead(sample_size=0), "`sample_size` must be an integer >= 1"),
    "head hidden 0": (lambda: DRLocHead(hidden=0), "`hidden`"),
    "head normalize with ce": (lambda: DRLocHead(mode="ce", normalize=True), "`normalize=True`"),
    "head normalize with cbr": (lambda: DRLocHead(mode="cbr", normalize=True), "`normalize=True`"),
    "head height 1": (lambda: DRLocHead().build((2, 1, 5, 3)), "must have height and width >= 2"),
    "head width 1": (lambda: DRLocHead().build((2, 5, 1, 3)), "Found width=1"),
    "head on tokens": (lambda: DRLocHead().build((2, 49, 3)), "[B, H, W, C]"),
    "model lam < 0": (lambda: DRLocModel(tiny_backbone(), lam=-0.1), "`lam` must be a number >= 0"),
    "model mode": (lambda: DRLocModel(tiny_backbone(), mode="mse"), "`mode`"),
    "model schedule": (lambda: DRLocModel(tiny_backbone(), lam_schedule="cosine"), "`lam_schedule`"),
    "model normalize with ce": (
        lambda: DRLocModel(tiny_backbone(), mode="ce", normalize=True),
        "`normalize=True`",
    ),
    "model m = 0": (lambda: DRLocModel(tiny_backbone(), sample_size=0), "`sample_size`"),
    "model total <= warmup": (
        lambda: DRLocModel(tiny_backbone(), lam_schedule="warmup-decay", warmup_epochs=5, total_epochs=5),
        "`total_epochs`",
    ),
    "model steps_per_epoch 0": (lambda: DRLocModel(tiny_backbone(), steps_per_epoch=0), "`steps_per_epoch`"),
    "model feature_maps index": (lambda: DRLocModel(tiny_backbone(), feature_maps=[3]), "`feature_maps`"),
    "model feature_maps kind": (lambda: DRLocModel(tiny_backbone(), feature_maps="first"), "`feature_maps`"),
    "backbone without a map": (lambda: DRLocModel(_no_map_backbone()), "at least one feature map"),
    "backbone with logits only": (lambda: DRLocModel(_logits_only_backbone()), "at least one feature map"),
    "backbone map one wide": (lambda: DRLocModel(_one_wide_backbone()), "height >= 2"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_arguments(name):
    call, fragment = CASES[name]
    with pytest.raises(ValueError) as info:
        call()
    assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize("labels", [np.array([0, 1, 4, 2]), np.array([-1, 0, 1, 2])])
def test_labels_outside_the_classes_are_refused_before_training(labels):
    model = DRLocModel(tiny_backbone(num_classes=4), sample_size=4, hidden=8)
    model.compile(optimizer="sgd")
    weights = [w.copy() for w in model.get_weights()]
    x = np.zeros((4, 8, 8, 3), "float32")
    with pytest.raises(ValueError, match=r"`y` holds class labels outside \[0, 4\)"):
        model.fit(x, labels, verbose=0)
    with pytest.raises(ValueError, match=r"`y` holds class labels"):
        model.evaluate(x, labels, verbose=0)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_one_hot_labels_of_the_wrong_width_are_refused():
    model = DRLocModel(tiny_backbone(num_classes=4), sample_size=4, hidden=8)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="`y` has 3 columns"):
        model.fit(np.zeros((4, 8, 8, 3), "float32"), np.eye(3)[[0, 1, 2, 0]], verbose=0)


def test_a_schedule_without_a_known_epoch_length_says_what_to_pass():
    import tensorflow as tf  # noqa: F401  (tf.data is how a dataset of unknown length arrives)

    model = DRLocModel(tiny_backbone(), lam_schedule="warmup-decay", sample_size=4, hidden=8)
    model.compile(optimizer="sgd")
    x = np.zeros((8, 8, 8, 3), "float32")
    y = np.zeros(8, "int64")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).filter(lambda a, b: True)
    with pytest.raises(ValueError, match="Pass `steps_per_epoch`"):
        model.fit(data, epochs=1, verbose=0, shuffle=False)
