"""Every registered backbone trains one step with DRLoc and round-trips through `.keras`."""

import keras
import numpy as np
import pytest

from drloc_keras import DRLocModel, backbones

# Small widths and inputs for each size: the architecture is the same, only the numbers shrink.
TINY = {
    "cvt_13": dict(image_size=64, embed_dims=(8, 16, 16), num_heads=(1, 2, 2), depths=(1, 1, 1)),
    "cvt_13_32": dict(image_size=16, embed_dims=(8, 16, 16), num_heads=(1, 2, 2), depths=(1, 1, 1)),
    "cct_7_3x1": dict(image_size=16, num_layers=1, num_heads=2, embed_dim=16, tokenizer_channels=8),
    "swin_tiny": dict(image_size=32, embed_dim=8, depths=(1, 1, 1), num_heads=(1, 2, 2), window_size=4),
    "swin_tiny_32": dict(image_size=16, embed_dim=8, depths=(1, 1, 1), num_heads=(1, 2, 2)),
    "t2t_vit_14": dict(image_size=48, token_dim=8, embed_dim=16, depth=1, num_heads=2),
    "t2t_vit_14_32": dict(image_size=16, token_dim=8, embed_dim=16, depth=1, num_heads=2),
    "vit_base_16": dict(image_size=32, embed_dim=16, depth=1, num_heads=2),
    "vit_32": dict(image_size=16, embed_dim=16, depth=1, num_heads=2),
    "resnet50": dict(image_size=64, width_multiplier=0.125),
    "resnet50_32": dict(image_size=16, width_multiplier=0.125),
}


def test_names_hold_every_family_and_size():
    assert set(backbones.FAMILIES) <= set(backbones.names())
    assert set(backbones.SIZES) <= set(backbones.names())


@pytest.mark.parametrize(
    "name,image_size,size",
    [("cvt", 32, "cvt_13_32"), ("cvt", 224, "cvt_13"), ("cvt", None, "cvt_13"),
     ("swin", (32, 48), "swin_tiny_32"), ("swin", 96, "swin_tiny"), ("vit", 32, "vit_32"),
     ("t2t", 224, "t2t_vit_14"), ("resnet50", 32, "resnet50_32"), ("cct", 32, "cct_7_3x1"),
     ("swin_tiny", 32, "swin_tiny")],
)
def test_a_family_name_picks_the_size_for_the_image(name, image_size, size):
    assert backbones.resolve(name, image_size) == size


def test_the_authors_lambda_per_family():
    assert backbones.default_lambda("swin") == 0.5
    assert backbones.default_lambda("cvt_13_32") == 0.1
    assert backbones.default_lambda("t2t") == 0.1


def test_an_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="Unknown backbone 'vgg'. Choose one of: cvt, cct, swin"):
        backbones.get("vgg")


@pytest.mark.parametrize("size", sorted(TINY))
def test_one_drloc_step_updates_the_weights_and_the_model_round_trips(size, tmp_path):
    keras.utils.set_random_seed(0)
    overrides = TINY[size]
    side = overrides["image_size"]
    backbone = backbones.get(size, num_classes=3, **overrides)
    model = DRLocModel(backbone, lam=0.5, feature_maps="all", sample_size=8, hidden=16, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, side, side, 3)).astype("float32")
    y = rng.integers(0, 3, 4)
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and history.history["drloc_loss"][0] > 0
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    assert sum(changed) > 0.8 * len(changed), f"only {sum(changed)} of {len(changed)} updated"
    for head in model.heads:  # every head trained
        assert not np.array_equal(
            before[[id(v) for v in model.trainable_variables].index(id(head.trunk[0].kernel))],
            keras.ops.convert_to_numpy(head.trunk[0].kernel),
        )
    path = tmp_path / f"{size}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
