"""Numba kernel of ZeMosaic's legacy quantile WSC (``reject="winsorized_quantile"``).

The maths of :mod:`zemosaic_xp.core.reject.winsorized_quantile`, in the core's float32
and float64 operations and order: each sorted row is clamped to its quantiles
``[q(low), q(1 − high)]`` (linear interpolation, as ``quantile_sorted``); the clamped
rows go through the κ-σ kernel (:func:`~.kappa_sigma.kappa_sigma_rows`, 3σ, 5
iterations, as the core's inner ``kappa_sigma_ranges``); the median and the
population standard deviation of each clipped range (NumPy's pairwise sums over the
whole row, :func:`~.common.pairwise_sum`) give the bounds that select the kept range
of the *original* row. Kept ranges and iteration counts are the core's to the bit.

With ``winsor_rewinsor`` the rejected samples keep their clamped values:
:func:`winsorized_quantile_rows` returns each row's quantiles for
:func:`~.combine.combine_ranges`, which then combines every valid sample, the
rejected ones clamped, as the core does.
"""

from __future__ import annotations

import math

import numpy as np

from .common import (
    first_above,
    first_at_least,
    inline,
    jit,
    median_range,
    pairwise_sum,
    pairwise_sum_short,
    survivors_floor,
)
from .kappa_sigma import kappa_sigma_rows

__all__ = ["winsorized_quantile_rows", "clamp", "INNER_SIGMA", "INNER_ITERS", "MIN_FRAMES"]

# The core's fixed inner clip (sigma_clipped_stats(sigma=3, maxiters=5)) and its
# smallest stack (tests check that they agree).
INNER_SIGMA = 3.0
INNER_ITERS = 5
MIN_FRAMES = 3


@inline
def clamp(x, lo, hi):
    """Return ``numpy.clip(x, lo, hi)`` of float32 scalars, NaN and signed zeros included.

    Parameters
    ----------
    x, lo, hi : float32
        The value and its bounds.

    Returns
    -------
    float32
        ``min(max(x, lo), hi)`` with NumPy's clip rules: a NaN operand propagates.
    """
    t = x if (x != x or x > lo) else lo
    return t if (t != t or t < hi) else hi


@inline
def _quantile(s, r, n, q):
    """``quantile_sorted`` of the ``n`` valid samples of row ``r`` (NaN when ``n == 0``)."""
    n_safe = n if n > 0 else 1
    pos = q * np.float64(n_safe - 1)
    below = np.int64(math.floor(pos))
    above = below + 1 if below + 1 < n_safe - 1 else n_safe - 1
    frac = np.float32(pos - np.float64(below))
    a = s[r, below]
    b = s[r, above]
    value = a
    if not (frac == 0 or a == b):
        value = np.float32(a + np.float32(frac * np.float32(b - a)))
    return value if n > 0 else np.float32(np.nan)


@jit
def winsorized_quantile_rows(s, n_valid, low_limit, high_limit, kappa_low, kappa_high, min_survivors,
                             out_lo, out_hi, out_it, winsor):
    """Quantile winsorisation and sigma clip of every sorted row.

    Parameters
    ----------
    s, n_valid : ndarray
        Sorted rows and their valid counts (row-kernel contract,
        :mod:`zemosaic_xp.backends.numba`).
    low_limit, high_limit : float
        ``winsor_limits``: the quantiles ``low_limit`` and ``1 − high_limit`` clamp.
    kappa_low, kappa_high : float32
        Already rounded to float32: the core multiplies them with a float32 σ.
    min_survivors : int
        A row that would keep fewer than ``min(min_survivors, n_valid)`` (or with fewer
        than 3 valid samples) keeps every sample.
    out_lo, out_hi, out_it : ndarray, shape (R,), int64
        Outputs: the kept range ``[lo, hi)`` of the original row and the iterations of
        the inner clip (0 where the row keeps everything).
    winsor : ndarray, shape (R, 2), float32
        Output: each row's quantiles ``q(low)``, ``q(1 − high)`` (0 without samples).
    """
    rows, n_cols = s.shape
    inf = np.float32(np.inf)
    q_high = 1.0 - high_limit
    clamped = np.empty((rows, n_cols), np.float32)
    for r in range(rows):
        n = n_valid[r]
        lo_q = _quantile(s, r, n, low_limit)
        hi_q = _quantile(s, r, n, q_high)
        if lo_q != lo_q:
            lo_q = np.float32(0.0)
            hi_q = np.float32(0.0)
        winsor[r, 0] = lo_q
        winsor[r, 1] = hi_q
        for j in range(n_cols):
            clamped[r, j] = clamp(s[r, j], lo_q, hi_q) if j < n else inf
    # The inner clip, on the clamped rows (which stay sorted: the clamp is monotone).
    lo_in = np.empty(rows, np.int64)
    hi_in = np.empty(rows, np.int64)
    centre = np.empty(rows, np.float32)
    kept_sum = np.empty(rows, np.float64)
    kappa = np.float32(INNER_SIGMA)
    # An empty local array, not the global NO_SUMS: the kernel may write into its `sums`
    # (numba types a global array as read-only).
    kappa_sigma_rows(clamped, n_valid, kappa, kappa, 0, INNER_ITERS, 1, lo_in, hi_in, out_it, centre, kept_sum,
                     np.zeros((0, 2), np.float64))
    d = np.empty(n_cols)
    dd = np.empty(n_cols)
    frames = np.empty((64, 3), np.int64)
    values = np.empty(64)
    for r in range(rows):
        n = n_valid[r]
        a = lo_in[r]
        b = hi_in[r]
        count = b - a
        med = median_range(clamped, r, a, count)
        if med != med:
            med = np.float32(0.0)
        med64 = np.float64(med)
        for j in range(n_cols):
            d[j] = np.float64(clamped[r, j]) - med64 if a <= j < b else 0.0
        count_f = np.float64(count if count > 1 else 1)
        # Up to 128 frames without pairwise_sum's scratch (common.pairwise_sum_short).
        mean = (pairwise_sum_short(d, n_cols) if n_cols <= 128 else pairwise_sum(d, n_cols, frames, values)) / count_f
        for j in range(n_cols):
            e = d[j] - mean if a <= j < b else 0.0
            dd[j] = e * e
        ss = pairwise_sum_short(dd, n_cols) if n_cols <= 128 else pairwise_sum(dd, n_cols, frames, values)
        std = np.float32(np.sqrt(ss / count_f))
        lower = np.float32(med - np.float32(kappa_low * std))
        upper = np.float32(med + np.float32(kappa_high * std))
        lo = first_at_least(s, r, lower, 0, n)
        hi = first_above(s, r, upper, lo, n)
        need = survivors_floor(min_survivors, n)
        if hi - lo < need or n < MIN_FRAMES:
            lo = 0
            hi = n
            out_it[r] = 0
        out_lo[r] = lo
        out_hi[r] = hi
