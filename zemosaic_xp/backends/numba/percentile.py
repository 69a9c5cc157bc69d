"""Numba kernel of Siril's percentile clipping (``reject="percentile"``) on sorted rows.

The maths of :mod:`zemosaic_xp.core.reject.percentile`, one pixel at a time, in the
same float32 arithmetic: the median m of the valid samples, the bounds
``m − f32(p_low)·|m|`` and ``m + f32(p_high)·|m|`` rounded to float32 as NumPy forms
them, and the same searches. The kept ranges and iteration counts are the core's to
the bit (the image then follows from :func:`~.combine.combine_ranges`).
"""

from __future__ import annotations

import numpy as np

from .common import first_above, first_at_least, jit, median_range, survivors_floor

__all__ = ["percentile_rows"]


@jit
def percentile_rows(s, n_valid, low, high, min_survivors, out_lo, out_hi, out_it):
    """One percentile clip of every sorted row.

    Parameters
    ----------
    s, n_valid : ndarray
        Sorted rows and their valid counts (row-kernel contract,
        :mod:`zemosaic_xp.backends.numba`).
    low, high : float32
        ``percentile_low`` and ``percentile_high``, already rounded to float32 (the core
        multiplies them with a float32 ``|m|``).
    min_survivors : int
        A row that would keep fewer than ``min(min_survivors, n_valid)`` keeps every sample.
    out_lo, out_hi, out_it : ndarray, shape (R,), int64
        Outputs: the kept range ``[lo, hi)``, and 1 where the row could reject, else 0.
    """
    for r in range(s.shape[0]):
        n = n_valid[r]
        need = survivors_floor(min_survivors, n)
        m = median_range(s, r, 0, n)
        if m != m:  # no valid sample: centre 0, as the core
            m = np.float32(0.0)
        spread = abs(m)
        lower = np.float32(m - np.float32(low * spread))
        upper = np.float32(m + np.float32(high * spread))
        lo = first_at_least(s, r, lower, 0, n)
        hi = first_above(s, r, upper, lo, n)
        if hi - lo < need:
            lo = 0
            hi = n
        out_lo[r] = lo
        out_hi[r] = hi
        out_it[r] = 1 if n > need else 0
