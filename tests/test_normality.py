"""Shapiro-Wilk W against SciPy's, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bastion.monitor.normality import MIN_SIZE, shapiro_coefficients, shapiro_w


@pytest.mark.parametrize("n", [MIN_SIZE, 13, 50, 151, 1000, 3000])
def test_w_matches_scipy(n):
    rng = np.random.default_rng(n)
    samples = [rng.normal(size=n), rng.exponential(size=n), rng.uniform(size=n), rng.standard_t(2, size=n),
               np.round(rng.normal(size=n), 1)]  # ties
    for sample in samples:
        assert shapiro_w(sample) == pytest.approx(stats.shapiro(sample).statistic, abs=1e-6)


def test_coefficients_are_antisymmetric_unit_and_read_only():
    a = shapiro_coefficients(100)
    assert np.allclose(a, -a[::-1]) and float(a @ a) == pytest.approx(1.0) and np.all(np.diff(a) > 0)
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 0.0


def test_constant_and_normal_samples():
    assert shapiro_w(np.full(40, 3.0)) == 1.0
    assert shapiro_w(np.random.default_rng(0).normal(size=1000)) > 0.99
    assert shapiro_w(np.r_[np.zeros(900), np.ones(100)]) < 0.5  # two spikes are far from normal


def test_too_few_or_non_finite_values_are_refused():
    with pytest.raises(ValueError, match=f"at least {MIN_SIZE} values, got 11"):
        shapiro_w(np.arange(11.0))
    with pytest.raises(ValueError, match="finite"):
        shapiro_w(np.r_[np.arange(20.0), np.nan])
