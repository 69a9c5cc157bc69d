"""A uint16 copy of a mosaic for viewers (ZeMosaic's ``save_final_as_uint16``).

ZeMosaic can write its final mosaic a second time as 16-bit integers,
``mosaic_grid_viewer.fits`` beside the float32 ``mosaic_grid.fits``, for programs that
cannot read float FITS (``reference/upstream_spec.md`` §3.8). The conventions of that
file, which :func:`write_uint16_viewer` follows:

- the values map to 0–65535: data already in [0, 1] are multiplied by 65535, data in
  [0, 65535] are kept, anything else is stretched linearly from its finite minimum to its
  finite maximum; no-data (NaN) pixels become 0; values are rounded to the nearest integer;
- stored as FITS's unsigned 16-bit convention: ``BITPIX = 16`` with ``BZERO = 32768``,
  ``BSCALE = 1`` (readers get uint16 back);
- RGB images as three planes (C, H, W), mono as 2-D; cards ``ZEMORGB`` (RGB planes
  present), ``CHANNELS``, ``ZEMO16`` (True) and ``ZEMOLEG`` (legacy RGB cube).

The float mosaic stays the science product: the uint16 copy loses the values below one
step and the no-data mask.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from .atomic import atomic_path

__all__ = ["to_uint16", "write_uint16_viewer", "VIEWER_NAME"]

#: The file name ZeMosaic gives the uint16 copy of a grid mosaic.
VIEWER_NAME = "mosaic_grid_viewer.fits"
_U16_MAX = 65535.0


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Map an image to uint16 with ZeMosaic's viewer rules.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C)
        Any real dtype; NaN and ±inf mean no data.

    Returns
    -------
    ndarray of uint16, same shape
        [0, 1] → ×65535; [0, 65535] → as is; otherwise a linear stretch of the finite
        range onto [0, 65535] (a constant image gives 0). No data → 0. Rounded to nearest.
    """
    data = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, dtype=np.uint16)
    lo, hi = float(data[finite].min()), float(data[finite].max())
    if lo >= 0.0 and hi <= 1.0:
        scaled = data * _U16_MAX
    elif lo >= 0.0 and hi <= _U16_MAX:
        scaled = data
    else:
        scaled = (data - lo) * (_U16_MAX / (hi - lo)) if hi > lo else np.zeros_like(data)
    scaled = np.where(finite, scaled, 0.0)
    return np.clip(np.floor(scaled + 0.5), 0.0, _U16_MAX).astype(np.uint16)


def write_uint16_viewer(path: str | os.PathLike, image: np.ndarray, *, header: fits.Header | None = None,
                        legacy_rgb_cube: bool = False) -> Path:
    """Write the uint16 viewer copy of a mosaic, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file (``mosaic_grid_viewer.fits`` beside the mosaic).
    image : ndarray, (H, W), (H, W, 1) or (H, W, 3)
        The float mosaic, HWC; NaN = no data.
    header : astropy.io.fits.Header, optional
        Cards to keep (the WCS, provenance); the data-description cards are set here.
    legacy_rgb_cube : bool
        Recorded in ``ZEMOLEG``.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        ``image`` is not 2-D or HWC with 1 or 3 channels.
    zemosaic_xp.io.atomic.FileWriteError
        No room to write it (the message names the file).
    """
    data = np.asarray(image)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if not (data.ndim == 2 or (data.ndim == 3 and data.shape[-1] == 3)):
        msg = f"`image` must be (H, W) or (H, W, 3), got shape {data.shape}"
        raise ValueError(msg)
    u16 = to_uint16(data)
    rgb = u16.ndim == 3
    planes = np.moveaxis(u16, -1, 0) if rgb else u16
    hdr = fits.Header()
    if header is not None:
        for card in header.cards:
            key = card.keyword
            if key and not key.startswith("NAXIS") and key not in ("BITPIX", "BZERO", "BSCALE", "DATAMIN",
                                                                   "DATAMAX", "SIMPLE", "EXTEND"):
                hdr.append(card)
    hdr["ZEMORGB"] = (rgb, "RGB planes present")
    hdr["CHANNELS"] = (3 if rgb else 1, "number of colour channels")
    hdr["ZEMO16"] = (True, "uint16 viewer copy (int16 + BZERO 32768)")
    hdr["ZEMOLEG"] = (bool(legacy_rgb_cube), "legacy RGB cube mode")
    hdu = fits.PrimaryHDU(data=np.ascontiguousarray(planes), header=hdr)  # astropy writes uint16 with BZERO
    path = Path(path)
    with atomic_path(path) as tmp:
        fits.HDUList([hdu]).writeto(tmp, overwrite=True, output_verify="silentfix")
    return path
