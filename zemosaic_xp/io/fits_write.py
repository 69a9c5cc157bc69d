"""FITS frames out: :func:`write_fits`, float32 CHW, atomically.

:func:`write_fits` writes float32 CHW (2-D for one channel) with optional ``ALPHA``
and extra image HDUs to a temporary name in the target directory, then renames it: a
crash never leaves a half-written file under the final name. Reading is
:mod:`zemosaic_xp.io.fits`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
from astropy.io import fits

from .atomic import atomic_path

__all__ = ["write_fits", "uncertainty_hdu", "UNCERT_NAME"]

_ALPHA_NAME = "ALPHA"
#: Extension name of a standard-error map: astropy's ``CCDData.read`` default (``hdu_uncertainty``).
UNCERT_NAME = "UNCERT"


def _chw(image: np.ndarray, keep_cube: bool = False) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2 and keep_cube:
        return image[None]
    if image.ndim == 3:
        if image.shape[2] == 1:
            return image[None, ..., 0] if keep_cube else image[..., 0]
        return np.ascontiguousarray(np.moveaxis(image, -1, 0))
    if image.ndim == 2:
        return image
    msg = f"image has shape {image.shape}; expected (H, W) or (H, W, C)"
    raise ValueError(msg)


def uncertainty_hdu(uncertainty: np.ndarray, *, unit: str | None = None) -> fits.ImageHDU:
    """An ``UNCERT`` image HDU of standard errors, as astropy's ``CCDData.write`` makes it.

    Parameters
    ----------
    uncertainty : ndarray, shape (H, W) or (H, W, C)
        Standard error (1σ) of each pixel of the image it goes with; NaN = unknown.
    unit : str, optional
        The image's unit, written as ``BUNIT``.

    Returns
    -------
    astropy.io.fits.ImageHDU
        The map as float32 in the image's axis order (CHW, 2-D for one channel), ``EXTNAME =
        UNCERT`` and ``UTYPE = StdDevUncertainty``: ``CCDData.read`` returns it as a
        ``StdDevUncertainty``.
    """
    hdu = fits.ImageHDU(data=_chw(uncertainty), name=UNCERT_NAME)
    hdu.header["UTYPE"] = ("StdDevUncertainty", "standard error (1 sigma) of each pixel")
    if unit is not None:
        hdu.header["BUNIT"] = str(unit)
    return hdu


def write_fits(path: str | os.PathLike, image: np.ndarray, *, header: fits.Header | None = None,
               alpha: np.ndarray | None = None, extra_hdus: Iterable[fits.ImageHDU] = (),
               overwrite: bool = True, keep_cube: bool = False) -> Path:
    """Write ``image`` atomically as float32 FITS (CHW, or 2-D for one channel).

    Parameters
    ----------
    path : str or os.PathLike
        Final file name; the data are written to a temporary file in the same
        directory and renamed over it at the end.
    image : ndarray, shape (H, W) or (H, W, C)
        Host array, converted to float32; NaN is written as NaN ("no data").
    header : Header, optional
        Cards for the primary HDU (WCS, provenance); structural keys are replaced.
    alpha : ndarray, shape (H, W), optional
        Coverage in [0, 1] (float) or 0–255 (uint8); written as a uint8 ``ALPHA`` HDU.
    extra_hdus : iterable of ImageHDU
        Appended after ALPHA (e.g. a ``WEIGHT`` map).
    overwrite : bool
        False refuses to replace an existing file.
    keep_cube : bool
        Write one channel as a (1, H, W) cube instead of 2-D (ZeMosaic's
        ``legacy_rgb_cube`` layout).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    FileExistsError
        The file exists and ``overwrite`` is False.
    ValueError
        ``image`` is neither (H, W) nor (H, W, C).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"'{path}' exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdr = fits.Header() if header is None else header.copy()
    for key in ("BSCALE", "BZERO", "BITPIX", "DATAMIN", "DATAMAX"):
        hdr.remove(key, ignore_missing=True, remove_all=True)
    hdus = [fits.PrimaryHDU(data=_chw(image, keep_cube), header=hdr)]
    if alpha is not None:
        a = np.asarray(alpha)
        if a.dtype != np.uint8:
            a = np.clip(np.round(np.nan_to_num(a.astype(np.float64)) * 255.0), 0, 255).astype(np.uint8)
        alpha_hdu = fits.ImageHDU(data=a, name=_ALPHA_NAME)
        alpha_hdu.header["ALPHADSC"] = ("0=no data, 255=full coverage", "ALPHA meaning")
        hdus.append(alpha_hdu)
    hdus.extend(extra_hdus)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True, output_verify="silentfix")
    return path
