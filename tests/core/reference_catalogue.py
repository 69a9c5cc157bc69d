"""Per-pixel NumPy/SciPy oracles for the catalogue rejections (test oracles only).

Each takes one pixel's samples (NaN = no data) and returns the kept mask in the
original order plus (n_low, n_high). They follow the textbook definitions in
docs/algorithms.md and share no code with the implementation.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

MAD_TO_SIGMA = 1.482602218505602


def _guard(valid, keep, min_survivors):
    n = int(valid.sum())
    return keep if keep.sum() >= min(min_survivors, n) else valid.copy()


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
    if hi - lo < min(min_survivors, n):
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
    need = min(min_survivors, int(valid.sum()))
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
    need = min(min_survivors, n)
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
    r = min(int(math.floor(fraction * n + 1e-9)), n - max(min_survivors, 2))
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
    if keep.sum() < min(min_survivors, n):
        return valid, 0, 0, (q_lo, q_hi)
    return keep, int(below.sum()), int(above.sum()), (q_lo, q_hi)
