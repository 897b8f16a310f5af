"""Hypothesis strategies shared by the reference tests."""

import numpy as np
from hypothesis import strategies as st

import drloc_ref


@st.composite
def grids(draw, max_batch=4, max_side=9, max_m=64):
    """(rng, B, H, W, m) with non-square grids included."""
    seed = draw(st.integers(0, 2**32 - 1))
    batch = draw(st.integers(1, max_batch))
    height = draw(st.integers(2, max_side))
    width = draw(st.integers(2, max_side))
    m = draw(st.integers(1, max_m))
    return np.random.default_rng(seed), batch, height, width, m


@st.composite
def position_pairs(draw, **kwargs):
    """(p, q, B, H, W, m): two independent position arrays on one grid."""
    rng, batch, height, width, m = draw(grids(**kwargs))
    p = drloc_ref.sample_positions(rng, batch, height, width, m)
    q = drloc_ref.sample_positions(rng, batch, height, width, m)
    return p, q, batch, height, width, m
