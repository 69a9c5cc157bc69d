"""Numba kernel of Rosner's generalized ESD test (``reject="gesd"``) on sorted rows.

The maths of :mod:`zemosaic_xp.core.reject.gesd`, one pixel at a time, with the core's
float64 operations in the core's order: the float64 prefix sums of
``d = x − median`` added sequentially (``numpy.cumsum``), a range's sums as the
difference of two prefix sums, the mean, the sample standard deviation, the
studentized extreme of either end and the critical value λ of the range's count
(the same table, :func:`~zemosaic_xp.core.reject.gesd_table.gesd_critical_values`).
The kept ranges and iteration counts are the core's to the bit.
"""

from __future__ import annotations

import math

import numpy as np

from .common import jit, median_range, np_maximum, survivors_floor
from .constants import FLOOR_SLACK

__all__ = ["gesd_rows", "FLOOR_SLACK"]


@jit
def gesd_rows(s, n_valid, fraction, lam, max_steps, min_survivors, out_lo, out_hi, out_it):
    """Generalized ESD test of every sorted row.

    Parameters
    ----------
    s, n_valid : ndarray
        Sorted rows and their valid counts (row-kernel contract,
        :mod:`zemosaic_xp.backends.numba`).
    fraction : float
        ``gesd_outlier_fraction``: at most ``floor(fraction·n_valid)`` ESD steps.
    lam : ndarray, shape (N + 1,), float64
        Critical value λ of each sample count (``gesd_critical_values(N, alpha)``).
    max_steps : int
        Steps of the whole stack, ``min(floor(fraction·N), N − 2)``: no row runs more.
    min_survivors : int
        Each row keeps at least ``max(min(min_survivors, n_valid), 2)`` samples.
    out_lo, out_hi, out_it : ndarray, shape (R,), int64
        Outputs: the kept range ``[lo, hi)`` (the state after the last significant
        step) and the ESD steps run.

    Notes
    -----
    A step removes the end of the range farther from its mean (the high one on a
    tie); the outliers are the removals up to the last step whose ratio
    ``max|x − x̄| / s`` exceeds λ of the count before the removal.
    """
    n_cols = s.shape[1]
    f1 = np.empty(n_cols + 1)
    f2 = np.empty(n_cols + 1)
    f1[0] = 0.0
    f2[0] = 0.0
    for r in range(s.shape[0]):
        n = n_valid[r]
        need = survivors_floor(min_survivors, n)
        floor_keep = need if need > 2 else 2
        steps = np.int64(math.floor(fraction * np.float64(n) + FLOOR_SLACK))
        if steps > n - floor_keep:
            steps = n - floor_keep
        if steps < 0:
            steps = 0
        if steps > max_steps:
            steps = max_steps
        lo = 0
        hi = n
        best_lo = 0
        best_hi = n
        if steps > 0:
            c = median_range(s, r, 0, n)
            m0 = np.float64(c)
            # Inclusive prefix sums, added in the row's order as numpy.cumsum does.
            a1 = 0.0
            a2 = 0.0
            for j in range(n):
                d = np.float64(s[r, j]) - m0
                a1 = d if j == 0 else a1 + d
                a2 = d * d if j == 0 else a2 + d * d
                f1[j + 1] = a1
                f2[j + 1] = a2
            for _ in range(steps):
                count = hi - lo
                sum1 = f1[hi] - f1[lo]
                sum2 = f2[hi] - f2[lo]
                mean = sum1 / np.float64(count if count > 1 else 1)
                dof = np.float64(count - 1 if count > 2 else 1)
                sd = np.sqrt(np_maximum((sum2 - sum1 * mean) / dof, 0.0))
                first = np.float64(s[r, lo]) - m0
                last = np.float64(s[r, hi - 1]) - m0
                d_low = mean - first
                d_high = last - mean
                ratio = np_maximum(d_low, d_high) / (sd if sd > 0.0 else 1.0)
                ratio = ratio if sd > 0.0 else 0.0
                significant = ratio > lam[count]
                if d_high >= d_low:
                    hi -= 1
                else:
                    lo += 1
                if significant:
                    best_lo = lo
                    best_hi = hi
        out_lo[r] = best_lo
        out_hi[r] = best_hi
        out_it[r] = steps
