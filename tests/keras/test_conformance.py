"""drloc_keras against drloc_ref: same positions and weights give the same numbers."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import drloc_ref
from drloc_keras import losses
from drloc_keras.head import DRLocHead, gather, relative_targets
from tests.keras.helpers import head_weights, record_difference, to_numpy

TOL = 1e-5
# JAX compiles every op anew for each new shape, so every example costs about a second
# there; 50 examples keep its run within CI's time on 2 cores. The other backends run the
# profile's 200 examples of the same properties through the same Keras code.
EXAMPLES = 50 if keras.backend.backend() == "jax" else 200
# Every valid (mode, use_abs, normalize): normalize=True needs the l1 mode.
SETTINGS = [
    ("l1", True, False),
    ("l1", True, True),
    ("l1", False, False),
    ("l1", False, True),
    ("ce", True, False),
    ("ce", False, False),
    ("cbr", True, False),
    ("cbr", False, False),
]


@st.composite
def cases(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    batch = draw(st.integers(1, 4))
    height = draw(st.integers(2, 9))
    width = draw(st.integers(2, 9))
    channels = draw(st.integers(1, 16))
    m = draw(st.integers(1, 64))
    hidden = draw(st.integers(1, 24))
    mode, use_abs, normalize = draw(st.sampled_from(SETTINGS))
    return seed, batch, height, width, channels, m, hidden, mode, use_abs, normalize


@settings(max_examples=EXAMPLES)
@given(cases())
def test_head_predictions_targets_and_loss_equal_the_reference(case):
    seed, batch, height, width, channels, m, hidden, mode, use_abs, normalize = case
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, height, width, channels)).astype("float32")
    p = drloc_ref.sample_positions(rng, batch, height, width, m)
    q = drloc_ref.sample_positions(rng, batch, height, width, m)

    keras.utils.set_random_seed(seed)
    head = DRLocHead(mode=mode, sample_size=m, hidden=hidden, use_abs=use_abs, normalize=normalize)
    pred, target = head(features, positions=(p, q))
    loss = losses.drloc_loss(pred, target, mode)

    trunk, heads = head_weights(head)
    pairs = np.concatenate([drloc_ref.gather(features, p), drloc_ref.gather(features, q)], -1)
    ref_target = drloc_ref.relative_targets(p, q, height, width, use_abs=use_abs, normalize=normalize)
    ref_pred = drloc_ref.head_forward(pairs, trunk, heads)
    ref_loss = drloc_ref.drloc_loss(ref_pred, ref_target, mode=mode)

    np.testing.assert_allclose(to_numpy(target), ref_target, rtol=0, atol=TOL)
    record_difference("targets", to_numpy(target), ref_target)
    got = (pred,) if mode == "l1" else pred
    expected = (ref_pred,) if mode == "l1" else ref_pred
    for g, e in zip(got, expected):
        assert to_numpy(g).dtype == np.float32
        np.testing.assert_allclose(to_numpy(g), e, rtol=TOL, atol=TOL)
        record_difference("predictions", to_numpy(g), e)
    np.testing.assert_allclose(float(to_numpy(loss)), ref_loss, rtol=TOL, atol=TOL)
    record_difference(f"loss ({mode})", float(to_numpy(loss)), ref_loss)


@settings(max_examples=EXAMPLES)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(2, 9), st.integers(2, 9),
       st.integers(1, 16), st.integers(1, 64))
def test_gather_equals_the_reference(seed, batch, height, width, channels, m):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, height, width, channels)).astype("float32")
    p = drloc_ref.sample_positions(rng, batch, height, width, m)
    np.testing.assert_array_equal(to_numpy(gather(features, p)), drloc_ref.gather(features, p))


@given(st.integers(0, 2**31 - 1), st.sampled_from(["ce", "cbr"]), st.booleans(),
       st.sampled_from(["float32", "float16", "bfloat16"]))
def test_class_losses_equal_the_reference_in_float32(seed, mode, use_abs, dtype):
    rng = np.random.default_rng(seed)
    batch, height, width, m = 2, 5, 3, 16
    p = drloc_ref.sample_positions(rng, batch, height, width, m)
    q = drloc_ref.sample_positions(rng, batch, height, width, m)
    target = drloc_ref.relative_targets(p, q, height, width, use_abs=use_abs)
    k_rows, k_cols = drloc_ref.num_classes(height, width, use_abs=use_abs)
    rows = rng.normal(scale=2.0, size=(batch, m, k_rows))
    cols = rng.normal(scale=2.0, size=(batch, m, k_cols))
    # The inputs are rounded to `dtype`; the loss must still be computed in float32.
    rows_in = keras.ops.cast(rows.astype("float32"), dtype)
    cols_in = keras.ops.cast(cols.astype("float32"), dtype)
    got = losses.drloc_loss((rows_in, cols_in), keras.ops.cast(target, dtype), mode)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    rounded = (to_numpy(keras.ops.cast(rows_in, "float32")), to_numpy(keras.ops.cast(cols_in, "float32")))
    expected = drloc_ref.drloc_loss(rounded, target, mode=mode)
    np.testing.assert_allclose(float(to_numpy(got)), expected, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("use_abs", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
def test_targets_equal_the_reference_on_a_non_square_grid(use_abs, normalize):
    rng = np.random.default_rng(3)
    p = drloc_ref.sample_positions(rng, 3, 2, 9, 64)
    q = drloc_ref.sample_positions(rng, 3, 2, 9, 64)
    got = to_numpy(relative_targets(p, q, 2, 9, use_abs=use_abs, normalize=normalize))
    expected = drloc_ref.relative_targets(p, q, 2, 9, use_abs=use_abs, normalize=normalize)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cbr_of_confident_logits_equals_the_reference(dtype):
    """All the mass on one class: the variance is the spec's 1e-8 alone (about 1e-21 without
    it, which would give -0.048 instead of -0.018 per axis, or NaN at exactly 0)."""
    confident = np.zeros((2, 3, 4))
    confident[..., 0] = 50.0
    target = np.zeros((2, 3, 2))
    target[1, 2] = (1.0, 2.0)  # one pair off the predicted class: a huge (mu - t)^2 / var
    pred = (confident, confident)
    expected = drloc_ref.drloc_loss(pred, target, mode="cbr")
    keras_pred = tuple(keras.ops.convert_to_tensor(p.astype(dtype)) for p in pred)
    got = float(to_numpy(losses.cbr(keras_pred, keras.ops.convert_to_tensor(target.astype("float32")))))
    assert np.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-5)
    on_target = float(to_numpy(losses.cbr(keras_pred, keras.ops.zeros((2, 3, 2)))))
    assert on_target == pytest.approx(2 * 0.001 * np.log(1e-8), rel=1e-4)
