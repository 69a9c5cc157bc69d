"""Numba kernel of the PixInsight/Siril winsorised sigma clip on sorted rows.

The maths of :func:`zemosaic_xp.core.reject_pixinsight.wsc_pixinsight_fit` (the default
``winsorized_sigma_clip``), one pixel at a time, in the same float32/float64
arithmetic and the same order of operations, so that ranges, iteration counts and
kept sums are the core's to the last bit. Same contract as
:mod:`zemosaic_xp._numba_kernels`: ``nogil``, no ``parallel``, rows sorted ascending
with the invalid samples last as ``+inf``.

Per row the kernel builds the anchored sums of ``d = x − median`` once (two O(n)
passes, as :func:`~zemosaic_xp.core.ranges.anchored_sums`), after which every inner
iteration costs two short scans from the previous clamp positions and a few float64
operations, whatever N.
"""

from __future__ import annotations

import numpy as np

from ._numba_kernels import inline, jit, median_range
from ._numba_wsc import kth_deviation

__all__ = ["wsc_pixinsight_rows"]

# The constants of core/reject_pixinsight.py (tests check that they agree).
MAD_TO_SIGMA = 1.482602218505602
HUBER_C = 1.5
WINSOR_CORRECTION = 1.134
TOLERANCE = 5e-4
INNER_MAX_ITERS = 50


@inline
def _anchored(s, r, n, centre, f1, f2):
    """:func:`~zemosaic_xp.core.ranges.anchored_sums` of row ``r`` into ``f1[:n+1]``, ``f2``."""
    c = np.float64(centre)
    mid = n // 2
    f1[mid] = 0.0
    f2[mid] = 0.0
    acc1 = 0.0
    acc2 = 0.0
    for j in range(mid, n):
        d = np.float64(s[r, j]) - c
        acc1 += d
        acc2 += d * d
        f1[j + 1] = acc1
        f2[j + 1] = acc2
    acc1 = 0.0
    acc2 = 0.0
    for j in range(mid - 1, -1, -1):
        d = np.float64(s[r, j]) - c
        acc1 += d
        acc2 += d * d
        f1[j] = 0.0 - acc1
        f2[j] = 0.0 - acc2
    return c


@inline
def _first_at_least(s, r, t, lo, hi, j):
    """``lo + count(s[r, lo:hi] < t)``, walking from the guess ``j`` (as ``search_rows``)."""
    j = min(max(j, lo), hi)
    while j < hi and s[r, j] < t:
        j += 1
    while j > lo and not s[r, j - 1] < t:
        j -= 1
    return j


@inline
def _first_above(s, r, t, lo, hi, j):
    """``lo + count(s[r, lo:hi] <= t)``, walking from the guess ``j`` (a NaN ``t`` gives ``lo``)."""
    j = min(max(j, lo), hi)
    while j < hi and s[r, j] <= t:
        j += 1
    while j > lo and not s[r, j - 1] <= t:
        j -= 1
    return j


@inline
def _mad(s, r, lo, count, centre):
    """Median of ``|s[r, lo:lo+count] − centre|`` in float32 (NaN for an empty range)."""
    if count == 0:
        return np.float32(np.nan)
    k = (count - 1) // 2
    a = kth_deviation(s, r, lo, count, centre, k)
    if count % 2 == 1:
        return a
    b = kth_deviation(s, r, lo, count, centre, k + 1)
    if a == b:
        return a
    return np.float32(a + np.float32(np.float32(0.5) * np.float32(b - a)))


@inline
def _nonneg(v):
    """``maximum(v, 0)`` with NaN kept, as ``xp.maximum``."""
    return 0.0 if v < 0.0 else v


