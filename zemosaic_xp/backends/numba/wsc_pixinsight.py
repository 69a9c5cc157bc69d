"""Numba kernel of the PixInsight/Siril winsorised sigma clip on sorted rows.

The maths of :func:`zemosaic_xp.core.reject.winsorized_sigma_clip.wsc_pixinsight_fit` (the default
``winsorized_sigma_clip``), one pixel at a time, in the same float32/float64
arithmetic and the same order of operations, so that ranges, iteration counts and
kept sums are the core's to the last bit. It follows the row-kernel contract of
:mod:`zemosaic_xp.backends.numba`.

Per row the kernel builds the anchored sums of ``d = x − median`` once (as
:func:`~zemosaic_xp.core.sorted_rows.anchored_sums`), after which an inner iteration is
two searches and a dozen float64 operations, whatever N.

Why it is shaped as it is (the measurements behind it are in docs/performance.md,
"Kernel measurements"):

- no reference counting in the loops. Numba increments and decrements an array's
  reference count (an atomic operation, a full memory barrier) wherever its
  refcount pruning gives up, e.g. around an inlined helper that takes arrays and
  has several exits; that cost more than half the kernel's time, and the barriers
  stopped the lanes below from overlapping. So the row hand-over is written once,
  inline, in the main loop, and the helpers that take arrays have one exit (check
  the optimised IR for ``NRT_incref`` outside the entry block after any change: a
  stray branch in a helper brings them back);
- an inner iteration is one long chain of dependent operations (the clamp
  positions, a square root, the bounds of the next iteration), so :data:`LANES`
  rows are iterated side by side: a step counts every lane's clamp positions (in a
  window around the last step's, :func:`clamp_positions`; the whole row when a
  position left it), then runs the float64 arithmetic of every lane in one
  branch-free loop (vectorised over the lanes),
  and only then handles the lanes whose pass ended. A lane whose row is done takes
  the next one before the next step (no lane waits for the slowest). The count
  pass also looks up the sums at the clamp positions, so that the arithmetic loop
  reads only per-lane arrays;
- the anchored sums of a row are two chains of dependent float64 additions per
  half (up from the median, down from it): both halves run in one loop, so that
  their chains overlap (each still adds in the core's order);
- per-row indices are unsigned where the loops are hot: numba adds a negative-index
  wrap-around to every access whose index it cannot prove non-negative.
"""

from __future__ import annotations

import numpy as np

from .common import (
    HUBER_C,
    INNER_MAX_ITERS,
    MAD_TO_SIGMA,
    TOLERANCE,
    WINSOR_CORRECTION,
    borrowed,
    first_above,
    first_at_least,
    inline,
    jit,
    mad_range,
    median_range,
    nonneg,
    survivors_floor,
)
from .simd import COUNT_WIDTH, count_at_most_8, count_below_8

__all__ = ["wsc_pixinsight_rows", "clamp_positions", "LANES", "WINDOW"]

#: Rows iterated side by side: 16 lets LLVM vectorise the steps' float64 arithmetic over
#: the lanes (two AVX-512 vectors; at 8 it stays scalar), ~6 % faster than 8 at N = 48.
LANES = 16
#: Samples around a lane's last clamp positions counted first (8: ~10 % faster steps than
#: the whole row at N = 48; 16 measured slower than the whole row). Counted by one vector
#: compare of simd's width, so the two are one constant.
WINDOW = COUNT_WIDTH


