"""Whole bands on the NumPy backend with numba: frames in, results out.

For unweighted stacks — the identity or a gain/offset normalisation, any rejection,
any of the combines — the general pipeline of ``core/pipeline.py`` costs more around
the rejection than in it: a transposing band copy, a NaN pass, a copy for the sort,
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
2. a rejection kernel on the sorted rows, one module per algorithm (:data:`REJECTIONS`):
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

import math
from typing import Any, NamedTuple

import numpy as np

from ...core.reject.auto import AUTO_MAD_MAX_N
from ...core.reject.gesd_table import gesd_critical_values
from ...core.uncertainty import mean_variance_factor
from .combine import COMBINE_CODES, UNCERTAINTY_CODES, combine_ranges
from .common import NO_SUMS, inline, jit, midpoint
from .gesd import FLOOR_SLACK, gesd_rows
from .kappa_sigma import kappa_sigma_rows
from .linear_fit_clip import linear_fit_clip_rows
from .mad import mad_rows
from .minmax import minmax_rows
from .percentile import percentile_rows
from .sorting import NETWORK_LANES as LANES
from .sorting import network
from .winsorized_quantile import winsorized_quantile_rows
from .wsc_pixinsight import wsc_pixinsight_rows
from .wsc_zemosaic import wsc_rows

__all__ = ["gather_sorted", "count_sorted", "count_valid", "combine_ranges", "supports", "stack_band",
           "COMBINE_CODES", "REJECT_CODES", "REJECTIONS", "Kept"]


_NO_F32 = np.zeros(0, np.float32)
_NO_F64 = np.zeros(0, np.float64)
_NO_SPLIT = np.zeros(0, np.bool_)
_NO_KEEP = np.zeros((0, 0), np.bool_)
_NO_WINSOR = np.zeros((0, 2), np.float32)


class Kept(NamedTuple):
    """What a rejection kernel found, in the arguments of :func:`~.combine.combine_ranges`.

    Attributes
    ----------
    lo, hi, iterations : ndarray, shape (P,), int64
        The kept range ``[lo, hi)`` of each sorted row (on a split row: samples
        rejected low, and ``n_valid`` − samples rejected high) and the iterations run.
    centre, kept_sum : ndarray, shape (P,) or (0,)
        The row's median and ``Σ (x − median)`` over the kept range, for rejections
        that carry them (κ-σ, the WSC flavours); empty otherwise.
    split, keep : ndarray
        Rows whose kept set is not a range and their kept sorted positions
        (``linear_fit_clip``); empty otherwise.
    winsor : ndarray, shape (P, 2) or (0, 2), float32
        Clamp bounds of rejected samples that stay in the combine
        (``winsorized_quantile`` with ``winsor_rewinsor``); empty otherwise.
    """

    lo: np.ndarray
    hi: np.ndarray
    iterations: np.ndarray
    centre: np.ndarray = _NO_F32
    kept_sum: np.ndarray = _NO_F64
    split: np.ndarray = _NO_SPLIT
    keep: np.ndarray = _NO_KEEP
    winsor: np.ndarray = _NO_WINSOR


@jit
def gather_sorted(src, r0, r1, gain, offset, normalise, pairs, s, n_valid, centre, sums):
    """Normalised samples of rows ``[r0, r1)``, pixel-major, invalid last as ``+inf``.

    Parameters
    ----------
    src : ndarray, shape (N, H, Q), float32, C-contiguous
        The frames (or a band of them) with each row's ``W·C`` values flattened to
        ``Q`` (channels interleaved, as stored).
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
    for i in range(r0, r1):
        for j0 in range(0, q, LANES):
            m = min(LANES, q - j0)
            if normalise:
                for k in range(n):
                    srow = src[k, i, j0:j0 + m]
                    grow = gain[k, j0:j0 + m]
                    orow = offset[k, j0:j0 + m]
                    brow = block[k]
                    for lane in range(m):
                        v = srow[lane]
                        # Two float32 roundings, as NumPy's band * gain + offset.
                        y = np.float32(np.float32(v * grow[lane]) + orow[lane])
                        ok = ((v - v) == 0) & (y == y)  # raw finite, result not NaN
                        brow[lane] = y if ok else inf
                        overflow |= ok & ((y - y) != 0)
            else:
                for k in range(n):
                    srow = src[k, i, j0:j0 + m]
                    brow = block[k]
                    for lane in range(m):
                        v = srow[lane]
                        brow[lane] = v if (v - v) == 0 else inf  # (v − v) is NaN for ±inf, NaN
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
                _median_sums(block, count, centre, sums, base, m, med32, med, acc1, acc2)
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
    inf = np.float32(np.inf)
    for p in range(s.shape[0]):
        j = s.shape[1]
        while j > 0 and s[p, j - 1] == inf:
            j -= 1
        n_valid[p] = j


