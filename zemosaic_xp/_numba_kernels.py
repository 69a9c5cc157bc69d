"""Numba kernels of the NumPy backend: whole per-pixel rejections on sorted rows.

The portable core (``core/reject_sigma.py``, ``core/reject_wsc.py``) runs a rejection as
~40 vector operations per pass over all the pixels of a band; each costs at least
~0.5 ns per pixel plus its call overhead, which dominates at small N. These kernels
run the *same* maths one pixel at a time, in compiled loops over rows that NumPy has
already sorted (its SIMD sort along the contiguous axis is faster than anything a
per-row loop can do), so a rejection costs one or two reads of each row.

They are imported by :mod:`zemosaic_xp.fastpaths` only when a rejection first needs
them and numba imports (the optional extra ``zemosaic-xp[fast]``); nothing is compiled
before that first call. ``ZEMOSAIC_XP_NUMBA=0`` switches them off
(:func:`zemosaic_xp.fastpaths.numba_kernels`).

Contract of every kernel (checked by ``tests/core/test_numba_kernels.py``):

- rows ``s`` of shape ``(R, N)``, float32, C-contiguous, sorted ascending, with the
  invalid samples last as ``+inf`` and ``n_valid`` of shape ``(R,)``, int64;
- results equal to the portable path's on the same rows: identical ranges,
  iteration counts and float32 centres; float64 sums equal up to the order of the
  additions (exact for float32 data whose values span < 2**29 ulps, i.e. any
  astronomical frame);
- ``nogil=True`` and no ``parallel=True``: the kernels run concurrently in the band
  threads of ``stack_frames``, each on its own rows and output arrays.

Compiled code is cached on disk (``cache=True``) next to this module or, where that
directory is read-only, in numba's user-wide cache directory; where neither can be
written the kernels are compiled in every process (about 2 s) rather than warn.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["NO_SUMS", "nan_to_inf_rows", "sort_network_rows", "merge_network", "network", "kappa_sigma_rows",
           "median_range", "centred_sums", "first_at_least", "first_above", "jit", "inline", "LANES",
           "cache_enabled"]

#: The ``sums`` argument of the rejection kernels when they compute the sums themselves.
NO_SUMS = np.zeros((0, 2), np.float64)


cache_enabled = True


def jit(fn=None, **options):
    """``numba.njit(nogil=True)`` with an on-disk cache when numba finds a writable place.

    Usable bare (``@jit``) or with extra numba options (``@jit(fastmath=...)``).
    """
    if fn is None:
        return lambda f: jit(f, **options)
    global cache_enabled
    options = {"nogil": True, "error_model": "numpy", **options}
    if cache_enabled:
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:
            # Load-bearing: numba raises here when neither this package's __pycache__
            # nor its user-wide cache directory can be written (read-only install, no
            # home); we compile in every process instead.
            cache_enabled = False
    return numba.njit(**options)(fn)


def inline(fn):
    """A helper compiled into its callers: a per-row call (and array view) costs more
    than the row's work at small N (measured 3-6x slower kernels)."""
    return numba.njit(nogil=True, inline="always", error_model="numpy")(fn)


