"""The numba band kernel of ``linear_fit_clip`` (backends/numba/linear_fit_clip.py) against the portable core.

Bit-identical results for every combine, frame count (sorting network and NumPy's
sort), normalisation and parameter set, band-size invariant; rows whose kept set is not a range; one known answer.
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
from zemosaic_xp.backends.numba import linear_fit_clip
from zemosaic_xp.core.ops import ArrayOps
from zemosaic_xp.core.reject import linear_fit_clip as core_linear_fit_clip

pytestmark = pytest.mark.usefixtures("kernels_on")
REJECT = "linear_fit_clip"


@pytest.mark.parametrize("normalize", ["none", "multiplicative"])
@pytest.mark.parametrize("n", N_FRAMES)
def test_band_equals_portable(n, normalize, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n), band_calls, normalize=normalize)


@pytest.mark.parametrize("params", [dict(kappa_low=2.0, kappa_high=2.5),
                                    dict(kappa_low=1.5, kappa_high=1.5, max_iters=3, min_survivors=1),
                                    dict(kappa_low=3.0, kappa_high=3.0, max_iters=1, min_survivors=6)])
@pytest.mark.parametrize("n", [6, 33, 60])
def test_parameters_equal_portable(n, params, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n + 7), band_calls, **params)


def test_band_size_invariance():
    check_band_invariance(REJECT)


@pytest.mark.parametrize("n", [9, 17, 60])
def test_rows_whose_kept_set_is_not_a_range(n, band_calls):
    # The data has such rows (the kernel flags them), and the stack still equals the core's.
    frames = mixed_frames(n, n)
    x = np.ascontiguousarray(np.moveaxis(frames, 0, -1).reshape(-1, n))
    s, count = ArrayOps(np).sort_valid(x)
    rows = s.shape[0]
    lo, hi, it = (np.empty(rows, np.int64) for _ in range(3))
    split, keep = np.empty(rows, np.bool_), np.empty(s.shape, np.bool_)
    with np.errstate(all="ignore"):
        linear_fit_clip.linear_fit_clip_rows(s, count[:, 0], 3.0, 3.0, 10, 3, lo, hi, it, split, keep)
    assert split.any()
    assert np.all(keep[split].sum(axis=1) == (hi - lo)[split])
    check_every_combine(REJECT, frames, band_calls)


def test_known_answer(band_calls):
    # A line (no rejection: σ is floored) and the same line with its top replaced by 1000.
    frames = np.stack([np.arange(1, 11, dtype=np.float32)] * 2, axis=1)[:, None, :]
    frames[9, 0, 1] = 1000
    fast, ref = stack_both(frames, StackConfig.plain(reject=REJECT, combine="mean"))
    assert_identical(fast, ref)
    np.testing.assert_array_equal(fast.image[0], np.array([5.5, 5.0], np.float32))
    np.testing.assert_array_equal(fast.coverage[0], [10, 9])
    np.testing.assert_array_equal(fast.rejected_high[0], [0, 1])
    assert band_calls and all(band_calls)


def test_constants_are_the_core_s():
    assert linear_fit_clip.RELATIVE_SIGMA_FLOOR == core_linear_fit_clip._RELATIVE_SIGMA_FLOOR
