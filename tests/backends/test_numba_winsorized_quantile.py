"""The numba band kernel of ``winsorized_quantile`` (backends/numba/winsorized_quantile.py) against the core.

Bit-identical results for every combine, frame count (sorting network and NumPy's
sort), normalisation and parameter set, band-size invariant; re-winsorised samples;
one known answer. The inner 3σ clip is the κ-σ row kernel, as in the core with
numba: on pixels whose values span more than ~2**29 ulps its float64 sums may round
differently from the portable path's, so those rows are compared with the core's
pipeline on the NumPy backend, the others with the portable path.
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
from zemosaic_xp.backends.numba import winsorized_quantile
from zemosaic_xp.core.reject import winsorized_quantile as core_winsorized_quantile

pytestmark = pytest.mark.usefixtures("kernels_on")
REJECT = "winsorized_quantile"


@pytest.mark.parametrize("normalize", ["none", "multiplicative"])
@pytest.mark.parametrize("n", N_FRAMES)
def test_band_equals_portable(n, normalize, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n, wide=False), band_calls, normalize=normalize)
    check_every_combine(REJECT, mixed_frames(n, n), band_calls, normalize=normalize, reference="core")


@pytest.mark.parametrize("params", [dict(winsor_rewinsor=True),
                                    dict(winsor_limits=(0.1, 0.2), kappa_low=2.0, kappa_high=2.5, min_survivors=1),
                                    dict(winsor_limits=(0.0, 0.3), winsor_rewinsor=True, min_survivors=6)])
@pytest.mark.parametrize("n", [6, 33, 60])
def test_parameters_equal_portable(n, params, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n + 7, wide=False), band_calls, **params)
    check_every_combine(REJECT, mixed_frames(n, n + 7), band_calls, reference="core", **params)


def test_band_size_invariance():
    check_band_invariance(REJECT)


@pytest.mark.parametrize("normalize", ["none", "additive"])
@pytest.mark.parametrize("n", [3, 8, 49])
def test_rewinsorised_samples_equal_portable(n, normalize, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n + 1, wide=False), band_calls, normalize=normalize,
                        winsor_rewinsor=True)
    check_every_combine(REJECT, mixed_frames(n, n + 1), band_calls, normalize=normalize, winsor_rewinsor=True,
                        reference="core")


def test_band_size_invariance_rewinsorised():
    check_band_invariance(REJECT, winsor_rewinsor=True)


def test_known_answer(band_calls):
    # 19 × 100 and one 10000: q(0.95) = 100 + 0.05·9900 = 595; the inner 3σ clip drops
    # the clamped 595, σ = 0 keeps the 100s. Re-winsorised, the hit counts as 595.
    frames = np.full((20, 1, 1), 100, np.float32)
    frames[7] = 10000
    for rewinsor, mean, coverage in ((False, 100.0, 19), (True, 124.75, 20)):
        config = StackConfig.plain(reject=REJECT, combine="mean", winsor_rewinsor=rewinsor)
        fast, ref = stack_both(frames, config)
        assert_identical(fast, ref)
        assert fast.image[0, 0] == np.float32(mean)
        assert (fast.coverage[0, 0], fast.rejected_low[0, 0], fast.rejected_high[0, 0]) == (coverage, 0, 1)
    assert band_calls and all(band_calls)


def test_clamp_is_numpy_clip():
    values = np.array([-np.inf, -1, -0.0, 0.0, 1, np.inf, np.nan], np.float32)
    x, lo, hi = (a.ravel() for a in np.meshgrid(values, values, values, indexing="ij"))
    want = np.clip(x, lo, hi)
    got = np.array([winsorized_quantile.clamp(*v) for v in zip(x, lo, hi)], np.float32)
    assert got.tobytes() == want.tobytes()


def test_constants_are_the_core_s():
    assert winsorized_quantile.INNER_SIGMA == core_winsorized_quantile._INNER_SIGMA
    assert winsorized_quantile.INNER_ITERS == core_winsorized_quantile._INNER_ITERS
    assert winsorized_quantile.MIN_FRAMES == core_winsorized_quantile._MIN_FRAMES
