"""Per-pixel NumPy/SciPy oracles of every rejection (test oracles only).

Each takes one pixel's samples (NaN = no data). They follow the textbook definitions
in docs/algorithms.md, one pixel at a time, and share no code with the
implementation. The catalogue oracles (``percentile_pixel`` … ``winsorized_quantile_pixel``)
return the kept mask in the original order plus (n_low, n_high).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

MAD_TO_SIGMA = 1.482602218505602


def survivors_floor(min_survivors, n):
    """The fewest samples a pixel of ``n`` valid ones keeps (docs/algorithms.md, issue 17):
    one sample of three or more may always go, ``min_survivors`` holds otherwise."""
    return min(min_survivors, n - 1 if n >= 3 else n)


def kappa_sigma_pixel(values, kappa_low=3.0, kappa_high=3.0, max_iters=5, ddof=0, min_survivors=1):
    """astropy sigma_clip semantics (median centre, std scale, set only shrinks) + guard.

    Returns (kept values, n_low, n_high).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    kept = np.ones(v.size, bool)
    need = survivors_floor(min_survivors, v.size)
    for _ in range(max_iters):
        k = v[kept]
        if k.size <= need:
            break
        c = np.median(k)
        s = k.std(ddof=ddof) if k.size > ddof else 0.0
        new = kept & (v >= c - kappa_low * s) & (v <= c + kappa_high * s)
        if new.sum() < need or np.array_equal(new, kept):
            break
        kept = new
    c_all = v[kept]
    lower_rej = (~kept) & (v < (c_all.min() if c_all.size else np.inf))
    return c_all, int(lower_rej.sum()), int((~kept).sum() - lower_rej.sum())


