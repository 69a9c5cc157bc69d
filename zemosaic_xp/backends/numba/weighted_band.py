"""Weighted bands and blocks through the numba kernels: the Python side of :mod:`.weighted`.

:func:`stack_band_weighted` (frames-first bands: ``stack()``, classic master tiles) and
:func:`stack_block` (samples-last blocks: grid cells) gather each sample's key and
weight (:func:`~.weighted.gather_keys`, :func:`~.weighted.gather_key_rows`), sort the
keys, run the rejection on the values (:data:`~.rejections.REJECTIONS`) and combine
with the weights (:func:`~.weighted.combine_weighted`). It imports no numba: the kernels
come from :func:`~.aot.entry`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core.uncertainty import mean_variance_factor
from ...core.weights import radial_weight_map
from .aot import entry
from .constants import COMBINE_CODES, NO_SUMS, UNCERTAINTY_CODES
from .rejections import NO_F32, REJECTIONS

__all__ = ["frame_weight_rows", "normalisation_rows", "stack_band_weighted", "stack_block"]


def frame_weight_rows(plan: Any, n: int, w: int) -> np.ndarray:
    """The plan's ``(N, C)`` frame weights repeated along a row, ``(N, W·C)`` float32 (or ``(N, 0)``).

    Parameters
    ----------
    plan : FramePlan
        Its ``weights`` (None: no frame weight).
    n, w : int
        Frames and row width.

    Returns
    -------
    ndarray
        C-contiguous float32, in the order of a frame row's interleaved channels.
    """
    if plan.weights is None:
        return np.zeros((n, 0), np.float32)
    return np.ascontiguousarray(np.tile(np.asarray(plan.weights, np.float32), (1, w)))


def normalisation_rows(plan: Any, n: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel gains and offsets repeated along the row (the kernels read them like the data).

    Parameters
    ----------
    plan : FramePlan
        Its ``(N, C)`` ``gain`` and ``offset`` and ``identity``.
    n, w : int
        Frames and row width.

    Returns
    -------
    gain : ndarray, shape (N, W·C), float32, C-contiguous
        Shape (N, 0) for the identity normalisation (the kernels then skip it).
    offset : ndarray
        The offsets, the same way.
    """
    if plan.identity:
        empty = np.zeros((n, 0), np.float32)
        return empty, empty
    gain = np.ascontiguousarray(np.tile(np.asarray(plan.gain, np.float32), (1, w)))
    offset = np.ascontiguousarray(np.tile(np.asarray(plan.offset, np.float32), (1, w)))
    return gain, offset


def stack_band_weighted(flat: np.ndarray, r0: int, r1: int, pairs: np.ndarray, config: Any, plan: Any,
                         out: tuple[np.ndarray, ...], w: int, c: int, row_start: int, full_height: int,
                         pixel_weights: np.ndarray | None, scaling: np.ndarray) -> tuple[int, int, int, int]:
    """:func:`~.band.stack_band` with weights: keys sorted with their frames (:mod:`.weighted`).

    Parameters
    ----------
    flat : ndarray, shape (N, H, W·C), float32 or uint16 (stored), C-contiguous
        The frames (or a band of them), each row's channels interleaved.
    r0, r1 : int
        The band's rows in ``flat``.
    pairs : ndarray, shape (P, 2), int64
        Sorting network of N, or shape (0, 2) to sort with NumPy.
    config, plan : StackConfig, FramePlan
        The stack's methods; normalisation and frame weights.
    out : tuple of ndarray, each shape (r1 − r0, W, C), C-contiguous
        The six results, as :func:`~.band.stack_band`.
    w, c : int
        Frame width and channels.
    row_start, full_height : int
        Frame row of the band's first row and frame height: where the radial map is
        evaluated (``config.radial_weight``).
    pixel_weights : ndarray, shape (N, r1 − r0, W, C or 1), or None
        Per-pixel weights of the band's rows.
    scaling : ndarray, shape (N, 2) or (0, 2), float32
        ``(BSCALE, BZERO)`` of stored 16-bit frames (:mod:`.stored`).

    Returns
    -------
    tuple of int
        ``(iterations, n_valid, n_low, n_high)`` of the band.
    """
    n, _, q = flat.shape
    rows = (r1 - r0) * q
    gain, offset = normalisation_rows(plan, n, w)
    fw = frame_weight_rows(plan, n, w)
    if pixel_weights is None:
        pw, pw_ch = np.zeros((n, 0, 0), np.float32), c
    else:
        pw_ch = int(pixel_weights.shape[-1])
        pw = np.ascontiguousarray(pixel_weights, dtype=np.float32).reshape(n, r1 - r0, w * pw_ch)
    radial = np.zeros((0, 0), np.float32)
    if config.radial_weight:
        radial = np.ascontiguousarray(radial_weight_map(
            r1 - r0, w, row_start=row_start, full_height=full_height, col_start=0, full_width=w,
            feather_fraction=config.radial_feather_fraction, shape_power=config.radial_shape_power,
            floor=config.radial_floor, xp=_np_xp()), dtype=np.float32)
    bufs = _buffers(rows, n, pairs)
    gather_keys = entry("gather_keys")
    overflow = gather_keys(flat, r0, r1, gain, offset, not plan.identity, scaling, fw, pw, pw_ch, radial, c,
                           pairs, *bufs)
    return _reject_combine_weighted(bufs, overflow, pairs, config, out)


