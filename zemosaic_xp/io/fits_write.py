"""FITS frames out: :func:`write_fits`, float32 CHW, atomically.

:func:`write_fits` writes float32 CHW (2-D for one channel) with optional ``ALPHA``
and extra image HDUs to a temporary name in the target directory, then renames it: a
crash never leaves a half-written file under the final name. Reading is
:mod:`zemosaic_xp.io.fits`.

A header given as :class:`~.fits_cards.Cards` (or none) with extensions given as
:class:`~.fits_cards.ImageExtension` is written by the minimal writer of
:mod:`.fits_cards` when every card is a simple one, without importing astropy (the
same bytes astropy writes); astropy headers and HDUs, and any card the minimal writer
does not handle, go through ``astropy.io.fits``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from .atomic import atomic_path
from .fits_cards import Cards, ImageExtension, render_header, write_image_hdus

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io import fits

__all__ = ["write_fits", "uncertainty_hdu", "uncertainty_extension", "UNCERT_NAME"]

_ALPHA_NAME = "ALPHA"
#: Extension name of a standard-error map: astropy's ``CCDData.read`` default (``hdu_uncertainty``).
UNCERT_NAME = "UNCERT"
# Replaced by the data's own: removed from a given header.
_STRUCTURAL_KEYS = ("BSCALE", "BZERO", "BITPIX", "DATAMIN", "DATAMAX")


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


def uncertainty_extension(uncertainty: np.ndarray, *, unit: str | None = None) -> ImageExtension:
    """An ``UNCERT`` extension of standard errors for :func:`write_fits` (no astropy).

    Parameters
    ----------
    uncertainty : ndarray, shape (H, W) or (H, W, C)
        Standard error (1σ) of each pixel of the image it goes with; NaN = unknown.
    unit : str, optional
        The image's unit, written as ``BUNIT``.

    Returns
    -------
    ImageExtension
        What :func:`uncertainty_hdu` holds: float32 CHW data, ``EXTNAME = UNCERT``,
        ``UTYPE = StdDevUncertainty`` and ``BUNIT`` when a unit is given.
    """
    cards = Cards([("UTYPE", "StdDevUncertainty", "standard error (1 sigma) of each pixel")])
    if unit is not None:
        cards.set("BUNIT", str(unit))
    return ImageExtension(UNCERT_NAME, _chw(uncertainty), cards)


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
    return uncertainty_extension(uncertainty, unit=unit).to_astropy()


def _alpha_extension(alpha: Any) -> ImageExtension:
    a = np.asarray(alpha)
    if a.dtype != np.uint8:
        a = np.clip(np.round(np.nan_to_num(a.astype(np.float64)) * 255.0), 0, 255).astype(np.uint8)
    return ImageExtension(_ALPHA_NAME, a, Cards([("ALPHADSC", "0=no data, 255=full coverage", "ALPHA meaning")]))


def _render(image: np.ndarray, header: Cards, extras: list[ImageExtension]) -> list[tuple[bytes, np.ndarray]] | None:
    """Every HDU rendered by the minimal writer, or None when one needs astropy."""
    hdus = [(render_header(image, header.cards(), extend=bool(extras)), image)]
    hdus += [(render_header(ext.data, ext.cards.cards(), ext.name), ext.data) for ext in extras]
    return None if any(h is None for h, _ in hdus) else hdus


def write_fits(path: str | os.PathLike, image: np.ndarray, *, header: fits.Header | Cards | None = None,
               alpha: np.ndarray | None = None, extra_hdus: Iterable[fits.ImageHDU | ImageExtension] = (),
               overwrite: bool = True, keep_cube: bool = False) -> Path:
    """Write ``image`` atomically as float32 FITS (CHW, or 2-D for one channel).

    Parameters
    ----------
    path : str or os.PathLike
        Final file name; the data are written to a temporary file in the same
        directory and renamed over it at the end.
    image : ndarray, shape (H, W) or (H, W, C)
        Host array, converted to float32; NaN is written as NaN ("no data").
    header : astropy Header or Cards, optional
        Cards for the primary HDU (WCS, provenance); structural keys are replaced.
    alpha : ndarray, shape (H, W), optional
        Coverage in [0, 1] (float) or 0–255 (uint8); written as a uint8 ``ALPHA`` HDU.
    extra_hdus : iterable of ImageHDU or ImageExtension
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
    data = _chw(image, keep_cube)
    extras = list(extra_hdus)
    if alpha is not None:
        extras.insert(0, _alpha_extension(alpha))
    if (header is None or isinstance(header, Cards)) and all(isinstance(e, ImageExtension) for e in extras):
        cards = Cards() if header is None else Cards(header.cards())
        for key in _STRUCTURAL_KEYS:
            cards.remove(key)
        hdus = _render(data, cards, extras)
        if hdus is not None:
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                write_image_hdus(fh, hdus)
            return path
        header = cards.to_astropy()
    _write_astropy(path, data, header, extras)
    return path


def _write_astropy(path: Path, data: np.ndarray, header: Any, extras: list) -> None:
    from astropy.io import fits

    if isinstance(header, Cards):
        header = header.to_astropy()
    hdr = fits.Header() if header is None else header.copy()
    for key in _STRUCTURAL_KEYS:
        hdr.remove(key, ignore_missing=True, remove_all=True)
    hdus = [fits.PrimaryHDU(data=data, header=hdr)]
    hdus += [e.to_astropy() if isinstance(e, ImageExtension) else e for e in extras]
    hdulist = fits.HDUList(hdus)
    with atomic_path(path) as tmp:
        if all(_plain_image(h) for h in hdulist):
            # astropy renders the headers (its verification fixes first), the pixels go
            # out in row chunks: no whole byte-swapped copy of each array (a mosaic's
            # image, weight and error maps), the same bytes as writeto.
            hdulist.verify("silentfix")
            with open(tmp, "wb") as fh:
                write_image_hdus(fh, [(h.header.tostring().encode("ascii"), h.data) for h in hdulist])
        else:
            hdulist.writeto(tmp, overwrite=True, output_verify="silentfix")


#: Pixel types FITS stores without BZERO (uint16 and the like are written offset).
_STORED_AS_IS = tuple(np.dtype(t) for t in ("f4", "f8", "u1", "i2", "i4", "i8"))


def _plain_image(hdu: Any) -> bool:
    """True for an image HDU whose pixels FITS stores as they are (no scaling, no compression)."""
    from astropy.io import fits

    data = getattr(hdu, "data", None)
    if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) or not isinstance(data, np.ndarray):
        return False
    native = data.dtype.newbyteorder("=")
    return (data.ndim >= 1 and native in _STORED_AS_IS and hdu.header.get("BSCALE", 1) == 1
            and hdu.header.get("BZERO", 0) == 0)
