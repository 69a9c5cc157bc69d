"""The numba band path of ``reject="auto"`` (backends/numba/band.py) against the portable core.

``auto`` is ``mad`` on pixels with 3 valid samples and ``gesd`` from 4: the numba path
runs each kernel on its own rows. Bit-identical results for every combine, frame count
(sorting network and NumPy's sort), normalisation and parameter set, band-size
invariant; one known answer with both depths in one stack.
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
REJECT = "auto"


@pytest.mark.parametrize("normalize", ["none", "multiplicative"])
@pytest.mark.parametrize("n", N_FRAMES)
def test_band_equals_portable(n, normalize, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n), band_calls, normalize=normalize)


@pytest.mark.parametrize("params", [dict(kappa_low=2.0, kappa_high=2.5, gesd_alpha=0.1),
                                    dict(kappa_low=1.5, kappa_high=1.5, max_iters=10, min_survivors=1,
                                         gesd_outlier_fraction=0.45)])
@pytest.mark.parametrize("n", [4, 7, 33])
def test_parameters_equal_portable(n, params, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n + 7), band_calls, **params)


def test_band_size_invariance():
    check_band_invariance(REJECT)


def test_known_answer_mad_at_three_gesd_above(band_calls):
    # Pixel 0: 3 samples, a lone hit: mad removes it. Pixel 1: 5 samples, a lone hit: gesd.
    frames = np.full((5, 1, 2), np.nan, np.float32)
    frames[:3, 0, 0] = [10.0, 11.0, 500.0]
    frames[:, 0, 1] = [10.0, 11.0, 12.0, 11.5, 500.0]
    fast, ref = stack_both(frames, StackConfig.plain(reject=REJECT))
    assert_identical(fast, ref)
    np.testing.assert_array_equal(fast.image[0], np.float32([10.5, 11.125]))
    np.testing.assert_array_equal(fast.rejected_high[0], [1, 1])
    assert band_calls and all(band_calls)
