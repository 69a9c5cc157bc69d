"""Medians by selection on NumPy: the two middle samples of each row, not a sort.

Also for the numba band path: :func:`middle_ranks_in_place` leaves a band's rows with
their middle ranks where a sort would put them (a median without rejection).

NumPy's SIMD selection (``ndarray.partition``) is ~4× faster than its sort at 65 536
samples; the next order statistic is the minimum above the partition point, and the two
are averaged by the core's one formula (:func:`~zemosaic_xp.core.nanstats.middle_value`),
so the values equal the portable median's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..core.nanstats import middle_value
from .numba import numba_kernels

__all__ = ["SAMPLED_MIN_N", "median_of_rows", "median_packed", "middle_ranks_in_place", "split_kernel"]


#: Rows at least this long take their middle pair by a sampled selection (with numba).
SAMPLED_MIN_N = 16384
#: Values sampled (evenly spaced) from a row to place its two pivots.
_SAMPLE = 1024
#: The pivots' distance from the wanted rank, in standard deviations of a sampled rank
#: (``√(S·q·(1 − q)) <= √S / 2``): for rows in random order the rank falls outside them
#: about once in 80 rows (then NumPy selects from the whole row); ~8 % of a row between.
_SPREAD = 2.5
#: Values between the pivots that NumPy's selection finishes (more: another split).
_FINAL = 2048
#: Splits at most before the final selection (rows of one repeated value do not shrink).
_MAX_SPLITS = 4


def _selected_pair(v: np.ndarray, n: int) -> tuple[Any, Any]:
    """The middle pair of ``v`` (length ``n`` >= 1) by NumPy's selection of the whole row."""
    k = (n - 1) // 2
    v.partition(k)
    return v[k], (v[k] if n % 2 else v[k + 1:].min())


def _pivots(values: np.ndarray, count: int, rank: int) -> tuple[Any, Any]:
    """Two values of an even sample of ``values[:count]`` about its rank-``rank`` value."""
    step = count // _SAMPLE
    sample = values[:step * _SAMPLE:step].copy()
    size = sample.shape[0]
    at = rank * size // count
    spread = int(_SPREAD * math.sqrt(size) / 2) + 2
    a, b = max(0, at - spread), min(size - 1, at + spread + 1)
    sample.partition(b)  # two single selections: NumPy's several-kth partition is slower
    sample[:b].partition(a)
    return sample[a], sample[b]


def _sampled_pair(v: np.ndarray, n: int, split: Any, scratch: np.ndarray) -> tuple[Any, Any] | None:
    """The middle pair of ``v`` from the values between sampled pivots; None when it cannot tell.

    Each split keeps the values between two pivots placed from a sample around the wanted
    rank (a few percent of them), until NumPy's selection finishes on a few thousand. The
    values are the order statistics themselves, so they equal :func:`_selected_pair`'s
    (ties have one value); None when the wanted rank falls outside the pivots, and when a
    middle value is zero (which of ±0 a selection returns depends on the order it visits
    them: the whole-row selection decides, as before).
    """
    k = (n - 1) // 2
    values, count, rank, high_pivot = v, n, k, None
    for depth in range(_MAX_SPLITS):
        if count <= _FINAL:
            break
        low_pivot, high_pivot = _pivots(values, count, rank)
        out = scratch[depth % 2]  # ping-pong: never the values being split
        below, count = split(values, count, low_pivot, high_pivot, out)
        if not below <= rank < below + count:
            return None
        values, rank = out, rank - below
    middle = values[:count]
    middle.partition(rank)
    low = middle[rank]
    if n % 2:
        high = low
    elif rank + 1 < count:
        high = middle[rank + 1:].min()
    else:  # the next rank is the smallest value above the last high pivot (rare)
        high = v[v > high_pivot].min()
    return None if low == 0 or high == 0 else (low, high)


def split_kernel(rows: np.ndarray) -> Any:
    """Return numba's :func:`~.numba.select.split_row` where the sampled selection applies.

    Parameters
    ----------
    rows : ndarray, shape (..., M)
        The rows to be selected from.

    Returns
    -------
    callable or None
        The kernel for float32 rows of at least :data:`SAMPLED_MIN_N` values when numba
        works; None otherwise (NumPy's selection of the whole rows).
    """
    if rows.dtype != np.float32 or rows.shape[-1] < SAMPLED_MIN_N:
        return None
    kernels = numba_kernels()
    return None if kernels is None else kernels.split_row


def median_of_rows(rows: Iterable[np.ndarray], dtype: Any, xp: Any, *, split: Any = None) -> np.ndarray:
    """Return the median of each 1-D array of ``rows``, partitioning it in place.

    Parameters
    ----------
    rows : iterable of ndarray, shape (n_i,)
        Writable rows without NaN (scratch: reordered).
    dtype : dtype
        Of the rows and the result.
    xp : namespace
        The NumPy array namespace (for the formula).
    split : callable, optional
        The kernel ``split_row`` of numba (:func:`split_kernel`): float32 rows of at least
        :data:`SAMPLED_MIN_N` values are then selected from the values between two
        sampled pivots (3–4× faster at 65 536 values), the same values.

    Returns
    -------
    ndarray, shape (R,), ``dtype``
        NaN for an empty row, without a warning.
    """
    low, high, empty = [], [], []
    scratch = None
    for v in rows:
        n = v.shape[0]
        pair = None
        if split is not None and n >= SAMPLED_MIN_N and v.dtype == np.float32:
            if scratch is None or scratch.shape[1] < n:
                scratch = np.empty((2, n), np.float32)
            pair = _sampled_pair(v, n, split, scratch)
        if pair is None:
            pair = _selected_pair(v, n) if n else (np.inf, np.inf)
        low.append(pair[0])
        high.append(pair[1])
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
    return median_of_rows((buf[r, :int(counts[r])] for r in range(buf.shape[0])), buf.dtype, xp,
                          split=split_kernel(buf))
