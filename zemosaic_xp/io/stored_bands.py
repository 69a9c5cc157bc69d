"""16-bit FITS frames read as stored, for the kernels that decode them as they load them.

The usual camera frame is BITPIX 16 with BZERO 32768. Converting it to float32 before
stacking writes (and the kernels then re-read) twice its bytes; the numba band kernels
instead take the file's bytes as they are (:mod:`zemosaic_xp.backends.numba.stored`)
and produce the same float32 values where they load each sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .bands import FitsSource

__all__ = ["stored_scalings", "read_stored_frames_first"]


def stored_scalings(sources: Sequence[Any]) -> np.ndarray | None:
    """Each frame's ``(BSCALE, BZERO)`` when all can be read as stored, else None.

    Parameters
    ----------
    sources : sequence of N sources
        The frames (:func:`open_sources`, possibly wrapped).

    Returns
    -------
    ndarray, shape (N, 2), float32, or None
        When every source is a plain :class:`FitsSource` of a 16-bit image with
        contiguous rows (:func:`read_stored_frames_first` serves them); None for any
        other source (arrays, masked or weighted sources, other BITPIX, channel planes).
    """
    rows = []
    for source in sources:
        scaling = source.stored_scaling if type(source) is FitsSource and source.ivar is None else None
        if scaling is None:
            return None
        rows.append(scaling)
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), 2)


def read_stored_frames_first(sources: Sequence[FitsSource], r0: int, r1: int) -> np.ndarray:
    """Read rows ``[r0, r1)`` of every frame as stored: 16-bit big-endian bytes, frames first.

    The numba band kernels decode them where they load them
    (:mod:`zemosaic_xp.backends.numba.stored`): no float32 copy of the frames.

    Parameters
    ----------
    sources : sequence of N FitsSource
        Frames that :func:`stored_scalings` accepts.
    r0, r1 : int
        Row range, ``0 <= r0 < r1 <= H``.

    Returns
    -------
    ndarray, shape (N, r1 - r0, W, C), uint16
        The bytes of each frame's rows, unswapped.
    """
    first = sources[0]
    band = np.empty((len(sources), r1 - r0, first.width * first.channels), dtype=np.uint16)
    for i, source in enumerate(sources):
        source.read_stored_rows(r0, r1, band[i])
    return band.reshape(len(sources), r1 - r0, first.width, first.channels)