@inline
def clamp_positions(s, r, low, high, guess_low, guess_high):
    """``(#{x < low}, #{x <= high})`` over the sorted row ``s[r]`` (+inf tail included).

    The clamp positions move little from one inner step to the next, so the counts are
    first taken in windows of :data:`WINDOW` samples around ``guess_low`` and
    ``guess_high`` (the last step's positions); they are exact when each position falls
    strictly inside its window or at a row end (``x < low`` holds on a prefix of a
    sorted row). Otherwise — a bound moved further, NaN bounds, rows shorter than the
    window — the whole row is counted. One exit (see the module's notes).

    Parameters
    ----------
    s : ndarray, shape (P, N), float32
        Rows sorted ascending, invalid samples last as ``+inf``.
    r : int
        The row.
    low, high : float
        The clamp bounds (float64; NaN counts nothing).
    guess_low, guess_high : int
        Where the counts are expected, in ``[0, N]``; any value gives the same result.

    Returns
    -------
    tuple of int
        ``(#{x < low}, #{x <= high})`` over the whole row.
    """
    n_cols = s.shape[1]
    whole = n_cols < WINDOW
    nb = 0
    nu = 0
    if not whole:
        wa = min(max(guess_low - WINDOW // 2, 0), n_cols - WINDOW)
        wb = min(max(guess_high - WINDOW // 2, 0), n_cols - WINDOW)
        # One vector compare per window (the scalar loop of WINDOW compares stays scalar).
        row = np.uint64(r) * np.uint64(n_cols)
        ca = count_below_8(s, row + np.uint64(wa), low)
        cb = count_at_most_8(s, row + np.uint64(wb), high)
        nb = wa + ca
        nu = wb + cb
        inside_a = (ca > 0 or wa == 0) and (ca < WINDOW or wa + WINDOW == n_cols)
        inside_b = (cb > 0 or wb == 0) and (cb < WINDOW or wb + WINDOW == n_cols)
        whole = not (inside_a and inside_b)
    if whole:
        nb = 0
        nu = 0
        for j in range(n_cols):
            x = s[r, j]
            nb += x < low
            nu += x <= high
    return nb, nu


@inline
def _anchored(s, r, n, centre, f1, f2, lane):
    """:func:`~zemosaic_xp.core.sorted_rows.anchored_sums` of row ``r`` into ``f1[lane, :n+1]``, ``f2``."""
    c = np.float64(centre)
    mid = n // 2
    # Unsigned indices (here and in the steps' lookups): numba then adds no negative-index
    # wrap-around to each access, a third of this loop's instructions (52 → 39 ns a row of 48).
    ur = np.uint64(r)
    ul = np.uint64(lane)
    um = np.uint64(mid)
    one = np.uint64(1)
    f1[ul, um] = 0.0
    f2[ul, um] = 0.0
    # The halves' sums (up from the median, down from it) are independent chains of
    # dependent float64 additions: run side by side, each in the core's order.
    up1 = 0.0
    up2 = 0.0
    dn1 = 0.0
    dn2 = 0.0
    for t in range(mid):
        ut = np.uint64(t)
        j = um + ut
        d = np.float64(s[ur, j]) - c
        up1 += d
        up2 += d * d
        f1[ul, j + one] = up1
        f2[ul, j + one] = up2
        k = um - one - ut
        e = np.float64(s[ur, k]) - c
        dn1 += e
        dn2 += e * e
        f1[ul, k] = 0.0 - dn1
        f2[ul, k] = 0.0 - dn2
    if n - mid > mid:  # odd n: the upper half has one more
        last = np.uint64(n - 1)
        d = np.float64(s[ur, last]) - c
        up1 += d
        up2 += d * d
        f1[ul, last + one] = up1
        f2[ul, last + one] = up2
    return c


@inline
def _start(s, r, lo, hi, med, f1, f2, lane, dev):
    """Start of a pass on ``[lo, hi)``: (m, σ) = (median, 1.4826·MAD or the std)."""
    count = hi - lo
    mad = np.float64(mad_range(s, r, lo, count, med, dev))
    k = np.float64(count if count > 0 else 1)
    mc = (f1[lane, hi] - f1[lane, lo]) / k
    var = (f2[lane, hi] - f2[lane, lo]) / k - mc * mc
    sigma = MAD_TO_SIGMA * mad if mad > 0 else np.sqrt(nonneg(var))
    return np.float64(med), sigma


@jit
def _rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi, out_it,
          out_c, out_sum, sums, f1, f2, dev):
    """The kernel: free lanes take rows, one vector step of every lane, ends of passes.

    ``f1``, ``f2`` (zeros, ``(LANES, N + 1)``, float64) and ``dev`` (``(N,)``, float32) are
    its scratch, passed in so that they and ``s`` can be :func:`~.common.borrowed`: the
    inlined helpers take them at every row, and numba would count their references
    (atomically) there.
    """
    s, f1, f2, dev = borrowed(s), borrowed(f1), borrowed(f2), borrowed(dev)
    n_rows, n_cols = s.shape
    have_centre = sums.shape[0] > 0
    row_l = np.full(LANES, -1, np.int64)
    src_l = np.zeros(LANES, np.int64)
    lo_l = np.zeros(LANES, np.int64)
    hi_l = np.zeros(LANES, np.int64)
    need_l = np.zeros(LANES, np.int64)
    passes_l = np.zeros(LANES, np.int64)
    steps_l = np.zeros(LANES, np.int64)
    m_l = np.zeros(LANES)
    sigma_l = np.zeros(LANES)
    c_l = np.zeros(LANES)
    inv_k_l = np.ones(LANES)
    low_l = np.zeros(LANES)
    high_l = np.zeros(LANES)
    nlow_l = np.zeros(LANES)
    nhigh_l = np.zeros(LANES)
    d1_l = np.zeros(LANES)
    d2_l = np.zeros(LANES)
    fin = np.zeros(LANES, np.bool_)
    at_l = np.zeros(LANES, np.int64)  # each lane's last clamp positions
    au_l = np.zeros(LANES, np.int64)
    next_row = 0
    while True:
        # Free lanes take the next rows that need iterations; the others end here.
        busy = 0
        for lane in range(LANES):
            if row_l[lane] < 0:
                while next_row < n_rows:
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
                    need = survivors_floor(min_survivors, n)
                    passes = 0
                    if n > need and max_iters > 0:
                        m, sigma = _start(s, r, 0, n, centre, f1, f2, lane, dev)
                        if sigma > 0:
                            row_l[lane] = r
                            at_l[lane] = 0
                            au_l[lane] = n
                            lo_l[lane] = 0
                            hi_l[lane] = n
                            need_l[lane] = need
                            passes_l[lane] = 0
                            steps_l[lane] = 0
                            m_l[lane] = m
                            sigma_l[lane] = sigma
                            c_l[lane] = c
                            inv_k_l[lane] = 1.0 / np.float64(n)
                            break
                        passes = 1  # a pass with σ = 0 rejects nothing
                    out_lo[r] = 0
                    out_hi[r] = n
                    out_it[r] = passes
                    out_sum[r] = f1[lane, n] - f1[lane, 0]
                    if have_centre:
                        sums[r, 0] = out_sum[r]
                        sums[r, 1] = f2[lane, n] - f2[lane, 0]
                if row_l[lane] < 0:
                    # An idle lane still runs the vector step, harmlessly: empty range, σ = 0.
                    lo_l[lane] = 0
                    hi_l[lane] = 0
                    m_l[lane] = 0.0
                    sigma_l[lane] = 0.0
                    c_l[lane] = 0.0
                    inv_k_l[lane] = 1.0
                src_l[lane] = max(row_l[lane], 0)
            busy += row_l[lane] >= 0
        if busy == 0:
            break
        # One inner iteration of every lane (the core's _winsor_step, operation for
        # operation): the clamp positions lane by lane, then the arithmetic vectorised.
        for lane in range(LANES):
            low = m_l[lane] - HUBER_C * sigma_l[lane]
            high = m_l[lane] + HUBER_C * sigma_l[lane]
            low_l[lane] = low
            high_l[lane] = high
            r = src_l[lane]
            nb, nu = clamp_positions(s, r, low, high, at_l[lane], au_l[lane])
            at_l[lane] = nb
            au_l[lane] = nu
            # The clamp positions and the sums' lookups here, so that the arithmetic
            # below is elementwise over the lanes.
            lo = lo_l[lane]
            hi = hi_l[lane]
            a = min(hi, max(lo, nb))
            b = min(hi, max(a, nu))
            nlow_l[lane] = np.float64(a - lo)
            nhigh_l[lane] = np.float64(hi - b)
            ul = np.uint64(lane)
            d1_l[lane] = f1[ul, np.uint64(b)] - f1[ul, np.uint64(a)]
            d2_l[lane] = f2[ul, np.uint64(b)] - f2[ul, np.uint64(a)]
        for lane in range(LANES):
            m = m_l[lane]
            sigma = sigma_l[lane]
            c = c_l[lane]
            n_low = nlow_l[lane]
            n_high = nhigh_l[lane]
            lc = low_l[lane] - c
            hc = high_l[lane] - c
            s1 = n_low * lc + d1_l[lane] + n_high * hc
            s2 = n_low * (lc * lc) + d2_l[lane] + n_high * (hc * hc)
            inv_k = inv_k_l[lane]
            mc = s1 * inv_k
            var = s2 * inv_k - mc * mc
            sigma_new = WINSOR_CORRECTION * np.sqrt(nonneg(var))
            m_new = c + mc
            tol = TOLERANCE * sigma
            # Bitwise &, |: the core's vector test, with its NaN behaviour.
            stop = ((abs(sigma_new - sigma) <= tol) & (abs(m_new - m) <= tol)) | (not sigma_new > 0)
            m_l[lane] = m_new
            sigma_l[lane] = sigma_new
            steps = steps_l[lane] + 1
            steps_l[lane] = steps
            fin[lane] = stop | (steps == INNER_MAX_ITERS)
        for lane in range(LANES):
            r = row_l[lane]
            if not fin[lane] or r < 0:
                continue
            # End of a pass: reject around (m, σ); another pass if the range changed.
            lo = lo_l[lane]
            hi = hi_l[lane]
            m = m_l[lane]
            sigma = sigma_l[lane]
            passes = passes_l[lane] + 1
            new_lo = first_at_least(s, r, m - kappa_low * sigma, lo, hi)
            new_hi = first_above(s, r, m + kappa_high * sigma, new_lo, hi)
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
                        m_l[lane] = m
                        sigma_l[lane] = sigma
                        inv_k_l[lane] = 1.0 / np.float64(hi - lo)
                        continue
                    passes += 1  # a pass with σ = 0 rejects nothing: the row is done
            out_lo[r] = lo
            out_hi[r] = hi
            out_it[r] = passes
            out_sum[r] = f1[lane, hi] - f1[lane, lo]
            if have_centre:
                sums[r, 0] = out_sum[r]
                sums[r, 1] = f2[lane, hi] - f2[lane, lo]
            row_l[lane] = -1


@jit
def wsc_pixinsight_rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi, out_it,
                        out_c, out_sum, sums):
    """PixInsight/Siril winsorised sigma clip of every sorted row.

    Parameters
    ----------
    s, n_valid : ndarray
        Sorted rows and their valid counts (the row-kernel contract of
        :mod:`zemosaic_xp.backends.numba`).
    kappa_low, kappa_high : float
        Rejection thresholds in σ, float64.
    max_iters, min_survivors : int
        Passes at most, and the fewest samples a pass may leave.
    out_lo, out_hi, out_it, out_c, out_sum, sums : ndarray
        Outputs as the contract says: ``out_it`` counts rejection passes, ``out_sum``
        comes from the anchored sums. Non-empty ``sums`` (``out_c`` then already holds
        the medians) are overwritten with ``Σd``, ``Σd²`` of each kept range about the
        median, from the anchored sums (the core's ``kept_sum`` and ``kept_sq``).

    Notes
    -----
    Rows with ``n_valid <= min(min_survivors, n_valid)`` are not iterated
    (``out_it = 0``); see :mod:`zemosaic_xp.core.reject.winsorized_sigma_clip` for the maths. Rows
    are handed to :data:`LANES` lanes in turn and finish in any order; lane state
    lives in small arrays indexed by lane (a per-lane view would cost reference
    counting in the hottest loop).
    """
    n_cols = s.shape[1]
    _rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi, out_it, out_c,
          out_sum, sums, np.zeros((LANES, n_cols + 1)), np.zeros((LANES, n_cols + 1)), np.empty(n_cols, np.float32))