def stack_block(values: np.ndarray, weights: np.ndarray | None, pairs: np.ndarray, config: Any, plan: Any,
                out: tuple[np.ndarray, ...]) -> tuple[int, int, int, int]:
    """Stack one block in the samples-last layout (a grid cell), as ``core.pipeline.stack_band``.

    Parameters
    ----------
    values : ndarray, shape (h, w, C, N), float32
        The block's samples, frames last; NaN = no data.
    weights : ndarray, shape (h, w, C, N) or (h, w, 1, N), float32, or None
        Per-pixel weights (not > 0 or not finite: no data).
    pairs : ndarray, shape (P, 2), int64
        Sorting network of N, or shape (0, 2) to sort with NumPy.
    config, plan : StackConfig, FramePlan
        A configuration that :func:`supports` accepts (no radial weight: a grid puts it
        in the pixel weights), and the plan of these N frames.
    out : tuple of ndarray, each shape (h, w, C), C-contiguous
        Outputs, as :func:`stack_band`.

    Returns
    -------
    tuple of int
        ``(iterations, n_valid, n_low, n_high)`` of the block.

    Raises
    ------
    ValueError
        ``config.radial_weight`` is set (the block does not know its frame position).
    """
    if config.radial_weight:
        msg = "stack_block takes no radial weight: put the radial map in the pixel weights"
        raise ValueError(msg)
    h, w, c, n = values.shape
    rows = h * w * c
    x = np.ascontiguousarray(values, dtype=np.float32).reshape(rows, n)
    if plan.identity:
        gain = offset = np.zeros((n, 0), np.float32)
    else:
        gain = np.ascontiguousarray(plan.gain, dtype=np.float32)
        offset = np.ascontiguousarray(plan.offset, dtype=np.float32)
    fw = np.zeros((n, 0), np.float32) if plan.weights is None else np.ascontiguousarray(plan.weights, np.float32)
    if weights is None:
        pw, pw_ch = np.zeros((0, n), np.float32), c
    else:
        pw_ch = int(weights.shape[2])
        pw = np.ascontiguousarray(weights, dtype=np.float32).reshape(h * w * pw_ch, n)
    bufs = _buffers(rows, n, pairs)
    gather_key_rows = entry("gather_key_rows")
    overflow = gather_key_rows(x, c, gain, offset, not plan.identity, fw, pw, pw_ch, pairs, *bufs)
    return _reject_combine_weighted(bufs, overflow, pairs, config, out)


def _buffers(rows: int, n: int, pairs: np.ndarray) -> tuple[np.ndarray, ...]:
    """``keys, wf, n_valid, s, idx, centre, sums`` of a gather (``keys`` only without a network)."""
    keys = np.empty((0 if pairs.shape[0] else rows, n), np.int64)
    return (keys, np.empty((rows, n), np.float32), np.empty(rows, np.int64), np.empty((rows, n), np.float32),
            np.empty((rows, n), np.int32), np.empty(rows, np.float32), np.empty((rows, 2), np.float64))


def _reject_combine_weighted(bufs: tuple[np.ndarray, ...], overflow: bool, pairs: np.ndarray, config: Any,
                             out: tuple[np.ndarray, ...]) -> tuple[int, int, int, int]:
    """Sort the keys (when no network did), reject on the values, combine with the weights."""
    keys, wf, n_valid, s, idx, centre, sums = bufs
    rows = s.shape[0]
    if pairs.shape[0] == 0:
        keys.sort(axis=-1)
        unpack_keys = entry("unpack_keys")
        unpack_keys(keys, s.view(np.int32), idx)
        sums = NO_SUMS  # the kernels take their medians and sums themselves
    if overflow:
        sums = NO_SUMS  # an infinite valid sample: the gather's sums are not the kernels'
    del keys
    kept = REJECTIONS[config.reject](s, n_valid, config, centre, sums)
    views = [a.reshape(rows) for a in out[:5]]
    uncertainty = out[5].reshape(rows) if len(out) > 5 and out[5].size else NO_F32
    counters = np.zeros(4, np.int64)
    combine_weighted = entry("combine_weighted")
    combine_weighted(s, idx, wf, n_valid, COMBINE_CODES[config.combine], kept.lo, kept.hi, kept.iterations,
                     kept.split, kept.keep, kept.winsor, *views, counters, uncertainty,
                     UNCERTAINTY_CODES.get(config.combine, 0), mean_variance_factor(config))
    return tuple(int(v) for v in counters)


def _np_xp() -> Any:
    from ..numpy_xp import numpy_namespace  # noqa: PLC0415 - the NumPy namespace, only for radial maps

    return numpy_namespace()
