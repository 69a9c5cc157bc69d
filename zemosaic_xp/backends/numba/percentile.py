"""Numba kernel of Siril's percentile clipping (``reject="percentile"``) on sorted rows.

The maths of :mod:`zemosaic_xp.core.reject.percentile`, one pixel at a time, in the
same float32 arithmetic: the median m of the valid samples, the bounds
``m − f32(p_low)·|m|`` and ``m + f32(p_high)·|m|`` rounded to float32 as NumPy forms
them, and the same searches. The kept ranges and iteration counts are the core's to
the bit (the image then follows from :func:`~.combine.combine_ranges`).
"""

from __future__ import annotations

import numpy as np

from .common import first_above, first_at_least, inline, jit, median_range, survivors_floor

__all__ = ["percentile_rows", "percentile_selected_rows"]


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


@jit
def percentile_selected_rows(s, low, high, min_survivors, out_lo, out_hi, out_it):
    """:func:`percentile_rows` on rows whose middle ranks are selected, not sorted.

    Every sample of every row is valid (``n_valid = N``), and each row holds its sorted
    row's values at positions ``(N − 1) // 2`` and ``N // 2``
    (:func:`~zemosaic_xp.backends.select_numpy.middle_ranks_in_place`). Each row is
    reordered in place into ``[rejected low | kept | rejected high]``, the kept range
    ``[lo, hi)`` holding the same values as the sorted row's (the kept set is every
    value within the bounds), its smallest value first and its largest last: what the
    mean's combine reads of a range (:func:`~.combine.combine_ranges`: its sum in any
    order, exact or redone in frame order, and its bounds), so that the image, counts
    and ranges are those of :func:`percentile_rows` on the sorted rows. Few samples
    leave their place (a cosmic ray, a trail): the two partitions swap only those.

    Parameters
    ----------
    s : ndarray, shape (P, N), float32
        The rows (reordered in place).
    low, high, min_survivors, out_lo, out_hi, out_it
        As :func:`percentile_rows`.
    """
    n = s.shape[1]
    need = survivors_floor(min_survivors, n)
    for r in range(s.shape[0]):
        m = median_range(s, r, 0, n)
        if m != m:
            m = np.float32(0.0)
        spread = abs(m)
        lower = np.float32(m - np.float32(low * spread))
        upper = np.float32(m + np.float32(high * spread))
        lo = 0
        hi = 0
        for j in range(n):  # branch-free counts: count(x < lower), count(x <= upper)
            x = s[r, j]
            lo += x < lower
            hi += x <= upper
        if hi - lo < need or hi < lo:
            lo = 0
            hi = n
        else:
            _split(s, r, 0, lo, n, lower, True)
            _split(s, r, lo, hi, n, upper, False)
        _ends(s, r, lo, hi)
        out_lo[r] = lo
        out_hi[r] = hi
        out_it[r] = 1 if n > need else 0


@inline
def _split(s, r, a, b, n, bound, below):
    """Swap the values of ``s[r, a:n]`` so that ``[a, b)`` holds those on the ``bound``'s side.

    ``below``: ``x < bound`` (exactly ``b − a`` of them in ``[a, n)``), else ``x <= bound``.
    A scan from each end of the split; only misplaced values move.
    """
    i = a
    j = b
    while True:
        while i < b and ((s[r, i] < bound) if below else (s[r, i] <= bound)):
            i += 1
        while j < n and not ((s[r, j] < bound) if below else (s[r, j] <= bound)):
            j += 1
        if i >= b or j >= n:
            break
        v = s[r, i]
        s[r, i] = s[r, j]
        s[r, j] = v


@inline
def _ends(s, r, lo, hi):
    """Move the smallest value of ``s[r, lo:hi]`` to ``lo`` and then its largest to ``hi − 1``."""
    if hi > lo:
        k = lo
        for j in range(lo + 1, hi):
            if s[r, j] < s[r, k]:
                k = j
        v = s[r, lo]
        s[r, lo] = s[r, k]
        s[r, k] = v
        k = lo
        for j in range(lo + 1, hi):
            if s[r, j] > s[r, k]:
                k = j
        v = s[r, hi - 1]
        s[r, hi - 1] = s[r, k]
        s[r, k] = v
