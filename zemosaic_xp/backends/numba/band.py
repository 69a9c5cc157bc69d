"""Whole bands on the NumPy backend with numba: frames in, results out.

(Weighted stacks — quality, user frame, per-pixel or radial weights — take the same
entry, :func:`stack_band`, and go through :mod:`.weighted_band`.) For unweighted
stacks — the identity or a gain/offset normalisation, any rejection, any of the
combines — the general pipeline of ``core/pipeline.py`` costs more around the
rejection than in it: a transposing band copy, a NaN pass, a copy for the sort,
some 25 vector passes over the band's pixels to combine and count, and a
concatenation of the bands. Here (``NumpyOps.band_stacker``) a band goes through
three compiled steps instead:

1. :func:`gather_sorted` reads 32 positions of every frame at a time straight from
   the frames ``(N, H, W·C)`` (vector loads along a frame row), normalises them,
   marks non-finite samples invalid (``+inf``) and sorts the 32 pixels together
   with a sorting network (N <= 48), then counts the valid samples and takes each
   pixel's median and centred sums, vectorised over the 32 pixels. Larger stacks
   are sorted afterwards by NumPy's SIMD sort, in place, and counted by
   :func:`count_sorted`;
2. a rejection kernel on the sorted rows, one module per algorithm (:data:`REJECTIONS`,
   in :mod:`.rejections`):
   :mod:`.kappa_sigma`, :mod:`.wsc_pixinsight` (the default WSC), :mod:`.wsc_zemosaic`
   (``wsc_impl="zemosaic"``), :mod:`.percentile`, :mod:`.mad`, :mod:`.minmax`,
   :mod:`.gesd`, :mod:`.linear_fit_clip` and :mod:`.winsorized_quantile`; ``auto`` runs
   :mod:`.mad` on the rows with ≤ 3 valid samples and :mod:`.gesd` on the others;
3. :func:`~.combine.combine_ranges` writes each pixel's image value, weight sum,
   coverage and rejection counts straight into the band's rows of the results.

:func:`supports` says which configurations this covers; ``core.in_memory.stack_frames``
runs its general pipeline for the others. Every step computes what the core
computes, in the same float32/float64 arithmetic and order, so that the results are
the core's bit for bit (``tests/backends/test_numba_kernels.py`` and
``test_numba_rejections.py`` compare whole stacks with the portable path).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core.uncertainty import mean_variance_factor
from .combine import COMBINE_CODES, UNCERTAINTY_CODES, combine_ranges
from .common import NO_SUMS, borrowed, centred_sums, inline, jit, median_range, median_sums_lanes
from .rejections import NO_F32 as _NO_F32
from .rejections import REJECT_CODES, REJECTIONS, Kept
from .sorting import NETWORK_LANES as LANES
from .sorting import network
from .stored import NO_SCALING, frame_rows, frame_value, valid_row
from .weighted_band import normalisation_rows, stack_band_weighted, stack_block

__all__ = ["gather_sorted", "count_sorted", "count_sorted_sums", "count_valid", "combine_ranges", "supports",
           "stack_band", "stack_block", "COMBINE_CODES", "REJECT_CODES", "REJECTIONS", "Kept"]


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
                network(block, pairs)
                # Valid = before the trailing +inf of a sorted lane; exact unless a
                # normalised value overflowed to +inf (then `overflow`: count_valid).
                for lane in range(LANES):
                    j = n
                    while j > 0 and block[j - 1, lane] == inf:
                        j -= 1
                    count[lane] = j
                for lane in range(m):
                    n_valid[base + lane] = count[lane]
            for lane in range(m):
                for k in range(n):
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


def supports(config: Any, plan: Any, pixel_weights: bool = False) -> bool:
    """Tell whether :func:`stack_band` handles this configuration.

    Parameters
    ----------
    config : StackConfig
        The stack's methods.
    plan : FramePlan
        Its normalisation and weights.
    pixel_weights : bool
        Whether the source also gives per-pixel weights.

    Returns
    -------
    bool
        True for any rejection of :data:`REJECT_CODES` and any combine of
        :data:`COMBINE_CODES`, unweighted or weighted (quality, user frame, per-pixel
        and radial weights: :mod:`.weighted`), except ZeMosaic's WSC with weights
        (``wsc_impl="zemosaic"`` fits with the weights); False: the core's pipeline runs.
    """
    if config.reject not in REJECT_CODES or config.combine not in COMBINE_CODES:
        return False
    weighted = plan.weights is not None or config.radial_weight or pixel_weights
    return not (weighted and config.reject == "winsorized_sigma_clip" and config.wsc_impl == "zemosaic")


def stack_band(src: np.ndarray, r0: int, r1: int, pairs: np.ndarray, config: Any, plan: Any,
               out: tuple[np.ndarray, ...], *, row_start: int | None = None, full_height: int | None = None,
               pixel_weights: np.ndarray | None = None,
               scaling: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """Stack rows ``[r0, r1)`` into ``out``, as ``core.pipeline.stack_band`` would.

    Parameters
    ----------
    src : ndarray, shape (N, H, W, C), float32 or uint16, C-contiguous
        The frames (or a band of them), frames first; uint16 with ``scaling``: 16-bit
        FITS samples as stored (:mod:`.stored`).
    r0, r1 : int
        The band's rows in ``src``.
    pairs : ndarray, shape (P, 2), int64
        Sorting network of N, or shape (0, 2) to sort with NumPy.
    config, plan : StackConfig, FramePlan
        A configuration that :func:`supports` accepts.
    out : tuple of ndarray, each shape (r1 − r0, W, C), C-contiguous
        Outputs: image, weight_sum (float32), coverage, rejected_low, rejected_high (int32),
        uncertainty (float32; an empty array: not computed).
    row_start : int, optional
        Frame row of the band's first row (default ``r0``): where the radial weight
        map (``config.radial_weight``) is evaluated.
    full_height : int, optional
        Frame height of the radial map (default ``src.shape[1]``).
    pixel_weights : ndarray, shape (N, r1 − r0, W, C) or (N, r1 − r0, W, 1), optional
        Per-pixel weights of the band's rows (NaN, ±inf and values <= 0: no data).
    scaling : ndarray, shape (N, 2), float32, optional
        Each stored frame's ``(BSCALE, BZERO)``; required with uint16 ``src``.

    Returns
    -------
    tuple of int
        ``(iterations, n_valid, n_low, n_high)``: the max iterations over the band and
        its totals.

    Raises
    ------
    ValueError
        The result arrays are not C-contiguous, or stored frames come without
        ``scaling``.
    """
    if not all(a.flags.c_contiguous for a in out):
        msg = "the band's result arrays must be C-contiguous (rows of C-ordered results)"
        raise ValueError(msg)
    n, height, w, c = src.shape
    q = w * c
    flat = src.reshape(n, height, q)
    if src.dtype == np.uint16:
        if scaling is None or scaling.shape != (n, 2):
            msg = f"stored 16-bit frames need `scaling` of shape {(n, 2)}, got {getattr(scaling, 'shape', None)}"
            raise ValueError(msg)
        scaling = np.ascontiguousarray(scaling, dtype=np.float32)
    else:
        scaling = NO_SCALING
    if plan.weights is not None or config.radial_weight or pixel_weights is not None:
        return stack_band_weighted(flat, r0, r1, pairs, config, plan, out, w, c,
                                    r0 if row_start is None else row_start,
                                    height if full_height is None else full_height, pixel_weights, scaling)
    rows = (r1 - r0) * q
    s = np.empty((rows, n), np.float32)
    n_valid = np.empty(rows, np.int64)
    normalise = not plan.identity
    gain, offset = normalisation_rows(plan, n, w)
    centre = np.empty(rows, np.float32)
    sums = np.empty((rows, 2), np.float64)
    rowbuf = np.empty((n if scaling.shape[0] else 0, 1, q), np.float32)  # stored frames, decoded by row
    overflow = gather_sorted(flat, r0, r1, gain, offset, normalise, pairs, s, n_valid, centre, sums, scaling, rowbuf)
    want_se = len(out) > 5 and out[5].size > 0
    if pairs.shape[0] == 0:
        s.sort(axis=-1)  # NumPy's SIMD sort, in place; +inf (invalid) sorts last
        if config.reject == "kappa_sigma" or (want_se and config.reject == "none" and config.combine == "median"):
            # κ-σ starts from these sums and leaves its kept range's in them; the median
            # of every valid sample is their centre: either way the standard error
            # then costs no pass of its own (combine_ranges' se_sums, the same bits).
            count_sorted_sums(s, n_valid, centre, sums)
        else:
            sums = NO_SUMS  # the rows were not sorted in the gather: the kernels sum them
            count_sorted(s, n_valid)
    if overflow:
        # A valid +inf was counted invalid: recount, and let the kernels redo the sums.
        count_valid(flat, r0, r1, gain, offset, normalise, n_valid, scaling)
        sums = NO_SUMS
    kept = REJECTIONS[config.reject](s, n_valid, config, centre, sums)
    views = [a.reshape(rows) for a in out[:5]]  # views: the kernel writes the results in place
    uncertainty = out[5].reshape(rows) if want_se else _NO_F32
    counters = np.zeros(4, np.int64)
    se_factor = mean_variance_factor(config)
    # Sums of the survivors the band path already has: the gather's (every valid sample
    # survives "none"), or κ-σ's kept range (its kernel leaves them in `sums`).
    se_sums = sums if config.reject in ("none", "kappa_sigma") else NO_SUMS
    combine_ranges(s, n_valid, COMBINE_CODES[config.combine], *kept, flat, r0, gain, offset, normalise, scaling, *views,
                   counters, uncertainty, UNCERTAINTY_CODES.get(config.combine, 0), se_factor, se_sums)
    return tuple(int(v) for v in counters)
