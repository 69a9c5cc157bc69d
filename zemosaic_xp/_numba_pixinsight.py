"""Numba kernel of the PixInsight/Siril winsorised sigma clip on sorted rows.

The maths of :func:`zemosaic_xp.core.reject_pixinsight.wsc_pixinsight_fit` (the default
``winsorized_sigma_clip``), one pixel at a time, in the same float32/float64
arithmetic and the same order of operations, so that ranges, iteration counts and
kept sums are the core's to the last bit. Same contract as
:mod:`zemosaic_xp._numba_kernels`: ``nogil``, no ``parallel``, rows sorted ascending
with the invalid samples last as ``+inf``.

Per row the kernel builds the anchored sums of ``d = x − median`` once (as
:func:`~zemosaic_xp.core.ranges.anchored_sums`), after which an inner iteration is
two searches and a dozen float64 operations, whatever N.

Why it is shaped as it is (measured on 2 Xeon vCPUs, 32 frames: 300 → ~230 ns per
pixel): an inner iteration is one long chain of dependent operations (a square root,
a multiplication by 1/k, the bounds of the next iteration), so :data:`LANES` rows are
iterated side by side, and a lane that finishes its row takes the next one at once
(no lane waits for the slowest, as a lock-step group would). Up to
:data:`_COUNT_MAX_N` frames the clamp positions are counted over the whole row with
vector compares, free of the branch mispredictions of a scan; longer rows are
scanned from the previous positions.
"""

from __future__ import annotations

import numpy as np

from ._numba_kernels import inline, jit, median_range

__all__ = ["wsc_pixinsight_rows", "LANES"]

# The constants of core/reject_pixinsight.py (tests check that they agree).
MAD_TO_SIGMA = 1.482602218505602
HUBER_C = 1.5
WINSOR_CORRECTION = 1.134
TOLERANCE = 5e-4
INNER_MAX_ITERS = 50
#: Rows iterated side by side (more gained nothing on the machines we measured).
LANES = 4
# Rows up to this length search by counting (vector compares); longer ones scan.
_COUNT_MAX_N = 48


@inline
def _anchored(s, r, n, centre, f1, f2, lane):
    """:func:`~zemosaic_xp.core.ranges.anchored_sums` of row ``r`` into ``f1[lane, :n+1]``, ``f2``."""
    c = np.float64(centre)
    mid = n // 2
    f1[lane, mid] = 0.0
    f2[lane, mid] = 0.0
    acc1 = 0.0
    acc2 = 0.0
    for j in range(mid, n):
        d = np.float64(s[r, j]) - c
        acc1 += d
        acc2 += d * d
        f1[lane, j + 1] = acc1
        f2[lane, j + 1] = acc2
    acc1 = 0.0
    acc2 = 0.0
    for j in range(mid - 1, -1, -1):
        d = np.float64(s[r, j]) - c
        acc1 += d
        acc2 += d * d
        f1[lane, j] = 0.0 - acc1
        f2[lane, j] = 0.0 - acc2
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
def _clamp_positions(s, r, low, high, lo, hi, a, b, count_search):
    """The clamp positions ``a, b`` of ``[lo, hi)`` for the bounds ``low``, ``high``.

    Counting over the whole sorted row gives the same numbers as a search inside the
    range: samples before ``lo`` are below any bound that cuts the range, those after
    ``hi`` above it, and the clamps to ``[lo, hi]`` settle the rest (NaN counts 0).
    """
    if count_search:
        below = 0
        for j in range(s.shape[1]):
            below += s[r, j] < low
        upto = 0
        for j in range(s.shape[1]):
            upto += s[r, j] <= high
        a = min(hi, max(lo, below))
        return a, min(hi, max(a, upto))
    a = _first_at_least(s, r, low, lo, hi, a)
    return a, _first_above(s, r, high, a, hi, b)


@inline
def _mad(s, r, lo, count, centre, dev):
    """Median of ``|s[r, lo:lo+count] − centre|`` in float32 (NaN for an empty range).

    Along a sorted row the deviations fall to the centre and rise after it, so the
    ``k + 1`` smallest are a window of ``k + 1`` neighbours whose largest deviation
    is at one of its ends: the k-th smallest is the least such end over the windows.
    ``dev`` is scratch for the deviations (no branch on the data).
    """
    if count == 0:
        return np.float32(np.nan)
    for j in range(count):
        dev[j] = abs(np.float32(s[r, lo + j] - centre))
    k = (count - 1) // 2
    lower = np.float32(np.inf)
    for w in range(count - k):
        v = dev[w] if dev[w] > dev[w + k] else dev[w + k]
        lower = v if v < lower else lower
    if count % 2 == 1:
        return lower
    upper = np.float32(np.inf)
    for w in range(count - k - 1):
        v = dev[w] if dev[w] > dev[w + k + 1] else dev[w + k + 1]
        upper = v if v < upper else upper
    if lower == upper:
        return lower
    return np.float32(lower + np.float32(np.float32(0.5) * np.float32(upper - lower)))


