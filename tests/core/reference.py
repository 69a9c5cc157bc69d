"""Straightforward per-pixel NumPy reference implementations (test oracles only)."""

from __future__ import annotations

import numpy as np


def kappa_sigma_pixel(values, kappa_low=3.0, kappa_high=3.0, max_iters=5, ddof=0, min_survivors=1):
    """astropy sigma_clip semantics (median centre, std scale, set only shrinks) + guard.

    Returns (kept values, n_low, n_high).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    kept = np.ones(v.size, bool)
    need = min(min_survivors, v.size)
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


def wsc_pixel(values, kappa_low=3.0, kappa_high=3.0, max_iters=10, min_survivors=3, weights=None):
    """PixInsight/Huber WSC of upstream_spec §2.6.1, converging per pixel; returns kept mask."""
    x = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(x)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    n = int(valid.sum())
    if n < 2:
        return valid
    xv, wv = x[valid], w[valid]
    m = np.median(xv)
    mad = np.median(np.abs(xv - m))
    sigma = 1.482602218505602 * mad if mad > 0 else 1e-10
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
    if keep.sum() < min(min_survivors, n):
        return valid
    return keep
