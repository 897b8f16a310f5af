"""Spec section 4: targets, checked element by element against the spec's table."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import drloc_ref
from tests.ref.strategies import position_pairs

FLAGS = [(False, False), (False, True), (True, False), (True, True)]


def _table(d, k, use_abs, normalize):
    """The spec's table, one scalar at a time."""
    if not use_abs and not normalize:
        return d + (k - 1)
    if not use_abs and normalize:
        return (d + (k - 1)) / (2 * (k - 1))
    if use_abs and not normalize:
        return abs(d)
    return abs(d) / (k - 1)


def _range(k, use_abs, normalize):
    if normalize:
        return 0.0, 1.0
    return (0.0, k - 1.0) if use_abs else (0.0, 2.0 * k - 2.0)


@given(position_pairs(), st.sampled_from(FLAGS))
def test_every_row_of_the_table(args, flags):
    use_abs, normalize = flags
    p, q, batch, height, width, m = args
    t = drloc_ref.relative_targets(p, q, height, width, use_abs=use_abs, normalize=normalize)
    assert t.shape == (batch, m, 2)
    assert np.issubdtype(t.dtype, np.floating)
    for b, i in itertools.product(range(batch), range(m)):
        d_row = int(p[b, i, 0]) - int(q[b, i, 0])
        d_col = int(p[b, i, 1]) - int(q[b, i, 1])
        assert t[b, i, 0] == pytest.approx(_table(d_row, height, use_abs, normalize), abs=1e-12)
        assert t[b, i, 1] == pytest.approx(_table(d_col, width, use_abs, normalize), abs=1e-12)


@pytest.mark.parametrize("use_abs,normalize", FLAGS)
@pytest.mark.parametrize("height,width", [(2, 2), (3, 8), (7, 4), (7, 7)])
def test_ranges_are_exactly_those_of_the_table(use_abs, normalize, height, width):
    """Over every pair of positions, each axis fills its range end to end."""
    cells = np.array(list(itertools.product(range(height), range(width))))
    p = np.repeat(cells, len(cells), axis=0)[None]
    q = np.tile(cells, (len(cells), 1))[None]
    t = drloc_ref.relative_targets(p, q, height, width, use_abs=use_abs, normalize=normalize)
    for axis, k in ((0, height), (1, width)):
        lo, hi = _range(k, use_abs, normalize)
        assert t[..., axis].min() == lo
        assert t[..., axis].max() == pytest.approx(hi, abs=1e-12)
        # Raw targets take every integer of the range; normalized ones as many values.
        assert len(np.unique(np.round(t[..., axis], 12))) == int(_range(k, use_abs, False)[1]) + 1


@given(position_pairs(), st.booleans())
def test_signed_raw_targets_sum_to_twice_k_minus_one(args, normalize):
    p, q, _, height, width, _ = args
    forward = drloc_ref.relative_targets(p, q, height, width, use_abs=False, normalize=normalize)
    backward = drloc_ref.relative_targets(q, p, height, width, use_abs=False, normalize=normalize)
    if normalize:
        np.testing.assert_allclose(forward + backward, 1.0, atol=1e-12)
    else:
        np.testing.assert_array_equal(forward[..., 0] + backward[..., 0], 2 * (height - 1))
        np.testing.assert_array_equal(forward[..., 1] + backward[..., 1], 2 * (width - 1))


@given(position_pairs(), st.booleans())
def test_absolute_targets_are_symmetric(args, normalize):
    p, q, _, height, width, _ = args
    forward = drloc_ref.relative_targets(p, q, height, width, use_abs=True, normalize=normalize)
    backward = drloc_ref.relative_targets(q, p, height, width, use_abs=True, normalize=normalize)
    np.testing.assert_array_equal(forward, backward)


def test_the_row_axis_uses_height_and_the_column_axis_width():
    height, width = 3, 8
    p = np.array([[[2, 7], [0, 0]]])
    q = np.array([[[0, 0], [2, 7]]])
    t = drloc_ref.relative_targets(p, q, height, width, use_abs=True, normalize=False)
    np.testing.assert_array_equal(t, [[[2, 7], [2, 7]]])
    t = drloc_ref.relative_targets(p, q, height, width, use_abs=True, normalize=True)
    np.testing.assert_array_equal(t, [[[1, 1], [1, 1]]])
    t = drloc_ref.relative_targets(p, q, height, width, use_abs=False, normalize=False)
    # d = (2, 7) -> (2 + 2, 7 + 7); d = (-2, -7) -> (0, 0)
    np.testing.assert_array_equal(t, [[[4, 14], [0, 0]]])
    t = drloc_ref.relative_targets(p, q, height, width, use_abs=False, normalize=True)
    np.testing.assert_array_equal(t, [[[1, 1], [0, 0]]])
    # p == q: the raw offset is 0, in the middle of the signed range.
    same = np.array([[[1, 3]]])
    t = drloc_ref.relative_targets(same, same, height, width, use_abs=False, normalize=True)
    np.testing.assert_array_equal(t, [[[0.5, 0.5]]])


@pytest.mark.parametrize(
    "height,width,use_abs,expected",
    [(7, 7, True, (7, 7)), (7, 7, False, (13, 13)), (3, 5, True, (3, 5)), (3, 5, False, (5, 9))],
)
def test_num_classes(height, width, use_abs, expected):
    assert drloc_ref.num_classes(height, width, use_abs=use_abs) == expected


@given(position_pairs(), st.booleans())
def test_raw_targets_are_valid_class_indices(args, use_abs):
    p, q, _, height, width, _ = args
    t = drloc_ref.relative_targets(p, q, height, width, use_abs=use_abs, normalize=False)
    k_rows, k_cols = drloc_ref.num_classes(height, width, use_abs=use_abs)
    assert t[..., 0].max() < k_rows and t[..., 1].max() < k_cols
    np.testing.assert_array_equal(t, np.round(t))
