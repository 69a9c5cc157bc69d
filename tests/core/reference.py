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
    sigma = 1.482602218505602 * float(mad) if mad > 0 else float(x.std())
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
    min(min_survivors, n) would remain; stop when K does not change (or σ = 0).
    Returns (keep mask in the order of ``values``, passes run).
    """
    x = np.asarray(values, dtype=np.float32)
    valid = np.isfinite(x)
    v = np.sort(x[valid]).astype(np.float64)
    kept = np.ones(v.size, bool)
    need = min(min_survivors, v.size)
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