@inline
def _estimate(s, r, lo, hi, centre, c, first, f1, f2):
    """Inner loop on ``[lo, hi)``: the winsorised (m, σ) of ``_estimate`` in the core."""
    count = hi - lo
    med = centre if first else median_range(s, r, lo, count)
    mad = np.float64(_mad(s, r, lo, count, med))
    k = np.float64(count if count > 0 else 1)
    mc = (f1[hi] - f1[lo]) / k
    var = (f2[hi] - f2[lo]) / k - mc * mc
    m = np.float64(med)
    sigma = MAD_TO_SIGMA * mad if mad > 0 else np.sqrt(_nonneg(var))
    if not sigma > 0:
        return m, sigma
    a = lo
    b = hi
    for _ in range(INNER_MAX_ITERS):
        low = m - HUBER_C * sigma
        high = m + HUBER_C * sigma
        a = _first_at_least(s, r, low, lo, hi, a)
        b = _first_above(s, r, high, a, hi, b)
        n_low = np.float64(a - lo)
        n_high = np.float64(hi - b)
        lc = low - c
        hc = high - c
        s1 = n_low * lc + (f1[b] - f1[a]) + n_high * hc
        s2 = n_low * (lc * lc) + (f2[b] - f2[a]) + n_high * (hc * hc)
        mc = s1 / k
        var = s2 / k - mc * mc
        sigma_new = WINSOR_CORRECTION * np.sqrt(_nonneg(var))
        m_new = c + mc
        tol = TOLERANCE * sigma
        # Bitwise &, |: the core's vector test, with its NaN behaviour.
        stop = ((abs(sigma_new - sigma) <= tol) & (abs(m_new - m) <= tol)) | (not sigma_new > 0)
        m = m_new
        sigma = sigma_new
        if stop:
            break
    return m, sigma


@jit
def wsc_pixinsight_rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors,
                        out_lo, out_hi, out_it, out_c, out_sum, sums):
    """PixInsight/Siril winsorised sigma clip of every sorted row.

    Parameters
    ----------
    s : ndarray, shape (R, N), float32, C-contiguous
        Rows sorted ascending, invalid samples last as ``+inf``.
    n_valid : ndarray, shape (R,), int64
    kappa_low, kappa_high : float
        float64 rejection thresholds.
    max_iters, min_survivors : int
    out_lo, out_hi, out_it : ndarray, shape (R,), int64 (outputs)
        Kept range ``[lo, hi)`` and rejection passes run.
    out_c : ndarray, shape (R,), float32
        Each row's median (0 without valid samples): written here, or read when
        ``sums`` has rows (the band gather computed it).
    out_sum : ndarray, shape (R,), float64 (output)
        ``Σ (x − median)`` over the kept range, from the anchored sums.
    sums : ndarray, shape (R, 2) or (0, 2), float64
        Only its length is used: non-empty means ``out_c`` holds the medians.

    Notes
    -----
    Rows with ``n_valid <= min(min_survivors, n_valid)`` are not iterated
    (``out_it = 0``); see :mod:`zemosaic_xp.core.reject_pixinsight` for the maths.
    """
    n_cols = s.shape[1]
    f1 = np.empty(n_cols + 1)
    f2 = np.empty(n_cols + 1)
    have_centre = sums.shape[0] > 0
    for r in range(s.shape[0]):
        n = n_valid[r]
        if have_centre:
            centre = out_c[r]
        else:
            centre = median_range(s, r, 0, n)
            if centre != centre:
                centre = np.float32(0.0)
            out_c[r] = centre
        c = _anchored(s, r, n, centre, f1, f2)
        need = min_survivors if min_survivors < n else n
        lo = 0
        hi = n
        it = 0
        if n > need:
            for k in range(max_iters):
                m, sigma = _estimate(s, r, lo, hi, centre, c, k == 0, f1, f2)
                it += 1
                new_lo = _first_at_least(s, r, m - kappa_low * sigma, lo, hi, lo)
                new_hi = _first_above(s, r, m + kappa_high * sigma, new_lo, hi, hi)
                if not (sigma > 0 and (new_lo != lo or new_hi != hi) and new_hi - new_lo >= need):
                    break
                lo = new_lo
                hi = new_hi
        out_lo[r] = lo
        out_hi[r] = hi
        out_it[r] = it
        out_sum[r] = f1[hi] - f1[lo]
