"""Per-pixel inverse-variance weights from uncertainties, streamed by rows.

``weighting="uncertainty"`` weights every sample by ``1/σ²`` of its frame's uncertainty,
the ccdproc convention. A master tile reads them band by band, like the data:

- :class:`FitsUncertRows` — the ``UNCERT`` extension that ``CCDData.write`` adds to a
  FITS file (its kind from the ``UTYPE`` card: ``StdDevUncertainty``,
  ``VarianceUncertainty`` or ``InverseVariance``; a missing card means standard
  deviations, as ``CCDData.read`` assumes), read through astropy's ``section`` so that
  only the rows asked for leave the disk;
- :class:`ArrayUncertRows` — inverse variances already in memory (``CCDData`` objects,
  files whose ``MASK`` made them load whole).

Both give rows ``(h, W, C)`` float32, 0 where the uncertainty is not finite or not > 0
(no weight: the sample is "no data").

Grid tiles reproject the frames, so they need the uncertainty as a quantity that
interpolates: :func:`read_variance_planes` gives a frame's variances ``σ²`` as planes
``(C, H, W)`` (NaN where not finite or not > 0), and :func:`check_uncert_files` checks
every frame of a run before any tile is made.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["UNCERT_KINDS", "inverse_variance_of", "variance_of", "FitsUncertRows", "ArrayUncertRows",
           "uncert_kind", "uncert_hdu", "read_variance_planes", "check_uncert_files"]

#: ``UTYPE`` values (astropy's uncertainty class names) and the kind of array they hold.
UNCERT_KINDS = {"StdDevUncertainty": "std", "VarianceUncertainty": "var", "InverseVariance": "ivar"}

_EXTNAME = "UNCERT"


def _as_variance(values: Any, kind: str, *, inverse: bool) -> np.ndarray:
    """``σ²`` (or ``1/σ²`` with ``inverse``) of ``values`` of ``kind``, float64, one operation at most."""
    arr = np.asarray(values, dtype=np.float64)
    if kind not in ("std", "var", "ivar"):
        msg = f"unknown uncertainty kind {kind!r}; expected 'std', 'var' or 'ivar'"
        raise ValueError(msg)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == "ivar":
            return arr if inverse else 1.0 / arr
        var = arr * arr if kind == "std" else arr
        return 1.0 / var if inverse else var


def inverse_variance_of(values: Any, kind: str) -> np.ndarray:
    """``1/σ²`` of an uncertainty array of a given kind.

    Parameters
    ----------
    values : array_like
        Standard deviations (``"std"``), variances (``"var"``) or inverse variances
        (``"ivar"``), in the data's units (squared, inverse squared).
    kind : {"std", "var", "ivar"}
        What ``values`` holds.

    Returns
    -------
    ndarray, shape of ``values``, float32
        Inverse variances; 0 where they are not finite or not > 0.

    Raises
    ------
    ValueError
        An unknown ``kind``.
    """
    ivar = _as_variance(values, kind, inverse=True)
    return np.where(np.isfinite(ivar) & (ivar > 0), ivar, 0.0).astype(np.float32)


def variance_of(values: Any, kind: str) -> np.ndarray:
    """Return the variances ``σ²`` of an uncertainty array (the twin of :func:`inverse_variance_of`).

    Parameters
    ----------
    values : array_like
        As :func:`inverse_variance_of`.
    kind : {"std", "var", "ivar"}
        As :func:`inverse_variance_of`; an unknown one is a ``ValueError``.

    Returns
    -------
    ndarray, shape of ``values``, float32
        Variances (computed in float64); NaN where they are not finite or not > 0
        (σ = 0 or inf, an inverse variance of 0: such a pixel gets no weight).
    """
    var = _as_variance(values, kind, inverse=False)
    with np.errstate(over="ignore"):
        var = var.astype(np.float32)  # a variance past float32's range is inf: not finite below
    return np.where(np.isfinite(var) & (var > 0), var, np.float32(np.nan))


def uncert_kind(header: Any, path: str) -> str:
    """The kind of an ``UNCERT`` HDU from its ``UTYPE`` card.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The ``UNCERT`` extension's header.
    path : str
        The file, for messages.

    Returns
    -------
    str
        ``"std"``, ``"var"`` or ``"ivar"``; ``"std"`` without a ``UTYPE`` card.

    Raises
    ------
    ValueError
        A ``UTYPE`` that is none of :data:`UNCERT_KINDS` (the message names the file).
    """
    utype = str(header.get("UTYPE", "StdDevUncertainty")).strip()
    # astropy may write the class with its module path.
    utype = utype.rsplit(".", 1)[-1]
    if utype not in UNCERT_KINDS:
        msg = (f"'{path}' UNCERT extension has UTYPE {utype!r}; weighting='uncertainty' takes "
               f"{', '.join(UNCERT_KINDS)}")
        raise ValueError(msg)
    return UNCERT_KINDS[utype]


def _missing(path: str) -> ValueError:
    return ValueError(f"'{path}' has no UNCERT extension; weighting='uncertainty' needs one per frame "
                      f"(CCDData.write with an uncertainty)")


def _layout(shape: tuple[int, ...], frame_shape: tuple[int, int, int], path: str) -> str:
    """``"HW"``, ``"CHW"`` or ``"HWC"``: how an ``UNCERT`` array of ``shape`` lies over the data."""
    h, w, c = frame_shape
    if shape == (h, w) and c == 1:
        return "HW"
    if shape == (c, h, w):
        return "CHW"
    if shape == (h, w, c):
        return "HWC"
    msg = f"'{path}' UNCERT has shape {shape}; expected that of its data, {(h, w, c)} as (H, W, C)"
    raise ValueError(msg)


def uncert_hdu(path: str | os.PathLike, frame_shape: tuple[int, int, int]) -> tuple[int, str, str]:
    """Find a frame's ``UNCERT`` extension and check it, from the headers only.

    Parameters
    ----------
    path : str or os.PathLike
        The frame file.
    frame_shape : tuple of int
        ``(H, W, C)`` of the frame's data.

    Returns
    -------
    index : int
        The extension's position in the file.
    layout : str
        ``"HW"`` (one channel), ``"CHW"`` or ``"HWC"``.
    kind : str
        ``"std"``, ``"var"`` or ``"ivar"`` (:func:`uncert_kind`).

    Raises
    ------
    ValueError
        No ``UNCERT`` extension, one of another shape than the data, or an unknown
        ``UTYPE`` (the message names the file).
    """
    from .fits_header import scan_hdus

    path = os.fspath(path)
    hdus = scan_hdus(path)  # the fast reader; None: astropy decides
    if hdus is not None:
        index = next((i for i, hdu in enumerate(hdus) if hdu.name == _EXTNAME), None)
        if index is None:
            raise _missing(path)
        cards = hdus[index].cards
        shape = tuple(int(cards[f"NAXIS{cards['NAXIS'] - i}"]) for i in range(int(cards["NAXIS"])))
        return index, _layout(shape, frame_shape, path), uncert_kind(cards, path)
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        index = next((i for i, hdu in enumerate(hdul) if hdu.name.upper() == _EXTNAME), None)
        if index is None:
            raise _missing(path)
        header = hdul[index].header
        shape = tuple(int(header[f"NAXIS{header['NAXIS'] - i}"]) for i in range(int(header["NAXIS"])))
        return index, _layout(shape, frame_shape, path), uncert_kind(header, path)


def read_variance_planes(path: str | os.PathLike, frame_shape: tuple[int, int, int]) -> np.ndarray:
    """A frame's variances from its ``UNCERT`` extension, as planes.

    Parameters
    ----------
    path : str or os.PathLike
        The frame file (``CCDData.write``).
    frame_shape : tuple of int
        ``(H, W, C)`` of the frame's data.

    Returns
    -------
    ndarray, shape (C, H, W), float32, C-contiguous
        ``σ²`` (:func:`variance_of`); NaN where not finite or not > 0.

    Raises
    ------
    ValueError
        As :func:`uncert_hdu`.
    """
    from astropy.io import fits

    index, layout, kind = uncert_hdu(path, frame_shape)
    with fits.open(os.fspath(path), memmap=True) as hdul:
        data = np.asarray(hdul[index].data)
    if layout == "HW":
        data = data[None]
    elif layout == "HWC":
        data = np.moveaxis(data, -1, 0)
    return np.ascontiguousarray(variance_of(data, kind))


def check_uncert_files(frames: Any) -> None:
    """Check that every frame has a usable ``UNCERT`` extension (headers only).

    Parameters
    ----------
    frames : iterable of (path, (H, W, C))
        The frame files and the shape of their data.

    Raises
    ------
    ValueError
        The first frame without an ``UNCERT`` extension, with one of another shape
        or an unknown ``UTYPE`` (the message names the file).
    """
    for path, shape in frames:
        uncert_hdu(path, shape)


class FitsUncertRows:
    """The ``UNCERT`` extension of a FITS frame, as inverse variances by rows.

    Parameters
    ----------
    path : str or os.PathLike
        The file (written by ``CCDData.write`` or :func:`~.fits_write.uncertainty_hdu`).
    frame_shape : tuple of int
        ``(H, W, C)`` of the frame's data; the extension must have its shape (2-D
        ``(H, W)`` for one channel, ``(C, H, W)`` or ``(H, W, C)`` otherwise).

    Attributes
    ----------
    kind : str
        ``"std"``, ``"var"`` or ``"ivar"`` (:func:`uncert_kind`).

    Raises
    ------
    ValueError
        The file has no ``UNCERT`` extension, one of another shape, or an unknown
        ``UTYPE`` (the message names the file).
    """

    def __init__(self, path: str | os.PathLike, frame_shape: tuple[int, int, int]) -> None:
        self.path = os.fspath(path)
        self._index, self._layout, self.kind = uncert_hdu(self.path, frame_shape)

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Inverse variances of rows ``[r0, r1)``.

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= H``.

        Returns
        -------
        ndarray, shape (r1 - r0, W, C), float32
            ``1/σ²``, 0 where not finite or not > 0.
        """
        from astropy.io import fits

        with fits.open(self.path, memmap=True) as hdul:
            section = hdul[self._index].section
            if self._layout == "CHW":
                rows = np.moveaxis(np.asarray(section[:, r0:r1, :]), 0, -1)
            else:
                rows = np.asarray(section[r0:r1, ...])
        if self._layout == "HW":
            rows = rows[..., None]
        return inverse_variance_of(rows, self.kind)


class ArrayUncertRows:
    """Inverse variances held in memory, served by rows.

    Parameters
    ----------
    ivar : ndarray, shape (H, W) or (H, W, C)
        ``1/σ²`` of every pixel (0 = no weight).
    """

    def __init__(self, ivar: np.ndarray) -> None:
        arr = np.asarray(ivar, dtype=np.float32)
        self._ivar = arr[..., None] if arr.ndim == 2 else arr

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Inverse variances of rows ``[r0, r1)``.

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= H``.

        Returns
        -------
        ndarray, shape (r1 - r0, W, C), float32
            A view of the array held.
        """
        return self._ivar[r0:r1]
