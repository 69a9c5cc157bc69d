"""The numba band kernel of ``percentile`` (backends/numba/percentile.py) against the portable core.

Bit-identical results for every combine, frame count (sorting network and NumPy's
sort), normalisation and parameter set, band-size invariant; one known answer.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.backends.numba_band import (
    N_FRAMES,
    assert_identical,
    check_band_invariance,
    check_every_combine,
    mixed_frames,
    stack_both,
)
from zemosaic_xp import StackConfig

pytestmark = pytest.mark.usefixtures("kernels_on")
REJECT = "percentile"


@pytest.mark.parametrize("normalize", ["none", "multiplicative"])
@pytest.mark.parametrize("n", N_FRAMES)
def test_band_equals_portable(n, normalize, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n), band_calls, normalize=normalize)


@pytest.mark.parametrize("params", [dict(percentile_low=0.05, percentile_high=0.05),
                                    dict(percentile_low=0.5, percentile_high=0.3, min_survivors=1),
                                    dict(percentile_low=0.01, percentile_high=0.01, min_survivors=6)])
@pytest.mark.parametrize("n", [6, 33, 60])
def test_parameters_equal_portable(n, params, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n + 7), band_calls, **params)


def test_band_size_invariance():
    check_band_invariance(REJECT)


def test_known_answer(band_calls):
    # Median 100: bounds [100 − 0.2·100, 100 + 0.1·100] = [80, 110] drop 60 and 150.
    frames = np.array([100, 101, 99, 150, 60], np.float32)[:, None, None] * np.ones((1, 1, 2), np.float32)
    frames[:, 0, 1] = [10, 10, 10, 10, 10]
    expected = {"mean": (100.0, 10.0), "median": (100.0, 10.0), "sum": (300.0, 50.0), "min": (99.0, 10.0),
                "max": (101.0, 10.0)}
    for combine, image in expected.items():
        fast, ref = stack_both(frames, StackConfig.plain(reject=REJECT, combine=combine))
        assert_identical(fast, ref)
        np.testing.assert_array_equal(fast.image[0], np.array(image, np.float32))
        np.testing.assert_array_equal(fast.coverage[0], [3, 5])
        np.testing.assert_array_equal(fast.rejected_low[0], [1, 0])
        np.testing.assert_array_equal(fast.rejected_high[0], [1, 0])
    assert band_calls and all(band_calls)