@inline
def _median_sums(block, count, centre, sums, base, m, med32, med, acc1, acc2):
    """Median, ``Σd`` and ``Σd²`` (``d = x − median``) of each sorted lane of ``block``.

    Vectorised over the lanes: every lane's median is first taken as if it were
    full (two rows of the block), then the few lanes with missing samples are
    redone; one float64 accumulator per lane adds the lane's samples in order,
    where a loop along one row is a chain of dependent adds. ``med32`` (float32),
    ``med``, ``acc1``, ``acc2`` (float64) are scratch arrays of :data:`LANES`. The
    invalid samples of ``block`` (already stored) are overwritten by the median:
    they then add exact zeros, and the loop needs no mask.
    """
    n = block.shape[0]
    lower = block[(n - 1) // 2]
    upper = block[n // 2]
    for lane in range(LANES):
        a = lower[lane]
        b = upper[lane]
        med32[lane] = midpoint(a, b)
    for lane in range(LANES):
        c = count[lane]
        if c < n:
            value = np.float32(0.0)  # no valid sample: centre 0, as the core
            if c > 0:
                a = block[(c - 1) // 2, lane]
                b = block[c // 2, lane]
                value = midpoint(a, b)
            med32[lane] = value
            for k in range(c, n):
                block[k, lane] = value
    for lane in range(LANES):
        med[lane] = np.float64(med32[lane])
        acc1[lane] = 0.0
        acc2[lane] = 0.0
    for k in range(n):
        brow = block[k]
        for lane in range(LANES):
            d = np.float64(brow[lane]) - med[lane]
            acc1[lane] += d
            acc2[lane] += d * d
    for lane in range(m):
        centre[base + lane] = med32[lane]
        sums[base + lane, 0] = acc1[lane]
        sums[base + lane, 1] = acc2[lane]


@jit
def count_valid(src, r0, r1, gain, offset, normalise, n_valid):
    """Count the valid samples per position from the frames, by the rule of :func:`gather_sorted`.

    Parameters
    ----------
    src : ndarray, shape (N, H, Q), float32, C-contiguous
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
    """
    n, _, q = src.shape
    for i in range(r0, r1):
        for j in range(q):
            count = 0
            for k in range(n):
                v = src[k, i, j]
                y = np.float32(np.float32(v * gain[k, j]) + offset[k, j]) if normalise else v
                count += ((v - v) == 0) & (y == y)
            n_valid[(i - r0) * q + j] = count


def _ranges(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.int64)


# One wrapper per rejection: ``(s, n_valid, config, centre, sums) -> Kept``. ``centre`` and
# ``sums`` are the gather's medians and centred sums (``sums`` empty when it took none).
def _reject_none(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    zeros = np.zeros_like(n_valid)
    return Kept(zeros, n_valid, zeros)


def _reject_kappa_sigma(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray,
                        sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    kept_sum = np.empty(n_valid.shape[0], np.float64)
    # κ as float32: the core forms the bounds c ± κ·σ in float32 (NumPy's weak scalars).
    kappa_sigma_rows(s, n_valid, np.float32(config.kappa_low), np.float32(config.kappa_high), config.sigma_ddof,
                     config.effective_max_iters(), config.min_survivors, lo, hi, it, centre, kept_sum, sums)
    return Kept(lo, hi, it, centre, kept_sum)


def _reject_wsc(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    kept_sum = np.empty(n_valid.shape[0], np.float64)
    wsc = wsc_pixinsight_rows if config.wsc_impl == "pixinsight" else wsc_rows
    wsc(s, n_valid, float(config.kappa_low), float(config.kappa_high), config.effective_max_iters(),
        config.min_survivors, lo, hi, it, centre, kept_sum, sums)
    return Kept(lo, hi, it, centre, kept_sum)


def _reject_percentile(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray,
                       sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    percentile_rows(s, n_valid, np.float32(config.percentile_low), np.float32(config.percentile_high),
                    config.min_survivors, lo, hi, it)
    return Kept(lo, hi, it)


def _reject_mad(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    mad_rows(s, n_valid, np.float32(config.kappa_low), np.float32(config.kappa_high), config.effective_max_iters(),
             config.min_survivors, lo, hi, it)
    return Kept(lo, hi, it)


def _reject_minmax(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    minmax_rows(n_valid, int(config.minmax_low), int(config.minmax_high), config.min_survivors, lo, hi, it)
    return Kept(lo, hi, it)


def _reject_gesd(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    n_frames = s.shape[1]
    fraction = float(config.gesd_outlier_fraction)
    lam = np.asarray(gesd_critical_values(n_frames, float(config.gesd_alpha)), np.float64)
    max_steps = min(int(math.floor(fraction * n_frames + FLOOR_SLACK)), max(n_frames - 2, 0))
    gesd_rows(s, n_valid, fraction, lam, max_steps, config.min_survivors, lo, hi, it)
    return Kept(lo, hi, it)


def _reject_linear_fit_clip(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray,
                            sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    split = np.empty(n_valid.shape[0], np.bool_)
    keep = np.empty(s.shape, np.bool_)  # written on split rows only
    linear_fit_clip_rows(s, n_valid, float(config.kappa_low), float(config.kappa_high), config.effective_max_iters(),
                         config.min_survivors, lo, hi, it, split, keep)
    return Kept(lo, hi, it, split=split, keep=keep)


def _reject_winsorized_quantile(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray,
                                sums: np.ndarray) -> Kept:
    lo, hi, it = _ranges(n_valid.shape[0])
    winsor = np.empty((n_valid.shape[0], 2), np.float32)
    low, high = config.winsor_limits
    winsorized_quantile_rows(s, n_valid, float(low), float(high), np.float32(config.kappa_low),
                             np.float32(config.kappa_high), config.min_survivors, lo, hi, it, winsor)
    return Kept(lo, hi, it, winsor=winsor if config.winsor_rewinsor else _NO_WINSOR)


def _reject_auto(s: np.ndarray, n_valid: np.ndarray, config: Any, centre: np.ndarray, sums: np.ndarray) -> Kept:
    # core/reject/auto.py: mad's ranges on rows with <= AUTO_MAD_MAX_N valid samples,
    # gesd's elsewhere; each kernel runs only on its own rows (both are per row, so the
    # result is the core's bit for bit).
    small = n_valid <= AUTO_MAD_MAX_N
    lo, hi, it = _ranges(n_valid.shape[0])
    for rows, reject in ((small, _reject_mad), (~small, _reject_gesd)):
        if rows.any():
            part = reject(np.ascontiguousarray(s[rows]), np.ascontiguousarray(n_valid[rows]), config, centre, sums)
            lo[rows], hi[rows], it[rows] = part.lo, part.hi, part.iterations
    return Kept(lo, hi, it)


#: The rejection of each algorithm name: a wrapper that runs its kernel on a band's sorted rows.
REJECTIONS = {
    "none": _reject_none,
    "kappa_sigma": _reject_kappa_sigma,
    "winsorized_sigma_clip": _reject_wsc,
    "percentile": _reject_percentile,
    "mad": _reject_mad,
    "minmax": _reject_minmax,
    "gesd": _reject_gesd,
    "linear_fit_clip": _reject_linear_fit_clip,
    "winsorized_quantile": _reject_winsorized_quantile,
    "auto": _reject_auto,
}
#: Codes of the supported algorithms (``none`` is 0).
REJECT_CODES = {name: code for code, name in enumerate(REJECTIONS)}


def supports(config: Any, plan: Any) -> bool:
    """Tell whether :func:`stack_band` handles this configuration.

    Parameters
    ----------
    config : StackConfig
        The stack's methods.
    plan : FramePlan
        Its normalisation and weights.

    Returns
    -------
    bool
        True for unweighted stacks (no per-pixel, quality or radial weights) with any
        rejection of :data:`REJECT_CODES` and any combine of :data:`COMBINE_CODES`;
        False: the core's pipeline runs.
    """
    return (config.reject in REJECT_CODES and config.combine in COMBINE_CODES
            and plan.weights is None and not config.radial_weight)


def stack_band(src: np.ndarray, r0: int, r1: int, pairs: np.ndarray, config: Any, plan: Any,
               out: tuple[np.ndarray, ...]) -> tuple[int, int, int, int]:
    """Stack rows ``[r0, r1)`` into ``out``, as ``core.pipeline.stack_band`` would.

    Parameters
    ----------
    src : ndarray, shape (N, H, W, C), float32, C-contiguous
        The frames (or a band of them), frames first.
    r0, r1 : int
        The band's rows in ``src``.
    pairs : ndarray, shape (P, 2), int64
        Sorting network of N, or shape (0, 2) to sort with NumPy.
    config, plan : StackConfig, FramePlan
        A configuration that :func:`supports` accepts.
    out : tuple of ndarray, each shape (r1 − r0, W, C), C-contiguous
        Outputs: image, weight_sum (float32), coverage, rejected_low, rejected_high (int32),
        uncertainty (float32; an empty array: not computed).

    Returns
    -------
    tuple of int
        ``(iterations, n_valid, n_low, n_high)``: the max iterations over the band and
        its totals.

    Raises
    ------
    ValueError
        The result arrays are not C-contiguous.
    """
    if not all(a.flags.c_contiguous for a in out):
        msg = "the band's result arrays must be C-contiguous (rows of C-ordered results)"
        raise ValueError(msg)
    n, height, w, c = src.shape
    q = w * c
    flat = src.reshape(n, height, q)
    rows = (r1 - r0) * q
    s = np.empty((rows, n), np.float32)
    n_valid = np.empty(rows, np.int64)
    normalise = not plan.identity
    if normalise:
        # Per-channel gains repeated along the row: the kernel reads them like the data.
        gain = np.ascontiguousarray(np.tile(np.asarray(plan.gain, np.float32), (1, w)))
        offset = np.ascontiguousarray(np.tile(np.asarray(plan.offset, np.float32), (1, w)))
    else:
        gain = offset = np.zeros((n, q), np.float32)[:, :0]
    centre = np.empty(rows, np.float32)
    sums = np.empty((rows, 2), np.float64)
    overflow = gather_sorted(flat, r0, r1, gain, offset, normalise, pairs, s, n_valid, centre, sums)
    if pairs.shape[0] == 0:
        sums = NO_SUMS  # the rows were not sorted in the gather: the kernels sum them
        s.sort(axis=-1)  # NumPy's SIMD sort, in place; +inf (invalid) sorts last
        count_sorted(s, n_valid)
    if overflow:
        # A valid +inf was counted invalid: recount, and let the kernels redo the sums.
        count_valid(flat, r0, r1, gain, offset, normalise, n_valid)
        sums = NO_SUMS
    kept = REJECTIONS[config.reject](s, n_valid, config, centre, sums)
    views = [a.reshape(rows) for a in out[:5]]  # views: the kernel writes the results in place
    uncertainty = out[5].reshape(rows) if len(out) > 5 and out[5].size else _NO_F32
    counters = np.zeros(4, np.int64)
    se_factor = mean_variance_factor(config)
    # Sums of the survivors the band path already has: the gather's (every valid sample
    # survives "none"), or κ-σ's kept range (its kernel leaves them in `sums`).
    se_sums = sums if config.reject in ("none", "kappa_sigma") else NO_SUMS
    combine_ranges(s, n_valid, COMBINE_CODES[config.combine], *kept, flat, r0, gain, offset, normalise, *views,
                   counters, uncertainty, UNCERTAINTY_CODES.get(config.combine, 0), se_factor, se_sums)
    return tuple(int(v) for v in counters)
