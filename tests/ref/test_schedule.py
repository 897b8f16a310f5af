"""Spec section 7: the lambda schedule."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import drloc_ref


def test_warm_up_starts_at_zero_and_reaches_lambda():
    assert drloc_ref.lambda_at(0, 0.5) == 0.0
    assert drloc_ref.lambda_at(5, 0.5) == pytest.approx(0.5 * 5 / 20)
    assert drloc_ref.lambda_at(10, 0.5) == pytest.approx(0.25)
    assert drloc_ref.lambda_at(20, 0.5) == pytest.approx(0.5)


def test_linear_decay_after_warm_up():
    # epoch 21: 1 - 1/280; epoch 100 (where the authors stop): 1 - 80/280 = 5/7.
    assert drloc_ref.lambda_at(21, 0.1) == pytest.approx(0.1 * (1 - 1 / 280))
    assert drloc_ref.lambda_at(100, 0.1) == pytest.approx(0.1 * 5 / 7)
    assert drloc_ref.lambda_at(160, 0.1) == pytest.approx(0.05)


def test_reaches_zero_at_the_end_and_stays_there():
    assert drloc_ref.lambda_at(300, 0.1) == 0.0
    assert drloc_ref.lambda_at(450, 0.1) == 0.0


def test_other_warm_up_and_total():
    assert drloc_ref.lambda_at(1, 2.0, warmup_epochs=4, total_epochs=12) == pytest.approx(0.5)
    assert drloc_ref.lambda_at(8, 2.0, warmup_epochs=4, total_epochs=12) == pytest.approx(1.0)
    assert drloc_ref.lambda_at(0, 2.0, warmup_epochs=0, total_epochs=10) == 2.0
    assert drloc_ref.lambda_at(5, 2.0, warmup_epochs=0, total_epochs=10) == pytest.approx(1.0)


@given(st.floats(0, 10), st.integers(0, 30), st.integers(1, 100))
def test_rises_then_falls_within_zero_and_lambda(lam, warmup, extra):
    total = warmup + extra
    values = [drloc_ref.lambda_at(e, lam, warmup, total) for e in range(total + 2)]
    assert all(0.0 <= v <= lam * (1 + 1e-12) for v in values)
    peak = values[warmup]
    assert peak == pytest.approx(lam)
    assert all(a <= b + 1e-12 for a, b in zip(values[: warmup + 1], values[1 : warmup + 1]))
    assert all(a >= b - 1e-12 for a, b in zip(values[warmup:], values[warmup + 1 :]))