# ---------------------------------------------------------------------------- helpers
@inline
def median_range(s, r, lo, count):
    """``median_sorted`` of ``s[r, lo:lo+count]`` in float32; NaN for an empty range."""
    if count <= 0:
        return np.float32(np.nan)
    a = s[r, lo + (count - 1) // 2]
    b = s[r, lo + count // 2]
    if a == b:
        return a
    # float32 arithmetic, as NumPy evaluates a + 0.5 * (b - a) on float32 arrays.
    return np.float32(a + np.float32(np.float32(0.5) * np.float32(b - a)))


@inline
def centred_sums(s, r, centre, lo, hi):
    """``Σd`` and ``Σd²`` over ``s[r, lo:hi]``, ``d = f64(x) − f64(centre)``."""
    c = np.float64(centre)
    # Four accumulators: one float64 add chain per sample would be latency-bound.
    a0 = a1 = a2 = a3 = 0.0
    q0 = q1 = q2 = q3 = 0.0
    j = lo
    while j + 4 <= hi:
        d0 = np.float64(s[r, j]) - c
        d1 = np.float64(s[r, j + 1]) - c
        d2 = np.float64(s[r, j + 2]) - c
        d3 = np.float64(s[r, j + 3]) - c
        a0 += d0
        a1 += d1
        a2 += d2
        a3 += d3
        q0 += d0 * d0
        q1 += d1 * d1
        q2 += d2 * d2
        q3 += d3 * d3
        j += 4
    while j < hi:
        d0 = np.float64(s[r, j]) - c
        a0 += d0
        q0 += d0 * d0
        j += 1
    return (a0 + a1) + (a2 + a3), (q0 + q1) + (q2 + q3)


@inline
def first_at_least(s, r, threshold, lo, hi):
    """``lo + count(s[r, lo:hi] < threshold)`` of an ascending row (the first ``j`` with ``>=``)."""
    j = lo
    while j < hi and s[r, j] < threshold:
        j += 1
    return j


@inline
def first_above(s, r, threshold, lo, hi):
    """``lo + count(s[r, lo:hi] <= threshold)`` of an ascending row, scanning from the top.

    Written ``not <=`` rather than ``>`` so that a NaN threshold counts nothing, as
    the core's searches do.
    """
    j = hi
    while j > lo and not s[r, j - 1] <= threshold:
        j -= 1
    return j


# ---------------------------------------------------------------------------- sorting
@jit
def nan_to_inf_rows(x, s, n_valid):
    """``s = x`` with NaN as ``+inf``, and the valid (non-NaN) count of each row.

    Parameters
    ----------
    x : ndarray, shape (R, N), float32, C-contiguous
    s : ndarray, shape (R, N), float32 (output; sorted afterwards by NumPy in place)
    n_valid : ndarray, shape (R,), int64 (output)

    Notes
    -----
    One pass instead of NumPy's ``isnan`` + ``where`` + a count of the NaN rows
    (measured 0.3 vs 1.4 ns per sample).
    """
    inf = np.float32(np.inf)
    for r in range(x.shape[0]):
        xr = x[r]
        sr = s[r]
        count = 0
        for k in range(x.shape[1]):
            v = xr[k]
            valid = v == v
            sr[k] = v if valid else inf
            count += valid
        n_valid[r] = count


def merge_network(n: int) -> np.ndarray:
    """Batcher's odd-even merge sorting network of ``n`` inputs, shape (pairs, 2), int64.

    Compare-exchanges ``(i, j)``, ``i < j``, in the order to apply them; valid for
    any ``n`` (not only powers of two). 19 pairs for 8 inputs, 63 for 16.
    """
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


LANES = 32  # rows sorted together by the network: one compare-exchange = 2 vector ops


@jit
def network(block, pairs):
    """Apply the compare-exchanges ``pairs`` to the rows of ``block`` (N, LANES), lane-wise.

    ``block`` holds no NaN (invalid samples are ``+inf``), so the selects below are
    exact min / max, and over a row of :data:`LANES` they compile to vector
    instructions.
    """
    for t in range(pairs.shape[0]):
        a = block[pairs[t, 0]]
        b = block[pairs[t, 1]]
        for lane in range(LANES):
            u = a[lane]
            v = b[lane]
            a[lane] = u if u < v else v
            b[lane] = v if u < v else u


@jit
def sort_network_rows(x, pairs, s, n_valid):
    """:func:`nan_to_inf_rows` and an ascending sort of each row, by a sorting network.

    Parameters
    ----------
    x : ndarray, shape (R, N), float32, C-contiguous
    pairs : ndarray, shape (P, 2), int64
        :func:`merge_network` of N.
    s : ndarray, shape (R, N), float32 (output)
        Rows sorted ascending, NaN last as ``+inf`` (what NumPy's sort of the
        ``+inf`` copy gives).
    n_valid : ndarray, shape (R,), int64 (output)

    Notes
    -----
    For short rows: NumPy's sort costs ~40 ns per row whatever N, 5 ns per sample at
    N = 8, and the network sorts 32 rows at a time with vector min/max (~1.7 ns per
    sample at N = 8).
    """
    rows, n = x.shape
    inf = np.float32(np.inf)
    block = np.empty((n, LANES), np.float32)
    for r0 in range(0, rows, LANES):
        m = min(LANES, rows - r0)
        for lane in range(m):
            xr = x[r0 + lane]
            count = 0
            for k in range(n):
                v = xr[k]
                valid = v == v
                block[k, lane] = v if valid else inf
                count += valid
            n_valid[r0 + lane] = count
        for lane in range(m, LANES):
            for k in range(n):
                block[k, lane] = inf
        network(block, pairs)
        for lane in range(m):
            sr = s[r0 + lane]
            for k in range(n):
                sr[k] = block[k, lane]


# ---------------------------------------------------------------------------- κ-σ
@jit
def kappa_sigma_rows(s, n_valid, kappa_low, kappa_high, ddof, max_iters, min_survivors,
                     out_lo, out_hi, out_it, out_c, out_sum, sums):
    """Iterative median-centred κ-σ clipping of every sorted row, in place into the outputs.

    Parameters
    ----------
    s : ndarray, shape (R, N), float32, C-contiguous
        Rows sorted ascending, invalid samples last as ``+inf``.
    n_valid : ndarray, shape (R,), int64
    kappa_low, kappa_high : float32
        Already rounded to float32: the core multiplies them with a float32 σ.
    ddof, max_iters, min_survivors : int
    out_lo, out_hi, out_it : ndarray, shape (R,), int64 (outputs)
        Kept range ``[lo, hi)`` and iterations run (0 for rows that cannot reject).
    out_c : ndarray, shape (R,), float32 (output; an input with ``sums``)
        The row's median; 0 for a row without valid samples.
    out_sum : ndarray, shape (R,), float64 (output)
        ``Σ (x − median)`` over the kept range, float64 (0 for an empty range).
    sums : ndarray, shape (R, 2) or (0, 2), float64
        ``Σd``, ``Σd²`` of each whole row about the median already in ``out_c``
        (:func:`zemosaic_xp._numba_band.gather_sorted` computes both, vectorised
        over 32 rows); shape (0, 2) to compute them here.

    Notes
    -----
    Same semantics as :func:`zemosaic_xp.core.reject_sigma.kappa_sigma_fit`: iteration
    1 is centred on the median, later ones on the kept range's median; σ from float64
    sums of ``x − median`` rounded to float32; ``x < c − κl·σ`` / ``x > c + κh·σ``
    rejected; a pass that changes nothing or would leave fewer than
    ``min(min_survivors, n_valid)`` samples ends the row (and counts as an iteration).
    """
    for r in range(s.shape[0]):
        n = n_valid[r]
        need = min_survivors if min_survivors < n else n
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
                sigma = np.float32(np.sqrt(0.0 if var < 0.0 else var))  # NaN stays NaN, as maximum()
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
