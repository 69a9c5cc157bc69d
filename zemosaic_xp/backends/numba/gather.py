"""The band gather of the numba band path: the frames' samples of a band, sorted by pixel.

:func:`gather_sorted` reads 32 positions of every frame at a time straight from the
frames ``(N, H, W·C)`` (vector loads along a frame row), normalises them, marks
non-finite samples invalid (``+inf``) and sorts the 32 pixels together with a sorting
network (N <= 48), then counts the valid samples and takes each pixel's median and
centred sums, vectorised over the 32 pixels. Larger stacks are sorted afterwards by
NumPy's SIMD sort, in place, and counted by :func:`count_sorted` (or
:func:`count_sorted_sums`). :mod:`.band` calls them.
"""

from __future__ import annotations

import numpy as np

from .common import borrowed, centred_sums, inline, jit, median_range, median_sums_lanes
from .constants import NETWORK_LANES as LANES
from .simd import transpose_16
from .sorting import network_f32
from .stored import NO_SCALING, frame_rows, frame_value, valid_row

__all__ = ["gather_sorted", "count_sorted", "count_sorted_sums", "count_valid"]


@jit
def gather_sorted(src, r0, r1, gain, offset, normalise, pairs, s, n_valid, centre, sums, scaling, rowbuf):
    """Normalised samples of rows ``[r0, r1)``, pixel-major, invalid last as ``+inf``.

    Parameters
    ----------
    src : ndarray, shape (N, H, Q), float32 or uint16, C-contiguous
        The frames (or a band of them) with each row's ``W·C`` values flattened to
        ``Q`` (channels interleaved, as stored); uint16: 16-bit FITS samples as stored
        (:mod:`.stored`).
    r0, r1 : int
        Rows of ``src`` to gather.
    gain, offset : ndarray, shape (N, Q), float32
        Normalisation ``x' = x·gain + offset`` per frame and position (the per-channel
        values repeated along the row); read only when ``normalise``.
    normalise : bool
        Whether to apply ``gain`` and ``offset`` (False: the identity normalisation).
    pairs : ndarray, shape (P, 2), int64
        Sorting network of N (:func:`~zemosaic_xp.backends.numba.sorting.merge_network`), or
        shape (0, 2) to leave the rows unsorted (the caller sorts them).
    s : ndarray, shape ((r1 − r0)·Q, N), float32 (output)
        Row ``(i − r0)·Q + q`` holds position ``q`` of row ``i``: the order of the
        core's ``(h, W, C, N)`` band reshaped to ``(P, N)``.
        Shape (0, N) with a network: not written (the counts, medians and sums are).
    n_valid : ndarray, shape ((r1 − r0)·Q,), int64 (output, with a network)
        Valid samples per row (see Returns); without a network the caller counts
        them after sorting (:func:`count_sorted`).
    centre : ndarray, shape ((r1 − r0)·Q,), float32 (output, with a network)
        Median of each row (0 without valid samples), as ``median_sorted``.
    sums : ndarray, shape ((r1 − r0)·Q, 2), float64 (output, with a network)
        ``Σd``, ``Σd²`` of each row's valid samples, ``d = f64(x) − f64(centre)``: the
        start of the rejection kernels (their ``sums`` argument).
    scaling : ndarray, shape (N, 2), float32
        ``(BSCALE, BZERO)`` of stored frames (:data:`~.stored.NO_SCALING` for float32).
    rowbuf : ndarray, shape (N, 1, Q) for stored frames (else (0, 1, Q)), float32
        Scratch: a stored row of every frame, decoded (:func:`~.stored.frame_rows`).
        Passed in to be :func:`~.common.borrowed`: the views of it the loop takes at
        every 32 pixels of every frame then cost no atomic reference counts.

    Returns
    -------
    bool
        True when a normalised sample overflowed to +inf: it is a valid sample (as
        in the core) that ``n_valid`` missed, and the caller must count with
        :func:`count_valid` and let the rejection kernels redo the sums.

    Notes
    -----
    A raw sample that is not finite is "no data" (the core's ``nan_nonfinite``).
    32 positions of every frame are read at a time, with vector loads along a frame
    row, then sorted together by the network.
    """
    n, _, q = src.shape
    inf = np.float32(np.inf)
    block = np.empty((n, LANES), np.float32)
    count = np.zeros(LANES, np.int32)
    med32 = np.empty(LANES, np.float32)
    med = np.empty(LANES, np.float64)
    acc1 = np.empty(LANES, np.float64)
    acc2 = np.empty(LANES, np.float64)
    overflow = False
    # Stored frames: each row of every frame decoded at once, then gathered as float32.
    rowbuf = borrowed(rowbuf)
    for i in range(r0, r1):
        frames, fi = frame_rows(src, i, scaling, rowbuf)
        for j0 in range(0, q, LANES):
            m = min(LANES, q - j0)
            if normalise:
                for k in range(n):
                    brow = block[k]
                    srow = frames[k, fi, j0:j0 + m]
                    grow = gain[k, j0:j0 + m]
                    orow = offset[k, j0:j0 + m]
                    for lane in range(m):
                        v = srow[lane]
                        # Two float32 roundings, as NumPy's band * gain + offset.
                        y = np.float32(np.float32(v * grow[lane]) + orow[lane])
                        ok = ((v - v) == 0) & (y == y)  # raw finite, result not NaN
                        brow[lane] = y if ok else inf
                        overflow |= ok & ((y - y) != 0)
            else:
                for k in range(n):
                    valid_row(frames, k, fi, j0, m, NO_SCALING, block[k])
            if m < LANES:
                block[:, m:] = inf
            base = (i - r0) * q + j0
            if pairs.shape[0]:
                network_f32(block, pairs)
                # Valid = before the trailing +inf of a sorted lane; exact unless a
                # normalised value overflowed to +inf (then `overflow`: count_valid).
                for lane in range(LANES):
                    j = n
                    while j > 0 and block[j - 1, lane] == inf:
                        j -= 1
                    count[lane] = j
                for lane in range(m):
                    n_valid[base + lane] = count[lane]
            if s.shape[0]:  # an empty s: the caller needs only counts, medians and sums
                # Pixel-major rows: 16 × 16 tiles transposed in registers, the rest (a
                # row end, N mod 16 frames) one sample at a time.
                tiled = 0
                if m == LANES:
                    tiled = n - n % 16
                    width = s.shape[1]
                    for kt in range(0, tiled, 16):
                        for lt in range(0, LANES, 16):
                            transpose_16(block, kt * LANES + lt, LANES, s, (base + lt) * width + kt, width)
                for lane in range(m):
                    for k in range(tiled, n):
                        s[base + lane, k] = block[k, lane]
            if pairs.shape[0]:
                median_sums_lanes(block, count, centre, sums, base, m, med32, med, acc1, acc2)
    return overflow