@inline
def _nonneg(v):
    """``maximum(v, 0)`` with NaN kept, as ``xp.maximum``."""
    return 0.0 if v < 0.0 else v


@inline
def _start(s, r, lo, hi, med, f1, f2, lane, dev):
    """Start of a pass on ``[lo, hi)``: (m, σ) = (median, 1.4826·MAD or the std)."""
    count = hi - lo
    mad = np.float64(_mad(s, r, lo, count, med, dev))
    if mad > 0:
        return np.float64(med), MAD_TO_SIGMA * mad
    k = np.float64(count if count > 0 else 1)
    mc = (f1[lane, hi] - f1[lane, lo]) / k
    var = (f2[lane, hi] - f2[lane, lo]) / k - mc * mc
    return np.float64(med), np.sqrt(_nonneg(var))


@inline
def _take_row(s, n_valid, next_row, lane, have_centre, out_lo, out_hi, out_it, out_c, out_sum, f1,
              f2, dev, min_survivors, max_iters, row_l, lo_l, hi_l, need_l, passes_l, steps_l, a_l,
              b_l, m_l, sigma_l, c_l, inv_k_l):
    """Give ``lane`` the next row that needs iterations (``row_l[lane] = -1``: none left);
    rows that need none end here. Returns the new ``next_row``."""
    row_l[lane] = -1
    while next_row < s.shape[0]:
        r = next_row
        next_row += 1
        n = n_valid[r]
        if have_centre:
            centre = out_c[r]
        else:
            centre = median_range(s, r, 0, n)
            if centre != centre:
                centre = np.float32(0.0)
            out_c[r] = centre
        c = _anchored(s, r, n, centre, f1, f2, lane)
        need = min_survivors if min_survivors < n else n
        passes = 0
        if n > need and max_iters > 0:
            m, sigma = _start(s, r, 0, n, centre, f1, f2, lane, dev)
            if sigma > 0:
                row_l[lane] = r
                lo_l[lane] = 0
                hi_l[lane] = n
                need_l[lane] = need
                passes_l[lane] = 0
                steps_l[lane] = 0
                a_l[lane] = 0
                b_l[lane] = n
                m_l[lane] = m
                sigma_l[lane] = sigma
                c_l[lane] = c
                inv_k_l[lane] = 1.0 / np.float64(n)
                return next_row
            passes = 1  # a pass with σ = 0 rejects nothing
        out_lo[r] = 0
        out_hi[r] = n
        out_it[r] = passes
        out_sum[r] = f1[lane, n] - f1[lane, 0]
    return next_row


