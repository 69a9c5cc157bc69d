"""Helpers on sorted rows: the sort-once toolkit of the rejections and order statistics.

The stack core sorts each band once (``nanstats.sort_valid``: ascending, invalid
samples last as ``+inf``) and every value-threshold rejection keeps a contiguous index
range ``[lo, hi)`` of each pixel's sorted samples. An iteration then needs only:

- one column of every row: :func:`take_rows`, one flat gather (the only gather of
  the core);
- counts of samples below / above a threshold: :func:`search_rows`, a per-row binary
  search of ``ceil(log2 N) + 1`` gathers (or, on GPUs, one count over the rows), and
  :func:`search_near`, which first checks the previous iteration's answer;
- sums over a range: :func:`centred_prefix_sums` (or :func:`anchored_sums`) once,
  then :func:`range_sum`, two gathers per range;
- the median absolute deviation without a second sort: :func:`mad_sorted` selects
  the middle of ``|s − c|``, which is two sorted runs, by a binary search.

Shapes: rows ``s`` are ``(R, N)``; per-row vectors (``lo``, ``hi``, ``n_valid``,
thresholds, centres) are ``(R,)``. Results stay on the namespace and device of ``s``.
This module imports nothing else from the core but the :class:`~.ops.ArrayOps` type.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device as _device

from .ops import ArrayOps

__all__ = ["take_rows", "search_rows", "search_near", "centred_prefix_sums", "anchored_sums",
           "range_sum", "mad_sorted"]

Array = Any


def take_rows(s: Array, idx: Array, /, *, xp: Any, rows: Array | None = None,
              clip: bool = False) -> Array:
    """``s[..., idx[...]]``: one column of every row, as one flat gather.

    Parameters
    ----------
    s : array, shape (..., N)
        Rows to read (any dtype).
    idx : array, int
        One column per row, shape ``s.shape[:-1]``; or, with ``rows``, shape (K,).
        Columns lie in ``[0, N)`` unless ``clip``.
    xp : namespace
        The array namespace of ``s``.
    rows : array, shape (K,), int in [0, R), optional
        For 2-D ``s`` only: gather ``s[rows[i], idx[i]]`` (a subset of the rows, without
        copying them).
    clip : bool
        Clamp ``idx`` into ``[0, N − 1]`` first, for positions past either end of a row
        whose value the caller masks out (default False).

    Returns
    -------
    array, shape of ``idx``, dtype of ``s``
        The gathered values, on the device of ``s``.

    Notes
    -----
    One 1-D ``take`` on the flattened array is several times cheaper than
    ``take_along_axis`` on NumPy and CuPy.
    """
    n = int(s.shape[-1])
    if clip:
        idx = xp.minimum(xp.maximum(idx, xp.zeros_like(idx)), xp.full_like(idx, max(n - 1, 0)))
    flat = xp.reshape(s, (-1,))
    if rows is None and idx.ndim == 1:  # (R, N) rows: the hot case of every iterative clip
        rows = xp.arange(int(s.shape[0]), dtype=idx.dtype, device=_device(s))
    if rows is not None:
        return xp.take(flat, rows * n + idx)
    shape = tuple(int(v) for v in idx.shape)
    first = xp.arange(math.prod(shape), dtype=idx.dtype, device=_device(s)) * n
    return xp.reshape(xp.take(flat, first + xp.reshape(idx, (-1,))), shape)


def search_rows(s: Array, threshold: Array, lo: Array, hi: Array, /, *, inclusive: bool = False,
                xp: Any, rows: Array | None = None, by_count: bool = False) -> Array:
    """First index in ``[lo, hi)`` whose value is ``>= threshold`` (``> threshold`` if inclusive).

    Equals ``lo + count(s[lo:hi] < threshold)`` (``<=`` if inclusive) for ascending rows:
    the core's one binary search.

    Parameters
    ----------
    s : array, shape (R, N)
        Rows sorted ascending along the last axis.
    threshold : array, shape (K,), float32 or float64
        One threshold per searched row (compared exactly, without rounding).
    lo, hi : array, shape (K,), int64
        The range ``[lo, hi)`` searched in each row, ``lo <= hi``.
    inclusive : bool
        Count the samples equal to ``threshold`` as below it (default False).
    xp : namespace
        The array namespace of ``s``.
    rows : array, shape (K,), int64, optional
        Search rows ``rows`` of ``s`` (default: every row, K = R).
    by_count : bool
        Count ``s < threshold`` over whole rows instead (``ops.count_search``): a
        compare and a count on ``(R, N)`` instead of ``ceil(log2 N) + 1`` rounds of a dozen on
        ``(R,)``, for GPUs, whose time goes to launches. Same result; ignored with
        ``rows``.

    Returns
    -------
    array, shape (K,), int64
        The index in ``[lo, hi]``, on the device of ``s``.

    Notes
    -----
    Both ways need the whole row ascending (invalid samples last as ``+inf``): then the
    count below the threshold over the row is the first index at or above it, which
    clipped to ``[lo, hi]`` is the search's answer, a NaN threshold included (``lo``).
    """
    if by_count and rows is None:
        below = (s <= threshold[:, None]) if inclusive else (s < threshold[:, None])
        count = xp.astype(xp.count_nonzero(below, axis=-1), lo.dtype)
        return xp.minimum(xp.maximum(count, lo), hi)
    n = int(s.shape[-1])
    left, right = lo, hi
    top = xp.full_like(lo, max(n - 1, 0))
    for _ in range(max(1, n.bit_length()) + 1):
        mid = (left + right) // 2
        value = take_rows(s, xp.minimum(mid, top), xp=xp, rows=rows)
        go_right = (value <= threshold) if inclusive else (value < threshold)
        go_right = go_right & (mid < right)
        left = xp.where(go_right, mid + 1, left)
        right = xp.where(go_right, right, mid)
    return left


def search_near(s: Array, threshold: Array, lo: Array, hi: Array, guess: Array, /, *,
                inclusive: bool = False, xp: Any, ops: ArrayOps) -> Array:
    """:func:`search_rows` that first checks a guess (two gathers per row).

    Iterative clips move their bounds little between iterations, so the previous
    count is almost always right. With ``ops.compact`` only the rows whose guess
    fails are searched; otherwise (GPU) every row is, with no host synchronisation.

    Parameters
    ----------
    s : array, shape (R, N)
        Rows sorted ascending along the last axis.
    threshold : array, shape (R,), float32 or float64
        As :func:`search_rows`.
    lo, hi : array, shape (R,), int64
        As :func:`search_rows`.
    guess : array, shape (R,), int64
        The expected answer (any value: it is checked).
    inclusive : bool
        As :func:`search_rows` (default False).
    xp : namespace
        The array namespace of ``s``.
    ops : ArrayOps
        Its ``compact`` flag picks the strategy.

    Returns
    -------
    array, shape (R,), int64
        What :func:`search_rows` returns.
    """
    if not ops.compact:
        return search_rows(s, threshold, lo, hi, inclusive=inclusive, xp=xp, by_count=ops.count_search)
    g = xp.minimum(xp.maximum(guess, lo), hi)
    top = xp.full_like(g, max(int(s.shape[-1]) - 1, 0))
    zero = xp.zeros_like(g)
    before = take_rows(s, xp.maximum(g - 1, zero), xp=xp)
    at = take_rows(s, xp.minimum(g, top), xp=xp)
    if inclusive:
        ok = ((g == lo) | (before <= threshold)) & ((g == hi) | (at > threshold))
    else:
        ok = ((g == lo) | (before < threshold)) & ((g == hi) | (at >= threshold))
    if bool(xp.all(ok)):
        return g
    bad = ~ok
    rows = xp.nonzero(bad)[0]
    found = search_rows(s, xp.take(threshold, rows), xp.take(lo, rows), xp.take(hi, rows),
                        inclusive=inclusive, xp=xp, rows=rows)
    (out,) = ops.expand(bad, [(found, g)])
    return out


def _centred(s: Array, centre: Array, n_valid: Array, xp: Any) -> Array:
    """``d = f64(s) − f64(centre)`` per row, 0 past ``n_valid`` (exact for float32 ``s``)."""
    f64 = xp.float64
    dev = _device(s)
    j = xp.arange(int(s.shape[-1]), device=dev)[None, :]
    d = xp.astype(s, f64) - xp.astype(centre, f64)[:, None]
    return xp.where(j < n_valid[:, None], d, xp.zeros((), dtype=f64, device=dev))


def centred_prefix_sums(s: Array, centre: Array, n_valid: Array, /, *, xp: Any,
                        ops: ArrayOps) -> tuple[Array, Array]:
    """Prefix sums of ``d`` and ``d²``, ``d = f64(s) − f64(centre)``, from each row's start.

    Parameters
    ----------
    s : array, shape (R, N), float32
        Rows sorted ascending, invalid samples last.
    centre : array, shape (R,), float32
        Usually the row's median, so the float64 sums keep every digit of a variance
        even on a large pedestal.
    n_valid : array, shape (R,), int64
        Samples past it add 0.
    xp : namespace
        The array namespace of ``s``.
    ops : ArrayOps
        Its ``prefix_sums`` runs the sequential cumulative sums.

    Returns
    -------
    f1 : array, shape (R, N + 1), float64
        ``f1[:, j] = Σ_{i < j} d[:, i]``, so ``Σ d[a:b] = f1[b] − f1[a]`` (:func:`range_sum`).
    f2 : array, shape (R, N + 1), float64
        The same for ``d²``.
    """
    d = _centred(s, centre, n_valid, xp)
    edge = xp.zeros((int(s.shape[0]), 1), dtype=d.dtype, device=_device(d))
    return (xp.concat([edge, ops.prefix_sums(d)], axis=-1),
            xp.concat([edge, ops.prefix_sums(d * d)], axis=-1))


def anchored_sums(s: Array, centre: Array, n_valid: Array, /, *, xp: Any,
                  ops: ArrayOps) -> tuple[Array, Array]:
    """Accumulate ``d`` and ``d²`` (``d = f64(s) − f64(centre)``) outwards from each row's middle.

    ``F[:, j]`` for ``j = 0 … N`` is ``Σ d[mid:j]`` for ``j >= mid`` and ``−Σ d[j:mid]`` below,
    ``mid = n_valid // 2``, so that ``Σ d[a:b] = F[b] − F[a]`` for any ``a <= b``, as for
    :func:`centred_prefix_sums`. Unlike those, the difference only ever involves
    samples between the range and the middle of the row: an extreme outlier on the
    other side cannot cancel the range's digits away. Each side is a sequential
    cumulative sum (``ops.prefix_sums``) running outwards from ``mid``; a compiled
    kernel reproduces it to the last bit.

    Parameters
    ----------
    s : array, shape (R, N), float32
        Rows sorted ascending, invalid samples last.
    centre : array, shape (R,), float32
        Usually the row's median.
    n_valid : array, shape (R,), int64
        Valid samples per row; samples past it add 0, and ``mid = n_valid // 2``.
    xp : namespace
        The array namespace of ``s``.
    ops : ArrayOps
        Its ``prefix_sums`` runs the sequential cumulative sums.

    Returns
    -------
    f1 : array, shape (R, N + 1), float64
        The anchored sums of ``d``, 0 at ``mid`` and constant past ``n_valid``, on the
        device of ``s``.
    f2 : array, shape (R, N + 1), float64
        The same for ``d²``.
    """
    d = _centred(s, centre, n_valid, xp)
    dev = _device(d)
    zero = xp.zeros((), dtype=d.dtype, device=dev)
    j = xp.arange(int(s.shape[-1]), device=dev)[None, :]
    upper = j >= (n_valid // 2)[:, None]
    edge = xp.zeros((int(s.shape[0]), 1), dtype=d.dtype, device=dev)
    out = []
    for v in (d, d * d):
        up = ops.prefix_sums(xp.where(upper, v, zero))
        down = xp.flip(ops.prefix_sums(xp.flip(xp.where(upper, zero, v), axis=-1)), axis=-1)
        out.append(xp.concat([edge, up], axis=-1) - xp.concat([down, edge], axis=-1))
    return out[0], out[1]


def range_sum(f: Array, lo: Array, hi: Array, /, *, xp: Any) -> Array:
    """``Σ d[lo:hi]`` of each row from :func:`centred_prefix_sums` or :func:`anchored_sums`.

    Parameters
    ----------
    f : array, shape (R, N + 1), float64
        Sums from :func:`centred_prefix_sums` or :func:`anchored_sums`.
    lo, hi : array, shape (R,), int64
        The range of each row, ``0 <= lo <= hi <= N``.
    xp : namespace
        The array namespace of ``f``.

    Returns
    -------
    array, shape (R,), float64
        ``f[hi] − f[lo]``: exactly 0 for an empty range.
    """
    return take_rows(f, hi, xp=xp) - take_rows(f, lo, xp=xp)


def mad_sorted(s: Array, n_valid: Array, centre: Array, /, *, xp: Any, lo: Array | None = None) -> Array:
    """Median of ``|s − centre|`` over each row's valid samples, without sorting again.

    ``|s − centre|`` (in the dtype of ``s``, as a sort of the deviations would see it)
    is two ascending runs: ``centre − s`` read leftwards from the first sample below
    the centre, and ``s − centre`` rightwards from the first one at or above it. The
    k-th smallest of two sorted runs is found by a binary search on how many come
    from the left run, so the result equals sorting the deviations and taking their
    median (the mean of the two middle ones for an even count).

    Parameters
    ----------
    s : array, shape (R, N)
        Rows sorted ascending, invalid samples last.
    n_valid : array, shape (R,), int64
        Valid samples per row, or the length of the sub-range starting at ``lo``.
    centre : array, shape (R,), dtype of ``s``
        Any finite value (typically the median of the range).
    xp : namespace
        The array namespace of ``s``.
    lo : array, shape (R,), int64, optional
        Start of the sub-range ``[lo, lo + n_valid)`` of each row; default 0.

    Returns
    -------
    array, shape (R,), dtype of ``s``
        The raw MAD; NaN, without a warning, where a row (range) has no sample.
    """
    dev = _device(s)
    n_cols = int(s.shape[-1])
    zero_i = xp.zeros_like(n_valid)
    start = zero_i if lo is None else lo
    split = search_rows(s, centre, start, start + n_valid, xp=xp)
    n_left, n_right = split - start, start + n_valid - split
    top = xp.full_like(n_valid, max(n_cols - 1, 0))

    def _left(i: Array) -> Array:  # i-th smallest deviation below the centre, 0 <= i < n_left
        return centre - take_rows(s, xp.minimum(xp.maximum(split - 1 - i, zero_i), top), xp=xp)

    def _right(j: Array) -> Array:  # j-th smallest deviation at or above the centre
        return take_rows(s, xp.minimum(xp.maximum(split + j, zero_i), top), xp=xp) - centre

    empty = n_valid == 0
    k = xp.where(empty, zero_i, (n_valid - 1) // 2)
    # How many of the k + 1 smallest deviations come from the left run: the first i in
    # [max(0, k + 1 − n_right), min(k + 1, n_left)] with _left(i) >= _right(k − i).
    i_lo = xp.maximum(k + 1 - n_right, zero_i)
    i_hi = xp.minimum(k + 1, n_left)
    for _ in range(max(1, n_cols.bit_length()) + 1):
        mid = (i_lo + i_hi) // 2
        active = i_lo < i_hi
        go = active & (_left(mid) < _right(k - mid))
        i_lo, i_hi = xp.where(go, mid + 1, i_lo), xp.where(active & ~go, mid, i_hi)
    i = i_lo
    ninf = xp.asarray(-xp.inf, dtype=s.dtype, device=dev)
    pinf = xp.asarray(xp.inf, dtype=s.dtype, device=dev)
    kth = xp.maximum(xp.where(i > 0, _left(i - 1), ninf), xp.where(k - i >= 0, _right(k - i), ninf))
    # The (k+1)-th smallest (the upper middle of an even count) follows in the merge.
    after = xp.minimum(xp.where(i < n_left, _left(i), pinf),
                       xp.where(k + 1 - i < n_right, _right(k + 1 - i), pinf))
    upper = xp.where(n_valid % 2 == 0, after, kth)
    zero = xp.zeros_like(kth)
    # Empty rows gathered only padding (±inf): zero them so that no inf − inf is evaluated.
    kth, upper = xp.where(empty, zero, kth), xp.where(empty, zero, upper)
    same = kth == upper
    a = xp.where(same, zero, kth)
    b = xp.where(same, zero, upper)
    value = xp.where(same, kth, a + 0.5 * (b - a))
    return xp.where(empty, xp.asarray(xp.nan, dtype=s.dtype, device=dev), value)
