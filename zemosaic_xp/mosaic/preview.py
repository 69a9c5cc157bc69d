"""The PNG preview of a mosaic: a NaN-aware block mean, then a per-channel asinh stretch.

:func:`astropy.nddata.block_reduce` (with ``numpy.nanmean``) shrinks the image to at
most ``max_size_px`` on its long side; each channel is then mapped from its 0.5–99.8
percentile interval through an asinh stretch: the arithmetic of astropy's
``AsymmetricPercentileInterval`` and ``AsinhStretch`` written out in NumPy, step for
step and bit for bit (``tests/mosaic/test_preview.py`` checks it against astropy),
because importing :mod:`astropy.visualization` imports matplotlib (about 0.35 s of CPU in a
7 s grid run, issue 14). The preview is for looking at, not for measuring: it is
written beside the FITS outputs and nothing reads it back.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..io.png import write_png

__all__ = ["write_preview_png"]

# Black and white points: percentiles of each channel's finite pixels.
_PERCENTILES = (0.5, 99.8)
# astropy's AsinhStretch(a): linear below ~a of the interval, logarithmic above;
# 0.1 lifts faint nebulosity without burning the stars.
_ASINH_A = 0.1
# Block rows reduced at once by the preview's block mean.
_STRIP_BLOCKS = 64


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """NaN-aware ``factor × factor`` block mean of (H, W, C); NaN where a block is empty.

    The image is padded with NaN to a multiple of ``factor`` first (``block_reduce``
    alone would trim the last partial blocks): the preview keeps every edge pixel.
    """
    if factor <= 1:
        return image
    from astropy.nddata import block_reduce  # here: a mosaic within max_size_px does without it

    h, w, c = image.shape
    out = np.empty((-(-h // factor), -(-w // factor), c), np.float32)
    # A strip of block rows at a time: the padded copy and nanmean's temporaries exist
    # for one strip, not for the whole mosaic (each block is reduced the same way).
    strip = factor * _STRIP_BLOCKS
    for r0 in range(0, h, strip):
        part = image[r0:r0 + strip]
        pad = ((0, -part.shape[0] % factor), (0, -w % factor), (0, 0))
        padded = np.pad(part, pad, constant_values=np.nan)
        with warnings.catch_warnings():
            # An all-NaN block (sky no tile covers) is routine; nanmean gives it NaN.
            warnings.simplefilter("ignore", RuntimeWarning)
            out[r0 // factor:(r0 + part.shape[0] + factor - 1) // factor] = block_reduce(
                padded, (factor, factor, 1), func=np.nanmean)
    return out


def _stretch_channel(chan: np.ndarray) -> np.ndarray:
    """One channel (H, W) with finite pixels through the interval and the stretch; a new array.

    astropy's ``AsinhStretch(a)(AsymmetricPercentileInterval(*_PERCENTILES)(chan))``,
    operation for operation with the same operands, so each step computes in the
    dtype NumPy's promotion gives astropy (the last division in float64, stored back
    into the channel's dtype) and the pixels are astropy's to the bit.
    """
    # overwrite_input: the finite values are a copy already; percentile need not copy them again.
    vmin, vmax = np.percentile(chan[np.isfinite(chan)], _PERCENTILES, overwrite_input=True)
    values = np.subtract(chan, float(vmin))
    if (vmax - vmin) != 0:
        np.true_divide(values, vmax - vmin, out=values)
    np.clip(values, 0.0, 1.0, out=values)
    np.true_divide(values, _ASINH_A, out=values)
    np.arcsinh(values, out=values)
    np.true_divide(values, np.arcsinh(1.0 / _ASINH_A), out=values)
    return values


def _stretch(image: np.ndarray) -> np.ndarray:
    """Each channel through its percentile interval and the asinh stretch, into [0, 1]; NaN → 0."""
    out = np.zeros(image.shape, dtype=np.float32)
    for c in range(image.shape[2]):
        chan = image[..., c]
        finite = np.isfinite(chan)
        if finite.any():
            np.copyto(out[..., c], _stretch_channel(chan), where=finite)  # out is 0 elsewhere
    return out


def write_preview_png(image: np.ndarray, path: str | os.PathLike, *, max_size_px: int = 2048) -> Path:
    """Write an asinh-stretched 8-bit PNG preview of a mosaic, atomically.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C), float
        C = 1 gives a grey image, C = 3 RGB; NaN = no data (black).
    path : str or path-like
        The PNG to write.
    max_size_px : int
        Larger images are block-averaged (NaN-aware) down to at most this long side:
        ``ceil(H / f) × ceil(W / f)`` pixels with ``f = ceil(max(H, W) / max_size_px)``.

    Returns
    -------
    Path
        The written file. Row 0 of ``image`` is the bottom row of the PNG (FITS
        convention, as in ``imshow(origin="lower")``).

    Raises
    ------
    ValueError
        ``image`` is not 2-D or 3-D.
    """
    from .assemble import as_hwc  # assemble imports this module

    img = as_hwc(image, "image")
    factor = max(1, -(-max(img.shape[:2]) // max_size_px))
    rgb = _stretch(_block_mean(img, factor))
    rgb = rgb[..., :3]
    rgb *= np.float32(255.0)  # in place: the scaled copy of the preview was its largest array
    np.round(rgb, out=rgb)
    pixels = rgb[::-1].astype(np.uint8)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)  # grey as RGB, repeated as bytes, not as floats
    return write_png(path, pixels)
