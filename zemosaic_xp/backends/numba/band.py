"""Whole bands on the NumPy backend with numba: frames in, results out.

(Weighted stacks — quality, user frame, per-pixel or radial weights — take the same
entry, :func:`stack_band`, and go through :mod:`.weighted_band`.) For unweighted
stacks — the identity or a gain/offset normalisation, any rejection, any of the
combines — the general pipeline of ``core/pipeline.py`` costs more around the
rejection than in it: a transposing band copy, a NaN pass, a copy for the sort,
some 25 vector passes over the band's pixels to combine and count, and a
concatenation of the bands. Here (``NumpyOps.band_stacker``) a band goes through
three compiled steps instead:

1. :func:`~.gather.gather_sorted` reads the band's samples straight from the frames,
   normalised, invalid as ``+inf``, sorted by pixel (a sorting network for N <= 48,
   else NumPy's SIMD sort afterwards), with each pixel's valid count, median and
   centred sums (:mod:`.gather`);
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

This module is glue and imports no numba: it calls the kernels through
:func:`~.aot.entry`, compiled ahead of time where built, numba's JIT otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core.uncertainty import mean_variance_factor
from ..select_numpy import middle_ranks_in_place
from .aot import entry
from .constants import COMBINE_CODES, NO_SCALING, NO_SUMS, UNCERTAINTY_CODES
from .rejections import NO_F32 as _NO_F32
from .rejections import REJECT_CODES, REJECTIONS, Kept
from .weighted_band import normalisation_rows, stack_band_weighted, stack_block

__all__ = ["supports", "stack_band", "stack_block", "COMBINE_CODES", "REJECT_CODES", "REJECTIONS", "Kept"]


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
               scaling: np.ndarray | None = None, keep_rows: bool = False) -> tuple[int, int, int, int]:
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
    keep_rows : bool
        Keep the sorted rows even where the gather's medians are the result (``reject
        = "none"``, ``combine = "median"``, with a network: by default they are not
        stored, :func:`~.combine.median_of_gather`); the recount after an overflow sets it.

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
    # The median of every valid sample is the network's own median: no sorted rows kept.
    median_only = config.reject == "none" and config.combine == "median" and pairs.shape[0] > 0 and not keep_rows
    s = np.empty((0 if median_only else rows, n), np.float32)
    n_valid = np.empty(rows, np.int64)
    normalise = not plan.identity
    gain, offset = normalisation_rows(plan, n, w)
    centre = np.empty(rows, np.float32)
    sums = np.empty((rows, 2), np.float64)
    rowbuf = np.empty((n if scaling.shape[0] else 0, 1, q), np.float32)  # stored frames, decoded by row
    gather_sorted = entry("gather_sorted")
    overflow = gather_sorted(flat, r0, r1, gain, offset, normalise, pairs, s, n_valid, centre, sums, scaling, rowbuf)
    want_se = len(out) > 5 and out[5].size > 0
    if median_only:
        if overflow:  # a valid +inf counted invalid: the general path recounts from sorted rows
            return stack_band(src, r0, r1, pairs, config, plan, out, row_start=row_start, full_height=full_height,
                              scaling=None if scaling is NO_SCALING else scaling, keep_rows=True)
        counters = np.zeros(4, np.int64)
        median_of_gather = entry("median_of_gather")
        median_of_gather(n_valid, centre, sums, *(a.reshape(rows) for a in out[:5]), counters,
                         out[5].reshape(rows) if want_se else _NO_F32, UNCERTAINTY_CODES["median"])
        return tuple(int(v) for v in counters)
    # κ-σ and the PixInsight WSC leave their kept ranges' Σd, Σd² in `sums` (given the medians).
    kept_sums = config.reject == "kappa_sigma" or (config.reject == "winsorized_sigma_clip"
                                                    and config.wsc_impl == "pixinsight")
    if pairs.shape[0] == 0:
        if config.reject == "none" and config.combine == "median" and not overflow and middle_ranks_in_place(s):
            pass  # every sample valid: the two middle ranks selected, not the whole row sorted
        else:
            s.sort(axis=-1)  # NumPy's SIMD sort, in place; +inf (invalid) sorts last
        if config.reject == "kappa_sigma" or (want_se and (kept_sums or (config.reject == "none"
                                                                        and config.combine == "median"))):
            # κ-σ starts from these sums; it and the WSC leave their kept range's in them
            # (the WSC given the medians); the median of every valid sample is their
            # centre: the standard error then costs no pass of its own (combine_ranges'
            # se_sums).
            count_sorted_sums = entry("count_sorted_sums")
            count_sorted_sums(s, n_valid, centre, sums)
        else:
            sums = NO_SUMS  # the rows were not sorted in the gather: the kernels sum them
            count_sorted = entry("count_sorted")
            count_sorted(s, n_valid)
    if overflow:
        # A valid +inf was counted invalid: recount, and let the kernels redo the sums.
        count_valid = entry("count_valid")
        count_valid(flat, r0, r1, gain, offset, normalise, n_valid, scaling)
        sums = NO_SUMS
    kept = REJECTIONS[config.reject](s, n_valid, config, centre, sums)
    views = [a.reshape(rows) for a in out[:5]]  # views: the kernel writes the results in place
    uncertainty = out[5].reshape(rows) if want_se else _NO_F32
    counters = np.zeros(4, np.int64)
    se_factor = mean_variance_factor(config)
    # Sums of the survivors the band path already has: the gather's (every valid sample
    # survives "none"), or the kept range's that κ-σ and the PixInsight WSC leave in `sums`.
    se_sums = sums if config.reject == "none" or kept_sums else NO_SUMS
    combine_ranges = entry("combine_ranges")
    combine_ranges(s, n_valid, COMBINE_CODES[config.combine], *kept, flat, r0, gain, offset, normalise, scaling, *views,
                   counters, uncertainty, UNCERTAINTY_CODES.get(config.combine, 0), se_factor, se_sums)
    return tuple(int(v) for v in counters)
