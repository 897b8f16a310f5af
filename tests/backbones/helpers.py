"""Checks that every backbone family shares: `run_backbone_test` and `check_dtype_policy`."""

import json
import os
import tempfile

import keras
import numpy as np

# `import drloc_keras` alone registers nothing with Keras; these imports register the
# backbone classes and DRLocModel, so that `keras.saving.load_model` finds them.
import drloc_keras.backbones  # noqa: F401
import drloc_keras.model
from drloc_keras.backbones.layers import Backbone


def to_numpy(outputs):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def assert_same_outputs(actual, expected, rtol=0.0, atol=0.0, what="outputs"):
    """Asserts two backbone outputs (`{"logits", "feature_maps"}`) agree; exactly by default."""
    keras.tree.assert_same_structure(actual, expected)
    for a, e in zip(keras.tree.flatten(actual), keras.tree.flatten(expected), strict=True):
        assert a.shape == e.shape, (what, a.shape, e.shape)
        if rtol == atol == 0.0:
            np.testing.assert_array_equal(a, e, err_msg=what)
        else:
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=what)


def sublayers(model):
    """Every layer inside `model`, nested ones included (but not the input layers, which
    compute nothing and hold no weights)."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if not isinstance(layer, keras.layers.InputLayer)
    ]


def check_dtype_policy(backbone, policy):
    """Asserts `backbone` and every layer in it have the dtype policy `policy` (a name):
    their variables are of its variable dtype, the images and outputs of its compute dtype."""
    policy = keras.dtype_policies.get(policy)
    wrong = [
        (layer.path or layer.name, layer.dtype_policy.name)
        for layer in [backbone, *sublayers(backbone)]
        if layer.dtype_policy.name != policy.name
    ]
    assert not wrong, f"layers not under {policy.name}: {wrong}"
    floats = {v.dtype for v in backbone.weights if "float" in v.dtype}
    assert floats == {policy.variable_dtype}, floats
    assert backbone.inputs[0].dtype == policy.compute_dtype
    for output in keras.tree.flatten(backbone.output):
        assert output.dtype == policy.compute_dtype, output
    assert keras.dtype_policies.get(backbone.get_config()["dtype"]).name == policy.name


def run_backbone_test(
    backbone,
    images,
    *,
    feature_map_shapes=None,
    fit=True,
    save=True,
    predict_tolerance=1e-5,
):
    """The checks every backbone passes, on a tiny instance and a small batch.

    1. The call `backbone(images, training=False)` gives `{"logits": [B, num_classes],
       "feature_maps": [...]}`, finite, each map of its symbolic shape (and of
       `feature_map_shapes`, when given).
    2. `from_config(get_config())` gives the same config and parameter count, and with the
       same weights the same outputs.
    3. `predict` (compiled) agrees with the call within `predict_tolerance`.
    4. With `save`: a `.keras` file of it loads, with `keras.saving.load_model`, as the same
       class and config, with identical outputs.
    5. With `fit`: one step of a `DRLocModel` around it (every feature map gets a head) has a
       finite loss and a positive DRLoc loss, updates most of the backbone's weights and
       trains every head.

    Args:
        backbone: a backbone, or a function of no arguments that builds one.
        images: NumPy images `[B, height, width, channels]` that the backbone takes.
        feature_map_shapes: the expected shape of each feature map for `images` (optional).
        save, fit: whether to run checks 4 and 5.
        predict_tolerance: rtol and atol of check 3.

    Returns:
        The backbone (trained one step with `fit`).
    """
    keras.utils.set_random_seed(0)
    if not isinstance(backbone, keras.Model):
        backbone = backbone()
    assert isinstance(backbone, Backbone), type(backbone)
    batch = len(images)
    num_classes = backbone.get_config()["num_classes"]

    # 1. The call.
    outputs = to_numpy(backbone(images, training=False))
    assert set(outputs) == {"logits", "feature_maps"}
    assert outputs["logits"].shape == (batch, num_classes)
    symbolic = [(batch, *f.shape[1:]) for f in backbone.output["feature_maps"]]
    assert [f.shape for f in outputs["feature_maps"]] == symbolic
    if feature_map_shapes is not None:
        assert [f.shape for f in outputs["feature_maps"]] == [tuple(s) for s in feature_map_shapes]
    for array in keras.tree.flatten(outputs):
        assert np.isfinite(array).all()

    # 2. The config round trip.
    config = backbone.get_config()
    clone = type(backbone).from_config(config)
    assert type(clone) is type(backbone)
    assert clone.get_config() == config
    assert clone.count_params() == backbone.count_params()
    clone.set_weights(backbone.get_weights())
    assert_same_outputs(
        to_numpy(clone(images, training=False)), outputs, rtol=1e-6, atol=1e-6,
        what="from_config with the same weights",
    )
    del clone

    # 3. predict against the call.
    predicted = backbone.predict(images, batch_size=batch, verbose=0)
    assert_same_outputs(
        to_numpy(predicted), outputs, rtol=predict_tolerance, atol=predict_tolerance,
        what="predict",
    )

    # 4. The .keras round trip.
    if save:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "backbone.keras")
            backbone.save(path)
            loaded = keras.saving.load_model(path)
        assert type(loaded) is type(backbone)
        # Compared as JSON: a file holds lists where a config may hold tuples.
        assert json.dumps(loaded.get_config()) == json.dumps(backbone.get_config())
        assert_same_outputs(
            to_numpy(loaded(images, training=False)), outputs, what="saved and loaded"
        )
        del loaded

    # 5. One DRLoc step.
    if fit:
        model = drloc_keras.model.DRLocModel(
            backbone, lam=0.5, feature_maps="all", sample_size=8, hidden=16, seed=0
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        before = {id(v): keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables}

        def changed(variables):
            return [
                not np.array_equal(before[id(v)], keras.ops.convert_to_numpy(v))
                for v in variables
            ]

        labels = np.arange(batch) % num_classes
        history = model.fit(images, labels, batch_size=batch, epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][0]), history
        assert np.isfinite(history["drloc_loss"][0]) and history["drloc_loss"][0] > 0, history
        updated = changed(backbone.trainable_variables)
        assert sum(updated) > 0.8 * len(updated), f"only {sum(updated)} of {len(updated)} updated"
        for head in model.heads:  # every head trained
            assert any(changed(head.trainable_variables)), head.name
    return backbone


def images(shape, seed=0):
    """Standard normal float32 images of `shape`."""
    return np.random.default_rng(seed).normal(size=shape).astype("float32")
