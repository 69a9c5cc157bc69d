"""Fused passes of the paired fit's rounds (:func:`zemosaic_xp.core.pairfit._rounds`).

Each kernel does, row by row, what a handful of the core's array operations do, with
the same float32 arithmetic in the same order (no fast-math, no contraction into FMA),
and writes the samples a median needs (those the core's median sees: selected, not
NaN) packed at the start of a row of ``buf``, their count in ``n_out``, so that the
caller takes the median with the NumPy ops' selection
(``backends.select_numpy.median_packed``): the same values as the core's.
:func:`deming_sums` sums in float64 in NumPy's pairwise order
(:func:`~.common.pairwise_sum`), so its sums equal ``np.sum(a.astype(np.float64),
axis=-1)`` of the core's products to the bit.

Rows: ``(R, M)`` C-contiguous float32 (``keep``, ``pair``: bool); per-row scalars
``(R,)``. ``origin`` selects the rounds on differences of consecutive samples: a pair
``j`` then spans raw samples ``j`` and ``j + 1`` (``M + 1`` raw samples per row).
"""

from __future__ import annotations

import numpy as np

from .common import inline, jit, pairwise_sum

__all__ = ["residuals_kept", "deviations_kept", "bright_kept", "clip_weights", "deming_sums"]

_F1 = np.float32(1.0)
_F0 = np.float32(0.0)


@jit
def residuals_kept(x, r, g32, keep, res, buf, n_out):
    """Compute the residuals ``res = r − g·x`` and pack the kept ones.

    Parameters
    ----------
    x, r : ndarray, shape (R, M), float32
        The pairs.
    g32 : ndarray, shape (R,), float32
        Each row's gain.
    keep : ndarray, shape (R, M), bool
        The pairs the median sees.
    res, buf : ndarray, shape (R, M), float32
        Outputs: the residuals; the kept ones that are not NaN, packed.
    n_out : ndarray, shape (R,), int64
        Output: the packed count of each row.
    """
    rows, m = x.shape
    for i in range(rows):
        g = g32[i]
        n = 0
        for j in range(m):
            v = r[i, j] - g * x[i, j]
            res[i, j] = v
            if keep[i, j] and v == v:
                buf[i, n] = v
                n += 1
        n_out[i] = n


@jit
def deviations_kept(res, centre, keep, dev, buf, n_out):
    """Compute the deviations ``dev = |res − centre|`` and pack the kept ones.

    Parameters
    ----------
    res : ndarray, shape (R, M), float32
        The residuals.
    centre : ndarray, shape (R,), float32
        Each row's median residual.
    keep : ndarray, shape (R, M), bool
        The pairs the median sees.
    dev, buf : ndarray, shape (R, M), float32
        Outputs: the deviations; the kept ones that are not NaN, packed.
    n_out : ndarray, shape (R,), int64
        Output: the packed count of each row.
    """
    rows, m = res.shape
    for i in range(rows):
        c = centre[i]
        n = 0
        for j in range(m):
            v = abs(res[i, j] - c)
            dev[i, j] = v
            if keep[i, j] and v == v:
                buf[i, n] = v
                n += 1
        n_out[i] = n


@inline
def _light(xv, rv, i, j, mx, mr, g):
    # max(min(r − mid_r, g·(x − mid_x)), 0), as np.minimum / np.maximum (finite values).
    a = rv[i, j] - mr
    b = g * (xv[i, j] - mx)
    low = a if a <= b else b
    return low if low >= _F0 else _F0


@jit
def bright_kept(dev, xv, rv, mid_x, mid_r, g32, origin, s0, bright_sigma, keep, signal, buf, n_out, n_bright):
    """Compute each pair's signal and pack ``dev / √signal`` of the bright kept pairs.

    Parameters
    ----------
    dev : ndarray, shape (R, M), float32
        The deviations.
    xv, rv : ndarray, shape (R, M) or (R, M + 1) with ``origin``, float32
        The raw samples (0 where excluded).
    mid_x, mid_r, g32 : ndarray, shape (R,), float32
        Their medians and the gain (the light above the sky, ``_level`` of the core).
    origin : bool
        Pairs of consecutive samples: a pair's signal is the sum of its two samples'.
    s0 : ndarray, shape (R,), float32
        The sky noise of each row.
    bright_sigma : float32
        A pair is bright above ``bright_sigma·s0`` (multiplied in float32, as the core).
    keep : ndarray, shape (R, M), bool
        The pairs kept so far.
    signal, buf : ndarray, shape (R, M), float32
        Outputs: the signal; ``dev / √signal`` of the bright kept pairs (not NaN), packed.
    n_out, n_bright : ndarray, shape (R,), int64
        Outputs: the packed count; the bright kept pairs.
    """
    rows, m = dev.shape
    for i in range(rows):
        mx, mr, g = mid_x[i], mid_r[i], g32[i]
        threshold = bright_sigma * s0[i]
        n = 0
        bright = 0
        for j in range(m):
            if origin:
                s = _light(xv, rv, i, j + 1, mx, mr, g) + _light(xv, rv, i, j, mx, mr, g)
            else:
                s = _light(xv, rv, i, j, mx, mr, g)
            signal[i, j] = s
            if keep[i, j] and s > threshold:
                bright += 1
                v = dev[i, j] / np.sqrt(s)
                if v == v:
                    buf[i, n] = v
                    n += 1
        n_out[i] = n
        n_bright[i] = bright


