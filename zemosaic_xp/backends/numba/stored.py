"""FITS samples as stored, decoded where the band kernels load them.

A 16-bit FITS image stores big-endian two's-complement integers whose value is
``stored·BSCALE + BZERO`` (BZERO = 32768 for the usual unsigned camera frames). The
classic band path can read those bytes as they are into a ``uint16`` block (no
conversion pass, half the bytes of float32) and let the kernels decode each sample
where they load it. :func:`frame_value` (one sample), :func:`frame_row` (a run of
one frame row) and :func:`valid_row` (the same, no data as ``+inf``) give the float32
value ``io.fits`` would have produced — the exact
cast, then ``·BSCALE`` in float32 when BSCALE ≠ 1, then ``+ BZERO`` in float32 when
BZERO ≠ 0 — so every result is the same bits as from the converted frames. On float32
frames both read the value as it is (``scaling`` unused).

All three are compiled into their callers (numba ``overload``, chosen by the frames'
dtype), so one kernel source serves float32 frames and stored 16-bit frames.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from .common import jit
from .constants import NO_SCALING

__all__ = ["NO_SCALING", "frame_value", "frame_row", "valid_row", "frame_rows"]

@jit
def _decode(v, bscale, bzero):
    """One stored big-endian int16 (read as native uint16) → its float32 value."""
    # (A plain function that LLVM inlines: numba's own inlining trips on its branches.)
    y = _signed(v)
    if bscale != 1.0:
        y = np.float32(y * bscale)
    if bzero != 0.0:
        y = np.float32(y + bzero)
    return y


@jit
def _signed(v):
    """The big-endian int16 held in native uint16 ``v``, byte-swapped, as float32 (exact)."""
    return np.float32(np.int16(np.uint16((v << 8) | (v >> 8))))


def frame_value(src, k, i, j, scaling):
    """Return sample ``src[k, i, j]`` as float32 (compiled into numba callers).

    Parameters
    ----------
    src : ndarray, shape (N, H, Q), float32 or uint16 (stored big-endian int16)
        The frames.
    k, i, j : int
        Frame, row and position.
    scaling : ndarray, shape (N, 2), float32
        Each frame's ``(BSCALE, BZERO)`` for stored frames; ignored for float32.

    Returns
    -------
    float32
        The value, decoded for stored frames.
    """
    if src.dtype == np.uint16:
        return _decode.py_func(src[k, i, j], scaling[k, 0], scaling[k, 1])
    return src[k, i, j]


def frame_row(src, k, i, j0, m, scaling, scratch):
    """Return positions ``[j0, j0 + m)`` of row ``i`` of frame ``k`` as float32 (compiled into callers).

    Parameters
    ----------
    src : ndarray, shape (N, H, Q), float32 or uint16 (stored big-endian int16)
        The frames.
    k, i : int
        Frame and row.
    j0, m : int
        First position and count.
    scaling : ndarray, shape (N, 2), float32
        Each frame's ``(BSCALE, BZERO)`` for stored frames; ignored for float32.
    scratch : ndarray, shape (>= m,), float32
        Where stored frames are decoded to.

    Returns
    -------
    ndarray, shape (m,), float32
        A view of ``src`` for float32 frames; ``scratch[:m]`` holding the decoded
        values for stored frames.
    """
    if src.dtype == np.uint16:
        for lane in range(m):
            scratch[lane] = frame_value(src, k, i, j0 + lane, scaling)
        return scratch[:m]
    return src[k, i, j0:j0 + m]


def valid_row(src, k, i, j0, m, scaling, out):
    """Write positions ``[j0, j0 + m)`` of row ``i`` of frame ``k`` to ``out[:m]``, no data as ``+inf``.

    Parameters
    ----------
    src : ndarray, shape (N, H, Q), float32 or uint16 (stored big-endian int16)
        The frames.
    k, i : int
        Frame and row.
    j0, m : int
        First position and count.
    scaling : ndarray, shape (N, 2), float32
        Each frame's ``(BSCALE, BZERO)`` for stored frames; ignored for float32.
    out : ndarray, shape (>= m,), float32
        Output: the values; a non-finite float32 value (no data) becomes ``+inf``
        (a stored integer is always finite).
    """
    row = frame_row(src, k, i, j0, m, scaling, out)
    for lane in range(m):
        v = row[lane]
        out[lane] = v if np.isfinite(v) else np.float32(np.inf)


def frame_rows(src, i, scaling, rowbuf):
    """Return row ``i`` of every frame as float32: ``(frames, row)`` to index as ``frames[k, row, j]``.

    For a gather that reads a whole frame row a few samples at a time: stored frames
    are decoded one full row per frame at once (long loops, vectorised), not 32
    samples at a time.

    Parameters
    ----------
    src : ndarray, shape (N, H, Q), float32 or uint16 (stored big-endian int16)
        The frames.
    i : int
        The row.
    scaling : ndarray, shape (N, 2), float32
        Each frame's ``(BSCALE, BZERO)`` for stored frames; ignored for float32.
    rowbuf : ndarray, shape (N, 1, Q), float32
        Where stored rows are decoded to (any shape for float32 frames).

    Returns
    -------
    frames : ndarray, shape (N, ·, Q), float32
        ``src`` itself for float32 frames, ``rowbuf`` holding the decoded row for
        stored frames.
    row : int
        ``i``, or 0 in ``rowbuf``.
    """
    if src.dtype == np.uint16:
        for k in range(src.shape[0]):
            frame_row(src, k, i, 0, src.shape[2], scaling, rowbuf[k, 0])
        return rowbuf, 0
    return src, i


@overload(frame_value, inline="always")
def _frame_value(src, k, i, j, scaling):
    if isinstance(src, types.Array) and src.dtype == types.uint16:
        def stored(src, k, i, j, scaling):
            return _decode(src[k, i, j], scaling[k, 0], scaling[k, 1])
        return stored

    def as_is(src, k, i, j, scaling):
        return src[k, i, j]
    return as_is


@overload(frame_row, inline="always")
def _frame_row(src, k, i, j0, m, scaling, scratch):
    if isinstance(src, types.Array) and src.dtype == types.uint16:
        def stored(src, k, i, j0, m, scaling, scratch):
            srow = src[k, i, j0:j0 + m]
            bscale, bzero = scaling[k, 0], scaling[k, 1]
            if bscale == 1.0:  # the usual case, as one loop LLVM vectorises (x + 0 = x for an integer)
                for lane in range(m):
                    scratch[lane] = np.float32(_signed(srow[lane]) + bzero)
            else:
                for lane in range(m):
                    scratch[lane] = _decode(srow[lane], bscale, bzero)
            return scratch[:m]
        return stored

    def as_is(src, k, i, j0, m, scaling, scratch):
        return src[k, i, j0:j0 + m]
    return as_is


@overload(valid_row, inline="always")
def _valid_row(src, k, i, j0, m, scaling, out):
    if isinstance(src, types.Array) and src.dtype == types.uint16:
        def stored(src, k, i, j0, m, scaling, out):
            frame_row(src, k, i, j0, m, scaling, out)  # decoded straight into out: all finite
        return stored

    def as_is(src, k, i, j0, m, scaling, out):
        srow = src[k, i, j0:j0 + m]
        inf = np.float32(np.inf)
        for lane in range(m):
            v = srow[lane]
            out[lane] = v if (v - v) == 0 else inf  # (v − v) is NaN for ±inf, NaN
    return as_is


@overload(frame_rows, inline="always")
def _frame_rows(src, i, scaling, rowbuf):
    if isinstance(src, types.Array) and src.dtype == types.uint16:
        def stored(src, i, scaling, rowbuf):
            for k in range(src.shape[0]):
                frame_row(src, k, i, 0, src.shape[2], scaling, rowbuf[k, 0])
            return rowbuf, 0
        return stored

    def as_is(src, i, scaling, rowbuf):
        return src, i
    return as_is
