"""``percentile``: Siril's percentile clipping (one pass, relative to the median)."""

from __future__ import annotations

import pytest

from tests.core.reject.stacks import stack_column


def test_percentile(backend):
    # median 100; low limit 100 - 0.2*100 = 80 drops 70, high limit 110 drops 130.
    image, low, high, cov, _ = stack_column(backend, [100, 101, 99, 130, 70, 100, 102], reject="percentile")
    assert (low, high, cov) == (1, 1, 5)
    assert image == pytest.approx(502 / 5)


def test_percentile_negative_median_uses_its_magnitude(backend):
    # median -100, |m| = 100: -150 is 50 below (> 20) -> low; -85 is 15 above (> 10) -> high.
    image, low, high, cov, _ = stack_column(backend, [-100, -101, -99, -150, -100, -85], reject="percentile")
    assert (low, high, cov) == (1, 1, 4)
    assert image == pytest.approx(-100.0)
