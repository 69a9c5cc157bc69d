"""Numba kernel of the iterative MAD clip (``reject="mad"``) on sorted rows.

The maths of :mod:`zemosaic_xp.core.reject.mad`, one pixel at a time, in the same
float32 arithmetic: per iteration the median c of the kept range, its MAD
(:func:`~.common.mad_range`, equal to the core's ``mad_sorted``),
``σ = f32(1.4826)·MAD`` and the bounds ``c ∓ f32(κ)·σ`` in float32; the same
searches, stop rule and survivor guard. The kept ranges and iteration counts are the
core's to the bit.
"""

from __future__ import annotations

import numpy as np

from .common import MAD_TO_SIGMA, first_above, first_at_least, jit, mad_range, median_range, survivors_floor

__all__ = ["mad_rows"]


@jit
def mad_rows(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors, out_lo, out_hi, out_it):
    """Median-centred MAD clipping of every sorted row.

    Parameters
    ----------
    s, n_valid : ndarray
        Sorted rows and their valid counts (row-kernel contract,
        :mod:`zemosaic_xp.backends.numba`).
    kappa_low, kappa_high : float32
        Already rounded to float32: the core multiplies them with a float32 σ.
    max_iters, min_survivors : int
        Iteration cap, and the fewest samples a row may keep (``min(·, n_valid)``).
    out_lo, out_hi, out_it : ndarray, shape (R,), int64
        Outputs: the kept range ``[lo, hi)`` and the iterations run (0 for rows that
        cannot reject).

    Notes
    -----
    An iteration that changes nothing, or would leave fewer than the guard, ends the
    row and counts, as in the core.
    """
    to_sigma = np.float32(MAD_TO_SIGMA)
    dev = np.empty(s.shape[1], np.float32)
    for r in range(s.shape[0]):
        n = n_valid[r]
        need = survivors_floor(min_survivors, n)
        lo = 0
        hi = n
        iterations = 0
        if n > need:
            for _ in range(max_iters):
                iterations += 1
                count = hi - lo
                c = median_range(s, r, lo, count)
                if c != c:
                    c = np.float32(0.0)
                sigma = np.float32(to_sigma * mad_range(s, r, lo, count, c, dev))
                if sigma != sigma:
                    sigma = np.float32(0.0)
                lower = np.float32(c - np.float32(kappa_low * sigma))
                upper = np.float32(c + np.float32(kappa_high * sigma))
                new_lo = first_at_least(s, r, lower, lo, hi)
                new_hi = first_above(s, r, upper, new_lo, hi)
                if (new_lo == lo and new_hi == hi) or new_hi - new_lo < need:
                    break
                lo = new_lo
                hi = new_hi
        out_lo[r] = lo
        out_hi[r] = hi
        out_it[r] = iterations
