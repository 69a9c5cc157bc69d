"""The numba band kernel of ``mad`` (backends/numba/mad.py) against the portable core.

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
REJECT = "mad"


@pytest.mark.parametrize("normalize", ["none", "multiplicative"])
@pytest.mark.parametrize("n", N_FRAMES)
def test_band_equals_portable(n, normalize, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n), band_calls, normalize=normalize)


@pytest.mark.parametrize("params", [dict(kappa_low=2.0, kappa_high=2.5),
                                    dict(kappa_low=1.5, kappa_high=1.5, max_iters=10, min_survivors=1),
                                    dict(kappa_low=3.0, kappa_high=3.0, max_iters=1, min_survivors=6)])
@pytest.mark.parametrize("n", [6, 33, 60])
def test_parameters_equal_portable(n, params, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n + 7), band_calls, **params)


def test_band_size_invariance():
    check_band_invariance(REJECT)


def test_known_answer(band_calls):
    # Median 12, MAD 1, σ = 1.4826: 100 goes; then median 11.5, MAD 1: nothing changes (2 iterations).
    frames = np.array([10, 11, 12, 13, 100], np.float32)[:, None, None]
    expected = {"mean": 11.5, "median": 11.5, "sum": 46.0, "min": 10.0, "max": 13.0}
    for combine, image in expected.items():
        fast, ref = stack_both(frames, StackConfig.plain(reject=REJECT, combine=combine))
        assert_identical(fast, ref)
        assert fast.image[0, 0] == np.float32(image)
        assert (fast.coverage[0, 0], fast.rejected_low[0, 0], fast.rejected_high[0, 0]) == (4, 0, 1)
        assert fast.stats["iterations"] == 2
    assert band_calls and all(band_calls)
