"""Medians by selection on NumPy: the two middle samples of each row, not a sort.

Also for the numba band path: :func:`middle_ranks_in_place` leaves a band's rows with
their middle ranks where a sort would put them (a median without rejection).

NumPy's SIMD selection (``ndarray.partition``) is ~4× faster than its sort at 65 536
samples; the next order statistic is the minimum above the partition point, and the two
are averaged by the core's one formula (:func:`~zemosaic_xp.core.nanstats.middle_value`),
so the values equal the portable median's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..core.nanstats import middle_value

__all__ = ["median_of_rows", "median_packed", "middle_ranks_in_place"]


def median_of_rows(rows: Iterable[np.ndarray], dtype: Any, xp: Any) -> np.ndarray:
    """Return the median of each 1-D array of ``rows``, partitioning it in place.

    Parameters
    ----------
    rows : iterable of ndarray, shape (n_i,)
        Writable rows without NaN (scratch: reordered).
    dtype : dtype
        Of the rows and the result.
    xp : namespace
        The NumPy array namespace (for the formula).

    Returns
    -------
    ndarray, shape (R,), ``dtype``
        NaN for an empty row, without a warning.
    """
    low, high, empty = [], [], []
    for v in rows:
        n = v.shape[0]
        k = max(0, (n - 1) // 2)
        if n:
            v.partition(k)
        low.append(v[k] if n else np.inf)
        high.append((v[k] if n % 2 else v[k + 1:].min()) if n else np.inf)
        empty.append(n == 0)
    return middle_value(np.asarray(low, dtype), np.asarray(high, dtype), np.asarray(empty, bool), xp=xp)


def middle_ranks_in_place(s: np.ndarray) -> bool:
    """Put the middle rank(s) of every row of ``s`` where a sort would, if every sample is valid.

    The band kernels' median of a sorted row reads its positions ``(N − 1) // 2`` and
    ``N // 2``; this selects those two instead of sorting the row (NumPy's selection
    costs about half its sort at 500 samples a row).

    Parameters
    ----------
    s : ndarray, shape (P, N), float32
        Gathered rows, invalid samples as ``+inf``; reordered in place.

    Returns
    -------
    bool
        False (``s`` untouched) when a row holds ``+inf`` or ``N < 2``. True: each row
        is partitioned about ``k = (N − 1) // 2`` and, for even ``N``, the smallest value
        above it moved to ``k + 1``: both hold the sorted row's values there. The rows
        keep their values, in another order (sums over them may round differently in
        their last bits).
    """
    n = s.shape[1]
    if n < 2 or not float(s.max(initial=-np.inf)) < np.inf:
        return False
    k = (n - 1) // 2
    s.partition(k, axis=-1)
    if n % 2 == 0:
        rows = np.arange(s.shape[0])
        above = k + 1 + np.argmin(s[:, k + 1:], axis=-1)
        upper = s[rows, above]
        s[rows, above] = s[:, k + 1]
        s[:, k + 1] = upper
    return True


def median_packed(buf: np.ndarray, counts: np.ndarray, xp: Any) -> np.ndarray:
    """Return the median of the first ``counts[r]`` samples of each row of ``buf``, selected in place.

    Parameters
    ----------
    buf : ndarray, shape (R, M), float, writable
        Scratch rows: their first ``counts[r]`` samples (no NaN among them) are the
        values, the rest is ignored; reordered by the selection.
    counts : ndarray, shape (R,), int
        Values per row.
    xp : namespace
        The NumPy array namespace.

    Returns
    -------
    ndarray, shape (R,), dtype of ``buf``
        The median of the same values as ``NumpyOps.median_valid``; NaN for an empty row.
    """
    return median_of_rows((buf[r, :int(counts[r])] for r in range(buf.shape[0])), buf.dtype, xp)