def _median32(values):
    """Median of float32 values as the core takes it: ``a + 0.5·(b − a)`` in float32."""
    v = np.sort(np.asarray(values, dtype=np.float32))
    a, b = v[(v.size - 1) // 2], v[v.size // 2]
    return a if a == b else np.float32(a + np.float32(0.5) * np.float32(b - a))


def winsorized_estimate(values, huber_c=1.5, correction=1.134, tol=5e-4, max_iters=50):
    """PixInsight/Siril robust (m, σ) of float32 samples: the inner loop of WSC.

    m = median, σ = 1.4826·MAD (population std if the MAD is 0); then repeat: clip
    to m ± c·σ, m = mean, σ = 1.134·std of the clipped values, until σ and m move by
    at most tol·σ (or σ is 0) or max_iters. Returns (m, σ, iterations).
    """
    k32 = np.asarray(values, dtype=np.float32)
    med = _median32(k32)
    mad = _median32(np.abs(k32 - med))
    x = k32.astype(np.float64)
    m = float(med)
    sigma = MAD_TO_SIGMA * float(mad) if mad > 0 else float(x.std())
    iterations = 0
    while sigma > 0 and iterations < max_iters:
        y = np.clip(x, m - huber_c * sigma, m + huber_c * sigma)
        m_new, s_new = y.mean(), correction * y.std()
        iterations += 1
        converged = abs(s_new - sigma) <= tol * sigma and abs(m_new - m) <= tol * sigma
        m, sigma = m_new, s_new
        if converged:
            break
    return m, sigma, iterations


def wsc_pixel(values, kappa_low=3.0, kappa_high=3.0, max_iters=10, min_survivors=3):
    """PixInsight/Siril winsorised sigma clip of one pixel (the default ``wsc_impl``).

    Kept set K = the valid samples; repeat up to max_iters: (m, σ) =
    winsorized_estimate(K); drop x < m − κl·σ or x > m + κh·σ from K unless fewer than
    survivors_floor(min_survivors, n) would remain; stop when K does not change (or σ = 0).
    Returns (keep mask in the order of ``values``, passes run).
    """
    x = np.asarray(values, dtype=np.float32)
    valid = np.isfinite(x)
    v = np.sort(x[valid]).astype(np.float64)
    kept = np.ones(v.size, bool)
    need = survivors_floor(min_survivors, v.size)
    passes = 0
    if v.size > need:
        for _ in range(max_iters):
            m, sigma, _ = winsorized_estimate(v[kept])
            passes += 1
            new = kept & (v >= m - kappa_low * sigma) & (v <= m + kappa_high * sigma)
            if not sigma > 0 or new.sum() < need or np.array_equal(new, kept):
                break
            kept = new
    if not kept.any():
        return np.zeros_like(valid), passes
    return valid & (x >= v[kept].min()) & (x <= v[kept].max()), passes


def wsc_zemosaic_pixel(values, kappa_low=3.0, kappa_high=3.0, max_iters=10, min_survivors=3,
                       weights=None):
    """ZeMosaic's Huber WSC of upstream_spec §2.6.1 (``wsc_impl="zemosaic"``), converging per
    pixel; returns the kept mask."""
    x = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(x)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    n = int(valid.sum())
    if n < 2:
        return valid
    xv, wv = x[valid], w[valid]
    m = np.median(xv)
    mad = np.median(np.abs(xv - m))
    sigma = MAD_TO_SIGMA * mad if mad > 0 else 1e-10
    c = max(kappa_low, kappa_high)
    prev = None
    for _ in range(max_iters):
        lo, hi = m - kappa_low * sigma, m + kappa_high * sigma
        xw = np.clip(xv, lo, hi)
        m_new = np.sum(wv * xw) / np.sum(wv)
        r = xw - m_new
        u = np.abs(r) / sigma
        h = np.where(u <= c, 1.0, c / np.where(u > 0, u, 1.0))
        s_new = np.sqrt(np.sum(h * wv * r * r) / np.sum(h * wv))
        s_new = s_new if s_new > 0 else 1e-10
        stop = abs(m_new - m) <= 5e-4 * max(1.0, abs(m)) and abs(s_new - sigma) <= 5e-4 * max(1.0, sigma)
        if prev is not None and prev == (lo, hi):
            stop = True
        m, sigma = m_new, s_new
        prev = (lo, hi)
        if stop:
            break
    lower = np.float32(m - kappa_low * sigma)
    upper = np.float32(m + kappa_high * sigma)
    keep = valid & (x.astype(np.float32) >= lower) & (x.astype(np.float32) <= upper)
    if keep.sum() < survivors_floor(min_survivors, n):
        return valid
    return keep


def _guard(valid, keep, min_survivors):
    n = int(valid.sum())
    return keep if keep.sum() >= survivors_floor(min_survivors, n) else valid.copy()


def percentile_pixel(values, low=0.2, high=0.1, min_survivors=3):
    x = np.asarray(values, dtype=np.float32)
    valid = np.isfinite(x)
    if not valid.any():
        return valid, 0, 0
    m = np.float32(np.median(x[valid]))
    below = valid & ((m - x) > np.float32(low) * abs(m))
    above = valid & ((x - m) > np.float32(high) * abs(m))
    keep = _guard(valid, valid & ~below & ~above, min_survivors)
    if keep.sum() == valid.sum():
        return keep, 0, 0
    return keep, int(below.sum()), int(above.sum())


def minmax_pixel(values, n_low=1, n_high=1, min_survivors=3):
    """Kept mask; ties broken by frame index (lowest index counts as lowest)."""
    x = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(x)
    n = int(valid.sum())
    lo, hi = min(n_low, n), n - n_high
    if hi - lo < survivors_floor(min_survivors, n):
        return valid, 0, 0
    order = np.argsort(np.where(valid, x, np.inf), kind="stable")
    keep = np.zeros_like(valid)
    keep[order[lo:hi]] = True
    return keep, lo, n - hi


def mad_pixel(values, kappa_low=3.0, kappa_high=3.0, max_iters=5, min_survivors=3):
    """astropy-like iterative clip with centre = median, σ = 1.4826·MAD (float32 maths)."""
    x = np.asarray(values, dtype=np.float32)
    valid = np.isfinite(x)
    kept = valid.copy()
    need = survivors_floor(min_survivors, int(valid.sum()))
    for _ in range(max_iters):
        k = x[kept]
        if k.size <= need:
            break
        c = np.float32(np.median(k))
        sigma = np.float32(MAD_TO_SIGMA) * np.float32(np.median(np.abs(k - c)))
        new = kept & (x >= c - np.float32(kappa_low) * sigma) & (x <= c + np.float32(kappa_high) * sigma)
        if new.sum() < need or np.array_equal(new, kept):
            break
        kept = new
    lowest = x[kept].min() if kept.any() else np.inf
    n_low = int((valid & ~kept & (x < lowest)).sum())
    return kept, n_low, int((valid & ~kept).sum()) - n_low


def linear_fit_pixel(values, kappa_low=3.0, kappa_high=3.0, max_iters=10, min_survivors=3):
    """Sort, OLS line against rank (np.polyfit), σ = mean |residual|, clip, re-rank, repeat."""
    x = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(x)
    order = np.argsort(np.where(valid, x, np.inf), kind="stable")
    n = int(valid.sum())
    y = x[order[:n]]
    kept = np.ones(n, bool)
    low = np.zeros(n, bool)
    high = np.zeros(n, bool)
    need = survivors_floor(min_survivors, n)
    floor = 1e-6 * max(abs(y[0]), abs(y[-1])) if n else 0.0
    for _ in range(max_iters if n > 2 else 0):
        yk = y[kept]
        rank = np.arange(yk.size)
        slope, intercept = np.polyfit(rank, yk, 1)
        resid = yk - (intercept + slope * rank)
        sigma = max(np.abs(resid).mean(), floor)
        lo_k = -resid > kappa_low * sigma
        hi_k = resid > kappa_high * sigma
        if not (lo_k | hi_k).any() or yk.size - (lo_k | hi_k).sum() < need:
            break
        idx = np.flatnonzero(kept)
        low[idx[lo_k]] = True
        high[idx[hi_k]] = True
        kept[idx[lo_k | hi_k]] = False
    keep = np.zeros_like(valid)
    keep[order[:n][kept]] = True
    return keep, int(low.sum()), int(high.sum())


def gesd_pixel(values, fraction=0.3, alpha=0.05, min_survivors=3):
    """Rosner (1983) generalized ESD, textbook form on the unsorted samples (SciPy t.ppf)."""
    x = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(x)
    n = int(valid.sum())
    r = min(int(math.floor(fraction * n + 1e-9)), n - max(survivors_floor(min_survivors, n), 2))
    remaining = list(np.flatnonzero(valid))
    removed, significant = [], 0
    for i in range(1, max(r, 0) + 1):
        v = x[remaining]
        mean, sd = v.mean(), v.std(ddof=1)
        dev = np.abs(v - mean)
        # the extreme; on an exact tie between both ends take the high one (as documented)
        j = int(np.flatnonzero(dev == dev.max())[np.argmax(v[dev == dev.max()])])
        r_i = dev[j] / sd if sd > 0 else 0.0
        n_i = n - i + 1
        t = stats.t.ppf(1 - alpha / (2 * n_i), n_i - 2)
        lam = (n_i - 1) * t / math.sqrt((n_i - 2 + t * t) * n_i)
        removed.append((remaining.pop(j), v[j] < mean))
        if r_i > lam:
            significant = i
    keep = valid.copy()
    n_low = n_high = 0
    for idx, is_low in removed[:significant]:
        keep[idx] = False
        n_low += int(is_low)
        n_high += int(not is_low)
    return keep, n_low, n_high


def winsorized_quantile_pixel(values, limits=(0.05, 0.05), kappa_low=3.0, kappa_high=3.0,
                              min_survivors=3):
    """ZeMosaic legacy: quantile winsorisation, astropy sigma_clipped_stats, clip originals."""
    from astropy.stats import sigma_clipped_stats

    x = np.asarray(values, dtype=np.float32)
    valid = np.isfinite(x)
    n = int(valid.sum())
    if n < 3:
        return valid, 0, 0, None
    q_lo, q_hi = np.quantile(x[valid], [limits[0], 1 - limits[1]])
    wins = np.clip(x[valid], q_lo, q_hi)
    _, med, std = sigma_clipped_stats(wins, sigma=3, maxiters=5)
    below = valid & (x < med - kappa_low * std)
    above = valid & (x > med + kappa_high * std)
    keep = valid & ~below & ~above
    if keep.sum() < survivors_floor(min_survivors, n):
        return valid, 0, 0, (q_lo, q_hi)
    return keep, int(below.sum()), int(above.sum()), (q_lo, q_hi)
