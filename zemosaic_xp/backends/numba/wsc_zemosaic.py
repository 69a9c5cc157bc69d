"""Numba kernels of ZeMosaic's winsorised sigma clip (``wsc_impl="zemosaic"``) on sorted rows.

The maths of :mod:`zemosaic_xp.core.reject.winsorized_sigma_clip_zemosaic`, one
pixel at a time: :func:`wsc_rows` for unweighted samples (the sort-once range
formulation) and :func:`wsc_weighted_rows` for weighted ones (the direct formulation
over the samples in their original order). :func:`wsc_rows` follows the row-kernel
contract of :mod:`zemosaic_xp.backends.numba`; both give identical ranges, keep
masks and iteration counts as the core on the same rows, ``nogil`` and no
``parallel``.
"""

from __future__ import annotations

import numpy as np

from .common import (
    MAD_TO_SIGMA,
    SIGMA_FLOOR,
    TOLERANCE,
    borrowed,
    centred_sums,
    first_above,
    first_at_least,
    inline,
    jit,
    mad_range,
    median_range,
    pairwise_sum,
    survivors_floor,
)

__all__ = ["wsc_rows", "wsc_weighted_rows"]

# Rows iterated together (see wsc_rows).
_LANES = 16


@inline
def _outside_sums(s, r, m0, lo, hi, n):
    """``Σd``, ``Σd²`` (``d = f64(x) − m0``) over ``s[r, :lo]`` and ``s[r, hi:n]``.

    Interleaved column by column from the ends (left 0, right 0, left 1, …): the
    order in which the core's compact path adds short tails, so that a range sum
    ``whole − outside`` is the same float64 number there.
    """
    o1 = 0.0
    o2 = 0.0
    right = n - hi
    for t in range(max(lo, right)):
        if t < lo:
            d = np.float64(s[r, t]) - m0
            o1 = o1 + d
            o2 = o2 + d * d
        if t < right:
            d = np.float64(s[r, hi + t]) - m0
            o1 = o1 + d
            o2 = o2 + d * d
    return o1, o2


