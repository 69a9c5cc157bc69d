"""Numba kernel of the median-centred κ-σ clip (``reject="kappa_sigma"``) on sorted rows.

The portable core runs a rejection as dozens of vector operations per pass over all
the pixels of a band, each with its own call overhead, which dominates at small N.
This kernel runs the *same* maths one pixel at a time, in a compiled loop over rows
that NumPy has already sorted, so a rejection costs one or two reads of each row.
"""

from __future__ import annotations

import numpy as np

from .common import borrowed, centred_sums, first_above, first_at_least, jit, median_range, nonneg, survivors_floor

__all__ = ["kappa_sigma_rows"]


@jit
def kappa_sigma_rows(s, n_valid, kappa_low, kappa_high, ddof, max_iters, min_survivors,
                     out_lo, out_hi, out_it, out_c, out_sum, sums):
    """Iterative median-centred κ-σ clipping of every sorted row, in place into the outputs.

    Parameters
    ----------
    s, n_valid : ndarray
        Sorted rows and valid counts (row-kernel contract, :mod:`zemosaic_xp.backends.numba`).
    kappa_low, kappa_high : float32
        Already rounded to float32: the core multiplies them with a float32 σ.
    ddof, max_iters, min_survivors : int
        As :func:`zemosaic_xp.core.reject.kappa_sigma.kappa_sigma_fit`.
    out_lo, out_hi, out_it, out_c, out_sum, sums : ndarray
        Outputs and optional whole-row sums, as the contract says; ``out_it`` counts
        iterations (0 for rows that cannot reject). Non-empty ``sums`` are then
        overwritten with the kept range's ``Σd``, ``Σd²`` (about ``out_c``), which the
        band path's standard error reads.

    Notes
    -----
    Same semantics as the core: iteration 1 is centred on the median, later ones on
    the kept range's median; σ from float64 sums of ``x − median`` rounded to float32;
    ``x < c − κl·σ`` / ``x > c + κh·σ`` rejected; a pass that changes nothing or
    would leave fewer than ``min(min_survivors, n_valid)`` samples ends the row (and
    counts as an iteration).
    """
    s = borrowed(s)  # centred_sums, a call of its own per iteration: no reference counts
    for r in range(s.shape[0]):
        n = n_valid[r]
        need = survivors_floor(min_survivors, n)
        lo = 0
        hi = n
        if sums.shape[0]:
            m0 = out_c[r]
            s1 = sums[r, 0]
            s2 = sums[r, 1]
        else:
            m0 = median_range(s, r, 0, n)
            if m0 != m0:  # no valid sample: centre 0, as the core's where(isnan(m0), 0, m0)
                m0 = np.float32(0.0)
            out_c[r] = m0
            s1, s2 = centred_sums(s, r, m0, lo, hi)
        iterations = 0
        if max_iters >= 1 and n > need:
            for k in range(max_iters):
                iterations += 1
                count = hi - lo
                c = m0 if k == 0 else median_range(s, r, lo, count)
                count_f = np.float64(count if count > 0 else 1)
                dof = np.float64(count - ddof if count - ddof > 0 else 1)
                var = (s2 - s1 * s1 / count_f) / dof
                # σ is rounded to float32 before forming the bounds, as the core does.
                sigma = np.float32(np.sqrt(nonneg(var)))  # NaN stays NaN, as maximum()
                lower = np.float32(c - np.float32(kappa_low * sigma))
                upper = np.float32(c + np.float32(kappa_high * sigma))
                if count > 0:
                    first = s[r, lo]
                    last = s[r, hi - 1]
                else:
                    first = s[r, 0]
                    last = s[r, 0]
                # The kept set only shrinks: a range whose extremes lie inside the bounds stops.
                if not (first < lower or last > upper):
                    break
                new_lo = first_at_least(s, r, lower, lo, hi)
                new_hi = first_above(s, r, upper, new_lo, hi)
                changed = new_lo != lo or new_hi != hi
                # Guard: a step that would leave fewer than `need` samples is not taken.
                if not changed or new_hi - new_lo < need:
                    break
                lo = new_lo
                hi = new_hi
                s1, s2 = centred_sums(s, r, m0, lo, hi)
        out_lo[r] = lo
        out_hi[r] = hi
        out_it[r] = iterations
        out_sum[r] = s1
        if sums.shape[0]:
            sums[r, 0] = s1
            sums[r, 1] = s2