@jit
def count_sorted(s, n_valid):
    """Count the valid samples of sorted rows: those before the trailing ``+inf``.

    Parameters
    ----------
    s : ndarray, shape (P, N), float32
        Rows sorted ascending, invalid samples last as ``+inf``.
    n_valid : ndarray, shape (P,), int64
        Output.
    """
    for p in range(s.shape[0]):
        n_valid[p] = _valid_count(s, p)


@inline
def _valid_count(s, p):
    """Valid samples of the sorted row ``s[p]``: those before its trailing ``+inf``."""
    inf = np.float32(np.inf)
    j = s.shape[1]
    while j > 0 and s[p, j - 1] == inf:
        j -= 1
    return j


@jit
def count_sorted_sums(s, n_valid, centre, sums):
    """Count the valid samples of sorted rows, with each row's median and centred sums.

    What :func:`gather_sorted` gives with a sorting network, for rows NumPy sorted:
    the start of the rejection kernels (their ``centre`` and ``sums`` arguments).

    Parameters
    ----------
    s : ndarray, shape (P, N), float32
        Rows sorted ascending, invalid samples last as ``+inf``.
    n_valid : ndarray, shape (P,), int64
        Output: valid samples per row (before the trailing ``+inf``).
    centre : ndarray, shape (P,), float32
        Output: each row's median (0 without valid samples).
    sums : ndarray, shape (P, 2), float64
        Output: ``Σd``, ``Σd²`` of each row's valid samples, ``d = f64(x) − f64(centre)``.
    """
    s = borrowed(s)  # centred_sums, a call of its own per row: no reference counts
    for p in range(s.shape[0]):
        j = _valid_count(s, p)
        n_valid[p] = j
        m0 = median_range(s, p, 0, j)
        if m0 != m0:
            m0 = np.float32(0.0)
        centre[p] = m0
        s1, s2 = centred_sums(s, p, m0, 0, j)
        sums[p, 0] = s1
        sums[p, 1] = s2


@jit
def count_valid(src, r0, r1, gain, offset, normalise, n_valid, scaling):
    """Count the valid samples per position from the frames, by the rule of :func:`gather_sorted`.

    Parameters
    ----------
    src : ndarray, shape (N, H, Q), float32 or uint16, C-contiguous
        The frames, as :func:`gather_sorted` reads them.
    r0, r1 : int
        Rows of ``src`` to count.
    gain, offset : ndarray, shape (N, Q), float32
        Normalisation, read only when ``normalise``.
    normalise : bool
        Whether to apply ``gain`` and ``offset``.
    n_valid : ndarray, shape ((r1 − r0)·Q,), int64
        Output: the raw sample is finite and its normalised value is not NaN (a value
        that overflowed to ±inf counts as valid, as in the core).
    scaling : ndarray, shape (N, 2), float32
        As :func:`gather_sorted`.
    """
    n, _, q = src.shape
    for i in range(r0, r1):
        for j in range(q):
            count = 0
            for k in range(n):
                v = frame_value(src, k, i, j, scaling)
                y = np.float32(np.float32(v * gain[k, j]) + offset[k, j]) if normalise else v
                count += ((v - v) == 0) & (y == y)
            n_valid[(i - r0) * q + j] = count
