"""Small statistics helpers for the tests (no SciPy needed).

`chi2_sf` is the exact upper tail of the chi-square distribution, computed from the
regularized upper incomplete gamma function Q(k/2, x/2) by its series (x < a + 1) or
its continued fraction (otherwise), as in every numerical-methods textbook.
"""

import math

import numpy as np


def _gamma_q(a, x):
    if x <= 0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return 1.0 - total * math.exp(log_prefactor)
    # Lentz's continued fraction for Q.
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(log_prefactor) * h


def chi2_sf(statistic, dof):
    """P(X >= statistic) for X ~ chi-square with `dof` degrees of freedom."""
    return _gamma_q(dof / 2.0, statistic / 2.0)


def uniformity_pvalue(values, n_bins):
    """Chi-square goodness of fit of integer `values` to the uniform law on 0..n_bins-1."""
    counts = np.bincount(np.ravel(values), minlength=n_bins)
    if counts.size != n_bins:
        raise AssertionError(f"values outside 0..{n_bins - 1}: {counts.size} bins seen")
    expected = counts.sum() / n_bins
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    return chi2_sf(statistic, n_bins - 1)


def independence_pvalue(a, b, n_a, n_b):
    """Chi-square test that `a` (values 0..n_a-1) and `b` (0..n_b-1) are independent."""
    table = np.zeros((n_a, n_b))
    np.add.at(table, (np.ravel(a), np.ravel(b)), 1)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return chi2_sf(statistic, (n_a - 1) * (n_b - 1))
