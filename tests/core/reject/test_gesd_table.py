"""GESD critical values and the Student-t / normal quantiles behind them, against SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from zemosaic_xp.core.reject.gesd_table import gesd_critical_values, normal_isf, student_t_isf


class TestGesdTable:
    def test_matches_grubbs_two_sided_table(self):
        # λ_n at α = 0.05 is Grubbs' two-sided critical value (Grubbs 1969, NIST table).
        grubbs = [1.1543, 1.4812, 1.7150, 1.8871, 2.0200, 2.1266, 2.2150, 2.2900]
        values = gesd_critical_values(10, 0.05)
        assert values[:3] == (math.inf,) * 3
        np.testing.assert_allclose(values[3:], grubbs, atol=1e-4)

    @pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 30, 100, 1000, 20000])
    def test_student_t_quantiles_match_scipy(self, df):
        for q in (0.4, 0.1, 0.025, 1e-3, 1e-5, 1e-7, 1e-10):
            assert student_t_isf(q, df) == pytest.approx(stats.t.isf(q, df), rel=1e-9)

    def test_normal_quantiles_match_scipy(self):
        for q in (0.9, 0.5, 0.1, 1e-4, 1e-12):
            assert normal_isf(q) == pytest.approx(stats.norm.isf(q), rel=1e-12, abs=1e-15)

    def test_critical_values_match_scipy_for_large_stacks(self):
        values = gesd_critical_values(500, 0.01)
        for n in (3, 17, 128, 500):
            t = stats.t.ppf(1 - 0.01 / (2 * n), n - 2)
            assert values[n] == pytest.approx((n - 1) * t / math.sqrt(n * (n - 2 + t * t)), rel=1e-9)

    @pytest.mark.parametrize("n_max", [0, 1, 2, 3, 7, 40])
    def test_each_count_is_the_prefix_of_the_largest(self, n_max):
        # λ_n does not depend on n_max: every table is the prefix of a larger one, to the
        # bit, whichever was asked first (the values are cached per n and shared).
        alpha = 0.0123  # not used elsewhere in the tests: nothing cached yet
        small = gesd_critical_values(n_max, alpha)
        assert len(small) == n_max + 1
        assert gesd_critical_values(64, alpha)[:n_max + 1] == small
        for n in range(3, n_max + 1):
            t = student_t_isf(alpha / (2.0 * n), n - 2)
            assert small[n] == (n - 1) * t / math.sqrt(n * (n - 2 + t * t))

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`q` must be in"):
            student_t_isf(0.7, 5)
        with pytest.raises(ValueError, match="`df` must be >= 1"):
            student_t_isf(0.1, 0)