@jit
def wsc_rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors,
             out_lo, out_hi, out_it, out_c, out_sum, sums):
    """Run ZeMosaic's Huber winsorised sigma clip on every sorted row (unweighted).

    Parameters
    ----------
    s, n_valid : ndarray
        Sorted rows and their valid counts, as the row-kernel contract of
        :mod:`zemosaic_xp.backends.numba` says.
    kappa_low, kappa_high : float
        Clamp and rejection thresholds in σ, float64 (the WSC iterates in float64);
        the Huber constant is their maximum.
    max_iters, min_survivors : int
        Iterations at most, and the fewest samples the final range may keep.
    out_lo, out_hi, out_it, out_c, out_sum, sums : ndarray
        Outputs and optional whole-row sums; ``out_it`` counts iterations.

    Notes
    -----
    The maths of :mod:`zemosaic_xp.core.reject.winsorized_sigma_clip_zemosaic`:
    m = median, σ = 1.4826·MAD (1e-10 if 0); each iteration clamps to
    ``[m − κl·σ, m + κh·σ]``, m ← mean of the clamped values, σ ← Huber scale; a row
    stops when its clamp bounds repeat or m and σ move by less than 5e-4·max(1, ·).
    The final float32 bounds select the kept range; rows with fewer than 2 valid
    samples, or whose range would keep fewer than ``min(min_survivors, n_valid)``,
    keep every valid sample.
    """
    huber_c = max(kappa_low, kappa_high)
    # Per-lane state of _LANES rows iterated together: one row's iteration is a
    # long chain of dependent divisions and searches, and interleaving independent
    # rows lets the CPU overlap them (docs/performance.md, "Kernel measurements").
    # float64 per lane: m, σ, the median m0, the whole-row sums Σd and Σd², the last bounds.
    lane_f64 = np.empty((7, _LANES))
    m_l, sigma_l, m0_l, t1_l = lane_f64[0], lane_f64[1], lane_f64[2], lane_f64[3]
    t2_l, prev_lo_l, prev_hi_l = lane_f64[4], lane_f64[5], lane_f64[6]
    done_l = np.empty(_LANES, np.bool_)
    it_l = np.empty(_LANES, np.int64)
    dev = np.empty(s.shape[1], np.float32)
    s = borrowed(s)  # centred_sums, a call of its own per row: no reference counts
    rows = s.shape[0]
    for r0 in range(0, rows, _LANES):
        lanes = min(_LANES, rows - r0)
        for lane in range(lanes):
            r = r0 + lane
            n = n_valid[r]
            # Whole-row sums once; a range's sums are these minus its few outside samples.
            if sums.shape[0]:
                m0f = out_c[r]
                t1_l[lane] = sums[r, 0]
                t2_l[lane] = sums[r, 1]
            else:
                m0f = median_range(s, r, 0, n)
                if m0f != m0f:
                    m0f = np.float32(0.0)
                out_c[r] = m0f
                t1_l[lane], t2_l[lane] = centred_sums(s, r, m0f, 0, n)
            m0 = np.float64(m0f)
            mad = np.float64(mad_range(s, r, 0, n, m0f, dev))
            m0_l[lane] = m0
            m_l[lane] = m0
            sigma_l[lane] = MAD_TO_SIGMA * mad if mad > 0.0 else SIGMA_FLOOR
            prev_lo_l[lane] = np.nan
            prev_hi_l[lane] = np.nan
            done_l[lane] = n < 2
            it_l[lane] = 0
        for k in range(max_iters):
            active = False
            for lane in range(lanes):
                if done_l[lane]:
                    continue
                active = True
                r = r0 + lane
                n = n_valid[r]
                m = m_l[lane]
                sigma = sigma_l[lane]
                m0 = m0_l[lane]
                t1 = t1_l[lane]
                count = np.float64(n if n > 1 else 1)
                lo_b = m - kappa_low * sigma
                hi_b = m + kappa_high * sigma
                a = first_at_least(s, r, lo_b, 0, n)
                b = first_above(s, r, hi_b, a, n)
                n_lo = np.float64(a)
                n_hi = np.float64(n - b)
                low = lo_b - m0
                high = hi_b - m0
                mid = t1 - _outside_sums(s, r, m0, a, b, n)[0]
                delta = (n_lo * low + mid + n_hi * high) / count
                m_new = m0 + delta
                cs = huber_c * sigma
                num = 0.0
                den = 0.0
                # The clamped groups: every sample of one shares the residual (low − δ or
                # high − δ). h = min(1, c/u) is the core's where(u <= c, 1, c/u) exactly
                # (c/u >= 1 there), without a branch.
                rr = low - delta
                h = min(1.0, huber_c / (abs(rr) / sigma))
                num = num + n_lo * h * rr * rr
                den = den + n_lo * h
                rr = high - delta
                h = min(1.0, huber_c / (abs(rr) / sigma))
                num = num + n_hi * h * rr * rr
                den = den + n_hi * h
                # Unclamped samples: Huber core [p, q) has weight 1, the edges [a, p), [q, b) c·σ/|r|.
                p = first_at_least(s, r, m_new - cs, a, b)
                q = first_above(s, r, m_new + cs, p, b)
                o1, o2 = _outside_sums(s, r, m0, p, q, n)
                s1_core = t1 - o1
                s2_core = t2_l[lane] - o2
                core = np.float64(q - p)
                num = num + s2_core - 2.0 * delta * s1_core + core * delta * delta
                den = den + core
                abs_r = 0.0
                inv_r = 0.0
                for j in range(a, p):
                    e = abs(np.float64(s[r, j]) - m0 - delta)
                    abs_r += e
                    inv_r += 1.0 / e
                for j in range(q, b):
                    e = abs(np.float64(s[r, j]) - m0 - delta)
                    abs_r += e
                    inv_r += 1.0 / e
                num = num + cs * abs_r
                den = den + cs * inv_r
                sigma_new = np.sqrt(num / (den if den > 0.0 else 1.0))
                if not sigma_new > 0.0:
                    sigma_new = SIGMA_FLOOR
                # Bitwise & and |, not `and`: unpredictable branches otherwise.
                stop = ((abs(m_new - m) <= TOLERANCE * max(abs(m), 1.0))
                        & (abs(sigma_new - sigma) <= TOLERANCE * max(sigma, 1.0)))
                stop |= (k > 0) & (lo_b == prev_lo_l[lane]) & (hi_b == prev_hi_l[lane])
                prev_lo_l[lane] = lo_b
                prev_hi_l[lane] = hi_b
                m_l[lane] = m_new
                sigma_l[lane] = sigma_new
                it_l[lane] += 1
                done_l[lane] = stop
            if not active:
                break
        for lane in range(lanes):
            r = r0 + lane
            n = n_valid[r]
            need = survivors_floor(min_survivors, n)
            lower = np.float32(m_l[lane] - kappa_low * sigma_l[lane])
            upper = np.float32(m_l[lane] + kappa_high * sigma_l[lane])
            lo = first_at_least(s, r, lower, 0, n)
            hi = first_above(s, r, upper, lo, n)
            # Guard: fewer than 2 valid samples, or too few survivors, keeps every valid sample.
            if n < 2 or hi - lo < need:
                lo = 0
                hi = n
            out_lo[r] = lo
            out_hi[r] = hi
            out_it[r] = it_l[lane]
            out_sum[r] = t1_l[lane] - _outside_sums(s, r, m0_l[lane], lo, hi, n)[0]


