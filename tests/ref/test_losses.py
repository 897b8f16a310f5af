"""Spec section 6: the losses."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import drloc_ref
from tests.ref.strategies import position_pairs


def _targets(args, use_abs=True):
    p, q, _, height, width, _ = args
    return drloc_ref.relative_targets(p, q, height, width, use_abs=use_abs)


# --- l1 -------------------------------------------------------------------------------


def test_l1_by_hand():
    pred = np.array([[[1.0, 2.0], [0.0, 0.0]]])
    target = np.array([[[0.0, 2.0], [1.0, 3.0]]])
    # |1-0| + |2-2| + |0-1| + |0-3| = 1 + 0 + 1 + 3 = 5 over B*m*2 = 1*2*2 = 4 elements.
    assert drloc_ref.drloc_loss(pred, target, mode="l1") == pytest.approx(5 / 4, abs=1e-15)


@given(position_pairs(), st.floats(0.01, 10.0), st.data())
def test_l1_is_zero_exactly_at_the_target(args, delta, data):
    target = _targets(args)
    assert drloc_ref.drloc_loss(target.copy(), target, mode="l1") == 0.0
    b, i, axis = (data.draw(st.integers(0, n - 1)) for n in target.shape)
    pred = target.copy()
    pred[b, i, axis] += delta
    assert drloc_ref.drloc_loss(pred, target, mode="l1") == pytest.approx(delta / target.size)


@given(position_pairs(), st.integers(0, 2**32 - 1))
def test_l1_is_the_mean_absolute_error_over_every_element(args, seed):
    target = _targets(args)
    pred = np.random.default_rng(seed).normal(scale=3.0, size=target.shape)
    total = 0.0
    for value, t in zip(pred.ravel(), target.ravel()):
        total += abs(value - t)
    batch, m = target.shape[:2]
    expected = total / (batch * m * 2)
    assert drloc_ref.drloc_loss(pred, target, mode="l1") == pytest.approx(expected, rel=1e-12)


# --- ce -------------------------------------------------------------------------------


def test_ce_by_hand():
    # H = W = 2 with use_abs: 2 classes per axis, one pair.
    rows = np.array([[[0.0, math.log(3.0)]]])  # softmax = [1/4, 3/4]
    cols = np.array([[[0.0, 0.0]]])  # softmax = [1/2, 1/2]
    target = np.array([[[1.0, 0.0]]])
    # rows: -log(3/4) = log(4/3); cols: -log(1/2) = log 2; total log(8/3).
    loss = drloc_ref.drloc_loss((rows, cols), target, mode="ce")
    assert loss == pytest.approx(math.log(8 / 3), rel=1e-12)


@given(position_pairs(), st.floats(-50, 50), st.floats(-50, 50), st.booleans())
def test_ce_with_equal_logits_is_log_k_rows_plus_log_k_cols(args, row_value, col_value, use_abs):
    p, q, batch, height, width, m = args
    target = _targets(args, use_abs=use_abs)
    k_rows, k_cols = drloc_ref.num_classes(height, width, use_abs=use_abs)
    rows = np.full((batch, m, k_rows), row_value)
    cols = np.full((batch, m, k_cols), col_value)
    loss = drloc_ref.drloc_loss((rows, cols), target, mode="ce")
    assert loss == pytest.approx(math.log(k_rows) + math.log(k_cols), rel=1e-12)


@given(position_pairs(), st.integers(0, 2**32 - 1))
def test_ce_is_the_mean_negative_log_likelihood(args, seed):
    p, q, batch, height, width, m = args
    target = _targets(args)
    rng = np.random.default_rng(seed)
    k_rows, k_cols = drloc_ref.num_classes(height, width)
    rows, cols = rng.normal(size=(batch, m, k_rows)), rng.normal(size=(batch, m, k_cols))
    total = 0.0
    for b in range(batch):
        for i in range(m):
            for logits, t in ((rows[b, i], target[b, i, 0]), (cols[b, i], target[b, i, 1])):
                total -= math.log(math.exp(logits[int(t)]) / sum(math.exp(z) for z in logits))
    expected = total / (batch * m)
    assert drloc_ref.drloc_loss((rows, cols), target, mode="ce") == pytest.approx(expected)


# --- cbr ------------------------------------------------------------------------------


def test_cbr_by_hand():
    rows = np.array([[[0.0, math.log(3.0)]]])  # beta = [1/4, 3/4]
    cols = np.array([[[0.0, 0.0]]])  # beta = [1/2, 1/2]
    target = np.array([[[1.0, 0.0]]])
    # rows: mu = 0*1/4 + 1*3/4 = 3/4; var = 1/4*(0-3/4)^2 + 3/4*(1-3/4)^2 = 9/64 + 3/64 = 3/16.
    #       (mu - 1)^2 / var = (1/16) / (3/16) = 1/3, plus 0.001 * log(3/16).
    # cols: mu = 1/2; var = 1/2*(1/4) + 1/2*(1/4) = 1/4; (1/2 - 0)^2 / (1/4) = 1,
    #       plus 0.001 * log(1/4). Each variance carries the + 1e-8 of the spec.
    var_rows, var_cols = 3 / 16 + 1e-8, 1 / 4 + 1e-8
    expected = (1 / 16) / var_rows + 0.001 * math.log(var_rows)
    expected += (1 / 4) / var_cols + 0.001 * math.log(var_cols)
    assert drloc_ref.drloc_loss((rows, cols), target, mode="cbr") == pytest.approx(
        expected, rel=1e-12
    )


@given(position_pairs(max_m=16), st.booleans())
def test_cbr_decreases_as_the_distribution_concentrates_on_the_target(args, use_abs):
    """Logits -(c - t)^2 / (2 s^2): a narrower s puts more mass on the target class."""
    p, q, batch, height, width, m = args
    target = _targets(args, use_abs=use_abs)
    k_rows, k_cols = drloc_ref.num_classes(height, width, use_abs=use_abs)

    def logits(k, t, s):
        classes = np.arange(k)
        return -((classes - t[..., None]) ** 2) / (2 * s**2)

    losses = []
    for s in (4.0, 2.0, 1.0, 0.5, 0.25):
        pred = (logits(k_rows, target[..., 0], s), logits(k_cols, target[..., 1], s))
        losses.append(drloc_ref.drloc_loss(pred, target, mode="cbr"))
    assert all(a > b for a, b in zip(losses, losses[1:])), losses


def test_cbr_penalises_the_mean_error_relative_to_the_variance():
    """Same variance, mean further from the target: a larger loss."""
    target = np.array([[[0.0, 0.0]]])
    near = (np.array([[[2.0, 0.0, 0.0]]]), np.array([[[2.0, 0.0, 0.0]]]))
    far = (np.array([[[0.0, 0.0, 2.0]]]), np.array([[[0.0, 0.0, 2.0]]]))
    assert drloc_ref.drloc_loss(near, target, "cbr") < drloc_ref.drloc_loss(far, target, "cbr")


def test_cbr_by_hand_is_the_mean_over_every_pair_of_the_batch():
    """B = 2 images, m = 2 pairs, 3 classes per axis: the loss is the mean over the B*m = 4
    pairs of each axis (not a sum over the pairs, nor a mean over the images alone)."""
    uniform = [0.0, 0.0, 0.0]  # beta = [1/3, 1/3, 1/3]: mu = 1, var = 2/3
    skewed = [0.0, 0.0, math.log(2.0)]  # beta = [1/4, 1/4, 1/2]: mu = 5/4, var = 11/16
    rows = np.array([[uniform, skewed], [skewed, uniform]])
    cols = np.array([[uniform, uniform], [skewed, skewed]])
    target = np.array([[[0.0, 2.0], [1.0, 1.0]], [[2.0, 0.0], [1.0, 1.0]]])
    eps = 1e-8
    u_mu, u_var = 1.0, 2 / 3 + eps
    s_mu, s_var = 5 / 4, 11 / 16 + eps

    def term(mu, var, t):
        return (mu - t) ** 2 / var + 0.001 * math.log(var)

    rows_terms = [term(u_mu, u_var, 0), term(s_mu, s_var, 1), term(s_mu, s_var, 2), term(u_mu, u_var, 1)]
    cols_terms = [term(u_mu, u_var, 2), term(u_mu, u_var, 1), term(s_mu, s_var, 0), term(s_mu, s_var, 1)]
    expected = sum(rows_terms) / 4 + sum(cols_terms) / 4
    assert drloc_ref.drloc_loss((rows, cols), target, mode="cbr") == pytest.approx(expected, rel=1e-12)


def test_cbr_of_confident_logits_is_finite_through_the_variance_epsilon():
    """Logits that put (almost) all mass on one class: the variance is about 1e-21, so the
    + 1e-8 of the spec is the whole variance. On the target: 0.001 * log(1e-8) per axis;
    one class away: (1 - 0)^2 / 1e-8 dominates."""
    confident = np.array([[[50.0, 0.0, 0.0], [50.0, 0.0, 0.0]], [[50.0, 0.0, 0.0], [50.0, 0.0, 0.0]]])
    on_target = np.zeros((2, 2, 2))
    loss = drloc_ref.drloc_loss((confident, confident), on_target, mode="cbr")
    assert loss == pytest.approx(2 * 0.001 * math.log(1e-8), rel=1e-6)
    off_by_one = on_target.copy()
    off_by_one[0, 0, 0] = 1.0  # one pair of the four, rows only
    loss = drloc_ref.drloc_loss((confident, confident), off_by_one, mode="cbr")
    assert loss == pytest.approx(1.0 / 1e-8 / 4 + 2 * 0.001 * math.log(1e-8), rel=1e-6)