@jit
def clip_weights(dev, signal, s0, beta, floor, clip_sigma, pair, keep, w, kept):
    """Clip the pairs on their noise model and weight the survivors.

    ``var = s0² + β·signal + floor²``; a pair is kept when it may enter the fit and
    ``dev ≤ clip_sigma·√var``; its weight is ``1/var``, else 0 (float32, as the core).

    Parameters
    ----------
    dev, signal : ndarray, shape (R, M), float32
        Deviations and signal of the pairs.
    s0, beta, floor : ndarray, shape (R,), float32
        Sky noise, photon term and variance floor of each row.
    clip_sigma : float32
        The clip, in σ of the pair's noise.
    pair : ndarray, shape (R, M), bool
        The pairs that may enter the fit.
    keep, w : ndarray, shape (R, M)
        Outputs: bool kept mask, float32 weights.
    kept : ndarray, shape (R,), int64
        Output: the kept count of each row.
    """
    rows, m = dev.shape
    for i in range(rows):
        s = s0[i]
        b = beta[i]
        f = floor[i]
        s_sq = s * s
        f_sq = f * f
        n = 0
        for j in range(m):
            var = (s_sq + b * signal[i, j]) + f_sq
            k = pair[i, j] and dev[i, j] <= clip_sigma * np.sqrt(var)
            keep[i, j] = k
            if k:
                w[i, j] = _F1 / var
                n += 1
            else:
                w[i, j] = _F0
        kept[i] = n


@inline
def _products(w, x, r, i, kind, mx, mr, t):
    """The core's float32 products of row ``i`` as float64 into ``t``: w, w·x, w·r, (w·x)·x,
    (w·r)·r, (w·x)·r (x and r centred by mx, mr for the last three)."""
    m = x.shape[1]
    if kind == 0:
        for j in range(m):
            t[j] = np.float64(w[i, j])
    elif kind == 1:
        for j in range(m):
            t[j] = np.float64(w[i, j] * x[i, j])
    elif kind == 2:
        for j in range(m):
            t[j] = np.float64(w[i, j] * r[i, j])
    elif kind == 3:
        for j in range(m):
            xc = x[i, j] - mx
            t[j] = np.float64((w[i, j] * xc) * xc)
    elif kind == 4:
        for j in range(m):
            rc = r[i, j] - mr
            t[j] = np.float64((w[i, j] * rc) * rc)
    else:
        for j in range(m):
            t[j] = np.float64((w[i, j] * (x[i, j] - mx)) * (r[i, j] - mr))


@jit
def deming_sums(x, r, w, origin, out):
    """Sum the weighted Deming fit's moments of each row, in NumPy's pairwise order.

    As the core's ``_deming``: ``W = Σw``; unless ``origin``, x and r centred on their
    weighted means (rounded to float32, as the core rounds them); ``sxx = Σ(w·x)·x / W``
    (``W`` replaced by 1 where it is not > 0), and so on.

    Parameters
    ----------
    x, r, w : ndarray, shape (R, M), float32
        The pairs and their weights.
    origin : bool
        A fit through the origin: no centring.
    out : ndarray, shape (R, 4), float64
        Output: ``(W, sxx, syy, sxy)`` of each row.
    """
    rows, m = x.shape
    zero = np.float32(0.0)
    t = np.empty(m, dtype=np.float64)
    frames = np.empty((64, 3), dtype=np.int64)  # pairwise_sum's scratch
    values = np.empty(64, dtype=np.float64)
    for i in range(rows):
        _products(w, x, r, i, 0, zero, zero, t)
        big_w = pairwise_sum(t, m, frames, values)
        safe_w = big_w if big_w > 0 else 1.0
        mx, mr = zero, zero
        if not origin:
            _products(w, x, r, i, 1, zero, zero, t)
            mx = np.float32(pairwise_sum(t, m, frames, values) / safe_w)
            _products(w, x, r, i, 2, zero, zero, t)
            mr = np.float32(pairwise_sum(t, m, frames, values) / safe_w)
        out[i, 0] = big_w
        for k in range(3):
            _products(w, x, r, i, 3 + k, mx, mr, t)
            out[i, 1 + k] = pairwise_sum(t, m, frames, values) / safe_w
