"""The numba band kernel of ``gesd`` (backends/numba/gesd.py) against the portable core.

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
from zemosaic_xp.backends.numba import gesd
from zemosaic_xp.core.reject import gesd as core_gesd

pytestmark = pytest.mark.usefixtures("kernels_on")
REJECT = "gesd"


@pytest.mark.parametrize("normalize", ["none", "multiplicative"])
@pytest.mark.parametrize("n", N_FRAMES)
def test_band_equals_portable(n, normalize, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n), band_calls, normalize=normalize)


@pytest.mark.parametrize("params", [dict(gesd_outlier_fraction=0.1, gesd_alpha=0.2),
                                    dict(gesd_outlier_fraction=0.5, gesd_alpha=0.01, min_survivors=1),
                                    dict(gesd_outlier_fraction=0.3, gesd_alpha=0.05, min_survivors=8)])
@pytest.mark.parametrize("n", [6, 33, 60])
def test_parameters_equal_portable(n, params, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n + 7), band_calls, **params)


def test_band_size_invariance():
    check_band_invariance(REJECT)


def test_known_answer(band_calls):
    # Three ESD steps (0.3·10); only the first, 50, is significant.
    frames = np.array([10, 10.5, 9.5, 10.25, 9.75, 10.125, 9.875, 10.375, 9.625, 50], np.float32)[:, None, None]
    fast, ref = stack_both(frames, StackConfig.plain(reject=REJECT, combine="mean"))
    assert_identical(fast, ref)
    assert fast.image[0, 0] == np.float32(10.0)
    assert (fast.coverage[0, 0], fast.rejected_low[0, 0], fast.rejected_high[0, 0]) == (9, 0, 1)
    assert fast.stats["iterations"] == 3
    assert band_calls and all(band_calls)


def test_constants_are_the_core_s():
    assert gesd.FLOOR_SLACK == core_gesd._FLOOR_SLACK
