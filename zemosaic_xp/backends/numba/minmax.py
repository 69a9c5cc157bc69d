"""Numba kernel of the extrema clip (``reject="minmax"``): a fixed count from each end.

The maths of :mod:`zemosaic_xp.core.reject.minmax`: drop the ``minmax_low`` lowest and
``minmax_high`` highest valid samples of each sorted row, unless that would leave
fewer than ``min(min_survivors, n_valid)``. Integer arithmetic only: the ranges and
iteration counts are the core's exactly. The core breaks ties across a bound by
frame index; the combine (:func:`~.combine.combine_ranges`) does the same where the
frame order matters.
"""

from __future__ import annotations

from .common import jit, survivors_floor

__all__ = ["minmax_rows"]


@jit
def minmax_rows(n_valid, low, high, min_survivors, out_lo, out_hi, out_it):
    """The kept range of every row after dropping ``low`` and ``high`` samples.

    Parameters
    ----------
    n_valid : ndarray, shape (R,), int64
        Valid samples per row.
    low, high : int
        Samples to drop from the bottom and the top.
    min_survivors : int
        A row that would keep fewer than ``min(min_survivors, n_valid)`` keeps every sample.
    out_lo, out_hi, out_it : ndarray, shape (R,), int64
        Outputs: the kept range ``[lo, hi)`` of the sorted row, and 1 where it drops
        anything, else 0.
    """
    for r in range(n_valid.shape[0]):
        n = n_valid[r]
        lo = low if low < n else n
        hi = n - high
        need = survivors_floor(min_survivors, n)
        ok = hi - lo >= need
        out_it[r] = 1 if ok and (lo > 0 or hi < n) else 0
        out_lo[r] = lo if ok else 0
        out_hi[r] = hi if ok else n