# ---------------------------------------------------------------------------- weighted
@jit
def wsc_weighted_rows(x, w, s, n_valid, kappa_low, kappa_high, max_iters, min_survivors,
                      keep, n_low, n_high, iterations):
    """Weighted winsorised sigma clip of every row, in the samples' original order.

    Parameters
    ----------
    x : ndarray, shape (R, N), float32
        Samples, NaN where invalid.
    w : ndarray, shape (R, N), float32
        Weights, 0 on invalid samples.
    s : ndarray, shape (R, N), float32
        ``x`` sorted, invalid last as ``+inf`` (for the median and the MAD).
    n_valid : ndarray, shape (R,), int64
        Valid samples per row.
    kappa_low, kappa_high : float
        Clamp and rejection thresholds in σ; the Huber constant is their maximum.
    max_iters, min_survivors : int
        Iterations at most, and the fewest samples a row may keep.
    keep : ndarray, shape (R, N), bool
        Output: True = the sample survives (always a subset of the valid samples).
    n_low, n_high, iterations : ndarray, shape (R,), int64
        Outputs: samples rejected below and above, iterations run.

    Notes
    -----
    The direct formulation of ``core.reject.winsorized_sigma_clip_zemosaic`` (``_wsc_weighted``): clamp every
    sample to ``[m − κl·σ, m + κh·σ]``, m ← Σ w·x̃ / Σ w, σ ← Huber scale with the
    weights. Its float64 sums over the samples are NumPy's pairwise sums, reproduced
    here in the same order, so that m, σ and the stop tests are the same numbers.
    """
    n_cols = x.shape[1]
    huber_c = max(kappa_low, kappa_high)
    # Float64 scratch per sample: values, weights, clamped values, Huber weights, products.
    work = np.empty((5, n_cols))
    xv, wv, clamped, hw, prod = work[0], work[1], work[2], work[3], work[4]
    dev = np.empty(n_cols, np.float32)
    frames = np.empty((64, 3), np.int64)
    values = np.empty(64)
    for r in range(x.shape[0]):
        n = n_valid[r]
        m32 = median_range(s, r, 0, n)
        if m32 != m32:
            m32 = np.float32(0.0)
        m = np.float64(m32)
        mad = np.float64(mad_range(s, r, 0, n, m32, dev))
        sigma = MAD_TO_SIGMA * mad if mad > 0.0 else SIGMA_FLOOR
        for j in range(n_cols):
            v = x[r, j]
            xv[j] = np.float64(v) if v == v else 0.0
            wv[j] = np.float64(w[r, j])
        sw = pairwise_sum(wv, n_cols, frames, values)
        sw = sw if sw > 0.0 else 1.0
        done = n < 2
        count = 0
        prev_lo = np.nan
        prev_hi = np.nan
        for k in range(max_iters):
            if done:
                break
            lo_b = m - kappa_low * sigma
            hi_b = m + kappa_high * sigma
            for j in range(n_cols):
                # np.clip: min(max(x, lo), hi).
                c = xv[j] if xv[j] > lo_b else lo_b
                c = c if c < hi_b else hi_b
                clamped[j] = c
                prod[j] = wv[j] * c
            m_new = pairwise_sum(prod, n_cols, frames, values) / sw
            for j in range(n_cols):
                rr = clamped[j] - m_new if x[r, j] == x[r, j] else 0.0
                u = abs(rr) / sigma
                # The core's where(u <= c, 1, c / where(u > 0, u, 1)); branchy: the division
                # is rare (outliers), and a branch-free form measured slower here.
                h = 1.0 if u <= huber_c else huber_c / (u if u > 0.0 else 1.0)
                hw[j] = h * wv[j]
                prod[j] = hw[j] * rr * rr
            den = pairwise_sum(hw, n_cols, frames, values)
            sigma_new = np.sqrt(pairwise_sum(prod, n_cols, frames, values) / (den if den > 0.0 else 1.0))
            if not sigma_new > 0.0:
                sigma_new = SIGMA_FLOOR
            stop = ((abs(m_new - m) <= TOLERANCE * max(abs(m), 1.0))
                    & (abs(sigma_new - sigma) <= TOLERANCE * max(sigma, 1.0)))
            stop |= (k > 0) & (lo_b == prev_lo) & (hi_b == prev_hi)
            prev_lo = lo_b
            prev_hi = hi_b
            m = m_new
            sigma = sigma_new
            count += 1
            done = stop
        iterations[r] = count
        lower = np.float32(m - kappa_low * sigma)
        upper = np.float32(m + kappa_high * sigma)
        below = 0
        above = 0
        for j in range(n_cols):
            v = x[r, j]
            below += v < lower
            above += v > upper
        need = survivors_floor(min_survivors, n)
        # Guard: fewer than 2 valid samples, or too few survivors, keeps every valid sample.
        fallback = n < 2 or n - below - above < need
        for j in range(n_cols):
            v = x[r, j]
            keep[r, j] = v == v and (fallback or not (v < lower or v > upper))
        n_low[r] = 0 if fallback else below
        n_high[r] = 0 if fallback else above
