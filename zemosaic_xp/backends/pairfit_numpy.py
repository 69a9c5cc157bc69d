"""The paired fit's rounds on NumPy with the numba kernels (``NumpyOps.paired_rounds``).

The core's rounds (:func:`zemosaic_xp.core.pairfit._rounds`) are ~40 array operations
per round on rows of 65 536 samples; here each pass over a row is one kernel of
:mod:`.numba.pairfit` and the three medians of a round are the NumPy ops' selection
(:func:`~zemosaic_xp.backends.select_numpy.median_packed`) of the packed samples.
The arithmetic is the core's, in the same order and precision, and the float64 sums are
in NumPy's pairwise order: the results are the core's to the bit
(``tests/backends/test_numba_pairfit.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.nanstats import MAD_TO_SIGMA
from ..core.pairfit import BRIGHT_SKY_SIGMA, CLIP_SIGMA, deming_gain, next_gain, noise_floor, photon_term
from .numba import numba_kernels
from .select_numpy import median_packed

__all__ = ["paired_rounds"]


def paired_rounds(ops: Any, x: np.ndarray, r: np.ndarray, pair: np.ndarray, light: tuple, g: np.ndarray,
                  delta: np.ndarray, *, origin: bool,
                  rounds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Run the paired fit's rounds with the numba kernels (see ``ArrayOps.paired_rounds``).

    Parameters
    ----------
    ops : NumpyOps
        Its namespace (``ops.xp``) for the core's formulas.
    x, r : ndarray, shape (R, M), float32
        The pairs fitted (0 where excluded).
    pair : ndarray, shape (R, M), bool
        The pairs that may enter the fit.
    light : tuple
        ``(x, r, mid_x, mid_r)``: the raw rows, ``(R, M)`` (``(R, M + 1)`` with
        ``origin``), float32, and their medians ``(R, 1)``.
    g, delta : ndarray, shape (R, 1), float64
        Start gains and error-variance ratios.
    origin : bool
        Pairs of consecutive-sample differences (fit through 0; signal of two samples).
    rounds : int
        Rounds to run.

    Returns
    -------
    gain : ndarray, shape (R, 1), float64
        The fitted gains (the start where no round fitted one).
    keep : ndarray, shape (R, M), bool
        The pairs of the last round's fit.
    kept : ndarray, shape (R, 1), int64
        Their count.
    s0 : ndarray, shape (R, 1), float32
        The last round's sky noise. All four as the core's rounds return them, to the
        bit; None instead without numba or for rows that are not float32.
    """
    kernels = numba_kernels()
    x, r = np.ascontiguousarray(x), np.ascontiguousarray(r)
    if kernels is None or x.dtype != np.float32 or r.dtype != np.float32 or np.asarray(light[0]).dtype != np.float32:
        return None
    xp = ops.xp
    g, delta = np.asarray(g), np.asarray(delta)
    pair = np.ascontiguousarray(pair)
    xv, rv, mid_x, mid_r = (np.ascontiguousarray(v) for v in light)
    n_rows = x.shape[0]
    res, dev, signal, w, buf = (np.empty_like(x) for _ in range(5))
    counts = np.empty(n_rows, dtype=np.int64)
    bright_rows = np.empty(n_rows, dtype=np.int64)
    kept_rows = np.zeros(n_rows, dtype=np.int64)
    moments = np.empty((n_rows, 4), dtype=np.float64)
    floor = noise_floor(mid_r, xp)
    bright_sigma, clip_sigma = np.float32(BRIGHT_SKY_SIGMA), np.float32(CLIP_SIGMA)
    keep = pair
    kept = np.zeros((n_rows, 1), dtype=np.int64)
    s0 = np.zeros((n_rows, 1), dtype=x.dtype)
    for _ in range(rounds):
        g32 = np.ascontiguousarray(g[:, 0], dtype=np.float32)
        kernels.residuals_kept(x, r, g32, keep, res, buf, counts)
        centre = median_packed(buf, counts, xp)
        kernels.deviations_kept(res, centre, keep, dev, buf, counts)
        s0 = MAD_TO_SIGMA * np.reshape(median_packed(buf, counts, xp), (n_rows, 1))
        kernels.bright_kept(dev, xv, rv, mid_x[:, 0], mid_r[:, 0], g32, origin, s0[:, 0], bright_sigma, keep, signal,
                            buf, counts, bright_rows)
        n_bright = np.reshape(bright_rows, (n_rows, 1)).copy()
        beta = photon_term(np.reshape(median_packed(buf, counts, xp), (n_rows, 1)), n_bright, xp)
        keep = np.empty_like(pair)
        kernels.clip_weights(dev, signal, s0[:, 0], beta[:, 0], floor[:, 0], clip_sigma, pair, keep, w, kept_rows)
        kernels.deming_sums(x, r, w, origin, moments)
        gain = deming_gain(moments[:, 1:2], moments[:, 2:3], moments[:, 3:4], delta, xp)
        kept = np.reshape(kept_rows, (n_rows, 1)).copy()
        g = next_gain(gain, kept, g, xp)
    return g, keep, kept, s0
