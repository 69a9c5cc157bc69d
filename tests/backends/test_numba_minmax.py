"""The numba band kernel of ``minmax`` (backends/numba/minmax.py) against the portable core.

Bit-identical results for every combine, frame count (sorting network and NumPy's
sort), normalisation and parameter set, band-size invariant; one known answer, ties across the bounds.
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
REJECT = "minmax"


@pytest.mark.parametrize("normalize", ["none", "multiplicative"])
@pytest.mark.parametrize("n", N_FRAMES)
def test_band_equals_portable(n, normalize, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n), band_calls, normalize=normalize)


@pytest.mark.parametrize("params", [dict(minmax_low=0, minmax_high=2),
                                    dict(minmax_low=2, minmax_high=0, min_survivors=1),
                                    dict(minmax_low=3, minmax_high=3, min_survivors=5)])
@pytest.mark.parametrize("n", [6, 33, 60])
def test_parameters_equal_portable(n, params, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n + 7), band_calls, **params)


def test_band_size_invariance():
    check_band_invariance(REJECT)


def test_known_answer(band_calls):
    # The lowest and the highest go; on ties exactly one of the equal samples goes.
    frames = np.array([[5, 2], [1, 2], [9, 2], [3, 2], [7, 2]], np.float32)[:, None, :]
    expected = {"mean": (5.0, 2.0), "median": (5.0, 2.0), "sum": (15.0, 6.0), "min": (3.0, 2.0),
                "max": (7.0, 2.0)}
    for combine, image in expected.items():
        fast, ref = stack_both(frames, StackConfig.plain(reject=REJECT, combine=combine))
        assert_identical(fast, ref)
        np.testing.assert_array_equal(fast.image[0], np.array(image, np.float32))
        np.testing.assert_array_equal(fast.coverage[0], [3, 3])
        np.testing.assert_array_equal(fast.rejected_low[0], [1, 1])
        np.testing.assert_array_equal(fast.rejected_high[0], [1, 1])
    assert band_calls and all(band_calls)


@pytest.mark.parametrize("n", [12, 60])
def test_ties_across_the_bounds_in_frame_order(n, band_calls):
    # Tied values across both bounds, and sums whose float64 value depends on the order
    # of the additions (±1e20 and ±1e25 cancel): the combine adds the frames in order,
    # dropping the first / last of the tied frames, as the core does.
    rng = np.random.default_rng(n)
    frames = rng.integers(0, 3, (n, 8, 9)).astype(np.float32)
    for value in (1e20, -1e20, 1e25, -1e25):
        frames[rng.random(frames.shape) < 0.15] = np.float32(value)
    check_every_combine(REJECT, frames, band_calls, minmax_low=2, minmax_high=3)
