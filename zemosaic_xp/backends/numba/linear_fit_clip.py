"""Numba kernel of the linear fit clip (``reject="linear_fit_clip"``) on sorted rows.

The maths of :mod:`zemosaic_xp.core.reject.linear_fit_clip`, one pixel at a time, with
the core's float64 operations in the core's order: values centred on the mid-range,
the least-squares line against the rank among the kept samples with NumPy's pairwise
sums over the whole row (:func:`~.common.pairwise_sum`, zeros where a sample is not
kept, as the core's masked products), the mean absolute residual floored at
``1e-6·max(|first|, |last|)``, and the same rejection, stop rule and survivor guard.
Kept sets, rejection counts and iteration counts are the core's to the bit.

Two passes. :func:`_fast_rows` fits each row on its kept samples packed together
(their rank is then their index), with sums in any order, three short loops an
iteration: about 2.5 times faster at 500 frames. Its sums round differently from the
core's, which can only matter where a residual lies within a rounding error of a
bound: every comparison closer to its bound than ``TIE_MARGIN · N`` times the
row's largest |centred value| flags the row, and :func:`_exact_rows` (the core's sums,
in the core's order) decides the flagged rows again. Only the kernel's integer
outputs leave it, so the stack is the core's to the bit.

The kept set need not be a range of the sorted row: a row whose low rejections are a
prefix and high rejections a suffix gives ``[lo, hi)``; any other row is flagged in
``split`` and its kept sorted positions are written to ``keep``, for
:func:`~.combine.combine_ranges`.
"""

from __future__ import annotations

import numpy as np

from .common import REASSOCIATE, inline, jit, np_maximum, pairwise_sum, survivors_floor

__all__ = ["linear_fit_clip_rows", "RELATIVE_SIGMA_FLOOR", "TIE_MARGIN"]

#: σ floor relative to the pixel's largest |value|, as the core (tests check that they agree).
RELATIVE_SIGMA_FLOOR = 1e-6

#: A rejection test of the fast pass closer to its bound than ``TIE_MARGIN · N · S``
#: (``N`` the row's length, ``S`` its largest |centred value|) is decided again with the
#: core's sums. Two orders of adding ``N`` float64 terms differ by at most ~``N·2⁻⁵³``
#: of the terms' scale; through the slope times the rank the residuals and bounds move by
#: less than ``~24·N·2⁻⁵²·S`` (≈ 5e-15·N·S): the margin is 200 times that.
TIE_MARGIN = 1e-12


@inline
def _hand_over(r, n, iterations, low, high, out_lo, out_hi, out_it, split, keep):
    """Write row ``r``'s outputs from its rejection flags ``low``, ``high`` (one exit: no reference counting)."""
    n_low = 0
    n_high = 0
    gap = False
    for j in range(low.shape[0]):
        n_low += low[j]
        n_high += high[j]
        if j > 0:
            gap |= low[j] and not low[j - 1]
            gap |= high[j - 1] and not high[j] and j < n
    out_lo[r] = n_low
    out_hi[r] = n - n_high
    out_it[r] = iterations
    split[r] = gap
    if gap:
        for j in range(low.shape[0]):
            keep[r, j] = j < n and not (low[j] or high[j])


@jit(fastmath=REASSOCIATE)
def _fast_rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors,
               out_lo, out_hi, out_it, split, keep, redo):
    """Every row on its packed kept samples; the rows to decide again go to ``redo``.

    Arguments as :func:`linear_fit_clip_rows`; ``redo`` (shape (R,), int64) receives
    the rows with a comparison within ``TIE_MARGIN · N · S`` of its bound, or a non-finite
    sample. Returns how many.
    """
    n_cols = s.shape[1]
    v = np.empty(n_cols)  # the kept centred values, packed: v[i] has rank i
    res = np.empty(n_cols)
    rank = np.empty(n_cols)
    for j in range(n_cols):
        rank[j] = np.float64(j)
    pos = np.empty(n_cols, np.int64)  # sorted position of v[i]
    low = np.empty(n_cols, np.bool_)
    high = np.empty(n_cols, np.bool_)
    n_redo = 0
    for r in range(s.shape[0]):
        n = n_valid[r]
        first = np.float64(s[r, 0]) if n > 0 else 0.0
        last = np.float64(s[r, n - 1]) if n > 0 else 0.0
        if not (abs(first) < np.inf and abs(last) < np.inf):
            redo[n_redo] = r
            n_redo += 1
            continue
        centre = 0.5 * first + 0.5 * last
        floor = RELATIVE_SIGMA_FLOOR * np_maximum(abs(first), abs(last))
        margin = TIE_MARGIN * np.float64(n_cols) * np_maximum(last - centre, centre - first)
        need = survivors_floor(min_survivors, n)
        for j in range(n_cols):
            low[j] = False
            high[j] = False
        for j in range(n):
            v[j] = np.float64(s[r, j]) - centre
            pos[j] = j
        m = n
        iterations = 0
        tie = False
        active = n > 2 and n > need
        while active and iterations < max_iters:
            sy = 0.0
            sry = 0.0
            for i in range(m):
                sy += v[i]
                sry += rank[i] * v[i]
            count = np.float64(m)
            sr = count * (count - 1.0) / 2.0
            den = count * count * (count * count - 1.0) / 12.0
            slope = (count * sry - sr * sy) / den if den > 0 else 0.0
            n_safe = count if count > 0 else 1.0
            intercept = (sy - slope * sr) / n_safe
            total = 0.0
            for i in range(m):
                res[i] = v[i] - intercept - slope * rank[i]
                total += abs(res[i])
            sigma = np_maximum(total / n_safe, floor)
            bound_low = kappa_low * sigma
            bound_high = kappa_high * sigma
            n_out = 0
            near = 0
            for i in range(m):
                n_out += (-res[i] > bound_low) | (res[i] > bound_high)
                near += (abs(-res[i] - bound_low) <= margin) | (abs(res[i] - bound_high) <= margin)
            if near > 0:
                tie = True
                break
            iterations += 1
            active = n_out > 0 and m - n_out >= need
            if active:
                k = 0
                for i in range(m):
                    is_low = -res[i] > bound_low
                    is_high = res[i] > bound_high
                    if is_low or is_high:
                        low[pos[i]] = is_low
                        high[pos[i]] = is_high
                    else:
                        v[k] = v[i]
                        pos[k] = pos[i]
                        k += 1
                m = k
        if tie:
            redo[n_redo] = r
            n_redo += 1
            continue
        _hand_over(r, n, iterations, low, high, out_lo, out_hi, out_it, split, keep)
    return n_redo


