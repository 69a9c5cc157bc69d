"""A dependency-free 8-bit PNG writer (grey or RGB) for previews."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .atomic import atomic_path

__all__ = ["write_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# zlib level 3 (deflate's greedy matcher): 3-4x faster than the default 6 on mosaic
# previews (noisy sky, grey RGB triplets) and the files came out smaller, not larger
# (small survey: 0.14 -> 0.04 s, 508 -> 469 kB; issue 14).
_ZLIB_LEVEL = 3


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: str | os.PathLike, pixels: np.ndarray) -> Path:
    """Write ``pixels`` as a PNG file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        File to write; it is replaced only once the whole PNG is on disk.
    pixels : ndarray, shape (H, W) or (H, W, 3), uint8
        Grey or RGB values on the host; row 0 is the top row of the picture.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        ``pixels`` is not uint8 of shape (H, W) or (H, W, 3).
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        msg = f"`pixels` must be uint8 of shape (H, W) or (H, W, 3), got {pixels.dtype} {pixels.shape}"
        raise ValueError(msg)
    height, width = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(raw, _ZLIB_LEVEL)
    data = _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
