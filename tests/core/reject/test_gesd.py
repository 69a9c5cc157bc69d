"""``gesd``: Rosner's generalized ESD test (its critical values: test_gesd_table.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.core.reject import oracles as ref
from tests.core.reject.stacks import stack_column
from zemosaic_xp import StackConfig, stack


def test_gesd(backend):
    # n = 7, r = floor(0.3·7) = 2. Step 1: mean 15.71, s = 15.12, R1 = 34.29/15.12 =
    # 2.27 > λ(7) = 2.020 (Grubbs' two-sided 5 % value). Step 2 (50 removed): mean 10,
    # s = 0.141, R2 = 0.2/0.141 = 1.41 < λ(6) = 1.887. One outlier.
    image, low, high, cov, _ = stack_column(backend, [10, 10.1, 9.9, 10.2, 9.8, 10, 50], reject="gesd")
    assert (low, high, cov) == (0, 1, 6)
    assert image == pytest.approx(10.0)


def test_gesd_sees_through_masking(backend):
    # Two equal outliers mask each other for a one-at-a-time test (step 1 alone is
    # not significant), but step 2 is, so GESD removes both.
    values = [10, 10.1, 9.9, 10.2, 9.8, 10, 10.1, 9.9, 12, 12]
    _, low, high, cov, _ = stack_column(backend, values, reject="gesd")
    keep, n_low, n_high = ref.gesd_pixel(values)
    assert (low, high, cov) == (n_low, n_high, int(keep.sum())) == (0, 2, 8)


def test_gesd_iterations_are_esd_steps():
    data = np.random.default_rng(2).normal(0, 1, (20, 4, 4)).astype(np.float32)
    assert stack(data, config=StackConfig.plain(reject="gesd")).stats["iterations"] == 6  # floor(0.3·20)
    r = stack(data, config=StackConfig.plain(reject="gesd", gesd_outlier_fraction=0.1))
    assert r.stats["iterations"] == 2