@inline
def _rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi, out_it,
          out_c, out_sum, sums, count_search):
    """The kernel, with the search strategy fixed at compile time by its callers."""
    n_cols = s.shape[1]
    have_centre = sums.shape[0] > 0
    f1 = np.empty((LANES, n_cols + 1))
    f2 = np.empty((LANES, n_cols + 1))
    dev = np.empty(n_cols, np.float32)
    row_l = np.full(LANES, -1, np.int64)
    lo_l = np.zeros(LANES, np.int64)
    hi_l = np.zeros(LANES, np.int64)
    need_l = np.zeros(LANES, np.int64)
    passes_l = np.zeros(LANES, np.int64)
    steps_l = np.zeros(LANES, np.int64)
    a_l = np.zeros(LANES, np.int64)
    b_l = np.zeros(LANES, np.int64)
    m_l = np.zeros(LANES)
    sigma_l = np.zeros(LANES)
    c_l = np.zeros(LANES)
    inv_k_l = np.ones(LANES)
    next_row = 0
    busy = 0
    for lane in range(LANES):
        next_row = _take_row(s, n_valid, next_row, lane, have_centre, out_lo, out_hi, out_it, out_c,
                             out_sum, f1, f2, dev, min_survivors, max_iters, row_l, lo_l, hi_l,
                             need_l, passes_l, steps_l, a_l, b_l, m_l, sigma_l, c_l, inv_k_l)
        busy += row_l[lane] >= 0
    while busy > 0:
        for lane in range(LANES):
            r = row_l[lane]
            if r < 0:
                continue
            lo = lo_l[lane]
            hi = hi_l[lane]
            m = m_l[lane]
            sigma = sigma_l[lane]
            c = c_l[lane]
            # One inner iteration: the core's _winsor_step, operation for operation.
            low = m - HUBER_C * sigma
            high = m + HUBER_C * sigma
            a, b = _clamp_positions(s, r, low, high, lo, hi, a_l[lane], b_l[lane], count_search)
            n_low = np.float64(a - lo)
            n_high = np.float64(hi - b)
            lc = low - c
            hc = high - c
            s1 = n_low * lc + (f1[lane, b] - f1[lane, a]) + n_high * hc
            s2 = n_low * (lc * lc) + (f2[lane, b] - f2[lane, a]) + n_high * (hc * hc)
            inv_k = inv_k_l[lane]
            mc = s1 * inv_k
            var = s2 * inv_k - mc * mc
            sigma_new = WINSOR_CORRECTION * np.sqrt(_nonneg(var))
            m_new = c + mc
            tol = TOLERANCE * sigma
            # Bitwise &, |: the core's vector test, with its NaN behaviour.
            stop = ((abs(sigma_new - sigma) <= tol) & (abs(m_new - m) <= tol)) | (not sigma_new > 0)
            m_l[lane] = m_new
            sigma_l[lane] = sigma_new
            a_l[lane] = a
            b_l[lane] = b
            steps = steps_l[lane] + 1
            steps_l[lane] = steps
            if not (stop or steps == INNER_MAX_ITERS):
                continue
            # End of a pass: reject around (m, σ); another pass if the range changed.
            m = m_new
            sigma = sigma_new
            passes = passes_l[lane] + 1
            new_lo = _first_at_least(s, r, m - kappa_low * sigma, lo, hi, lo)
            new_hi = _first_above(s, r, m + kappa_high * sigma, new_lo, hi, hi)
            if sigma > 0 and (new_lo != lo or new_hi != hi) and new_hi - new_lo >= need_l[lane]:
                lo = new_lo
                hi = new_hi
                if passes < max_iters:
                    m, sigma = _start(s, r, lo, hi, median_range(s, r, lo, hi - lo), f1, f2, lane, dev)
                    if sigma > 0:
                        lo_l[lane] = lo
                        hi_l[lane] = hi
                        passes_l[lane] = passes
                        steps_l[lane] = 0
                        a_l[lane] = lo
                        b_l[lane] = hi
                        m_l[lane] = m
                        sigma_l[lane] = sigma
                        inv_k_l[lane] = 1.0 / np.float64(hi - lo)
                        continue
                    passes += 1  # a pass with σ = 0 rejects nothing: the row is done
            out_lo[r] = lo
            out_hi[r] = hi
            out_it[r] = passes
            out_sum[r] = f1[lane, hi] - f1[lane, lo]
            next_row = _take_row(s, n_valid, next_row, lane, have_centre, out_lo, out_hi, out_it, out_c,
                                 out_sum, f1, f2, dev, min_survivors, max_iters, row_l, lo_l, hi_l,
                                 need_l, passes_l, steps_l, a_l, b_l, m_l, sigma_l, c_l, inv_k_l)
            busy -= row_l[lane] < 0


@jit
def _rows_counting(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi,
                   out_it, out_c, out_sum, sums):
    _rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi, out_it, out_c,
          out_sum, sums, True)


@jit
def _rows_scanning(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi,
                   out_it, out_c, out_sum, sums):
    _rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi, out_it, out_c,
          out_sum, sums, False)


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
    (``out_it = 0``); see :mod:`zemosaic_xp.core.reject_pixinsight` for the maths. Rows
    are handed to :data:`LANES` lanes in turn and finish in any order; lane state
    lives in two small arrays indexed by lane (a per-lane view would cost reference
    counting in the hottest loop). Each search strategy is its own compiled loop, so
    that the hot loop carries no test of it.
    """
    if s.shape[1] <= _COUNT_MAX_N:
        _rows_counting(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi,
                       out_it, out_c, out_sum, sums)
    else:
        _rows_scanning(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi,
                       out_it, out_c, out_sum, sums)