@jit
def _exact_rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors,
                out_lo, out_hi, out_it, split, keep, rows):
    """The rows ``rows`` with the core's sums in the core's order (arguments: :func:`linear_fit_clip_rows`)."""
    n_cols = s.shape[1]
    work = np.empty((6, n_cols))
    yc, rank, residual, prod1, prod2, prod3 = work[0], work[1], work[2], work[3], work[4], work[5]
    kept = np.empty(n_cols, np.bool_)
    low = np.empty(n_cols, np.bool_)
    high = np.empty(n_cols, np.bool_)
    frames = np.empty((64, 3), np.int64)
    values = np.empty(64)
    for r in rows:
        n = n_valid[r]
        first = np.float64(s[r, 0]) if n > 0 else 0.0
        last = np.float64(s[r, n - 1]) if n > 0 else 0.0
        centre = 0.5 * first + 0.5 * last
        floor = RELATIVE_SIGMA_FLOOR * np_maximum(abs(first), abs(last))
        need_int = survivors_floor(min_survivors, n)
        need = np.float64(need_int)
        for j in range(n_cols):
            kept[j] = j < n
            yc[j] = np.float64(s[r, j]) - centre if j < n else 0.0
            rank[j] = np.float64(j if j < n else n)  # cumulative_sum(kf) − kf: the kept samples before j
            low[j] = False
            high[j] = False
        count = np.float64(n)
        iterations = 0
        active = n > 2 and n > need_int
        for _ in range(max_iters):
            if not active:
                break
            # The line through (rank, yc) of the kept samples, with the core's sums.
            for j in range(n_cols):
                kf = 1.0 if kept[j] else 0.0
                prod1[j] = kf * yc[j]
                prod2[j] = kf * rank[j] * yc[j]
            sy = pairwise_sum(prod1, n_cols, frames, values)
            sry = pairwise_sum(prod2, n_cols, frames, values)
            sr = count * (count - 1.0) / 2.0
            den = count * count * (count * count - 1.0) / 12.0
            slope = (count * sry - sr * sy) / den if den > 0 else 0.0
            n_safe = count if count > 0 else 1.0
            intercept = (sy - slope * sr) / n_safe
            for j in range(n_cols):
                kf = 1.0 if kept[j] else 0.0
                residual[j] = yc[j] - intercept - slope * rank[j]
                prod3[j] = kf * abs(residual[j])
            sigma = np_maximum(pairwise_sum(prod3, n_cols, frames, values) / n_safe, floor)
            bound_low = kappa_low * sigma
            bound_high = kappa_high * sigma
            n_out = 0
            for j in range(n_cols):
                n_out += kept[j] and (-residual[j] > bound_low or residual[j] > bound_high)
            iterations += 1
            active = n_out > 0 and count - np.float64(n_out) >= need
            if active:
                # The rank among the kept samples is updated here, far from its next reads.
                before = 0
                for j in range(n_cols):
                    if kept[j]:
                        is_low = -residual[j] > bound_low
                        is_high = residual[j] > bound_high
                        low[j] = low[j] or is_low
                        high[j] = high[j] or is_high
                        kept[j] = not (is_low or is_high)
                    rank[j] = np.float64(before)
                    before += kept[j]
                count = np.float64(before)
        _hand_over(r, n, iterations, low, high, out_lo, out_hi, out_it, split, keep)


@jit
def linear_fit_clip_rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors,
                         out_lo, out_hi, out_it, split, keep):
    """Linear fit clipping of every sorted row.

    Parameters
    ----------
    s, n_valid : ndarray
        Sorted rows and their valid counts (row-kernel contract,
        :mod:`zemosaic_xp.backends.numba`).
    kappa_low, kappa_high : float
        Rejection thresholds below and above the line, in mean absolute residuals
        (float64, as the core multiplies them with a float64 σ).
    max_iters, min_survivors : int
        Iteration cap, and the fewest samples a row may keep (``min(·, n_valid)``).
    out_lo, out_hi, out_it : ndarray, shape (R,), int64
        Outputs: ``lo`` = samples rejected low, ``hi`` = ``n_valid`` − samples rejected
        high (the kept range when the row is not split), iterations run.
    split : ndarray, shape (R,), bool
        Output: True where the kept set is not a range of the sorted row.
    keep : ndarray, shape (R, N), bool
        Output, written on split rows only: True at the kept sorted positions.
    """
    redo = np.empty(s.shape[0], np.int64)
    n_redo = _fast_rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors,
                        out_lo, out_hi, out_it, split, keep, redo)
    _exact_rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors,
                out_lo, out_hi, out_it, split, keep, redo[:n_redo])
