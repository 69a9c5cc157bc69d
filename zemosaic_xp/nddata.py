"""Astropy ``NDData`` / ``CCDData`` in and out: masks, units and uncertainties.

:func:`frames_from_nddata` turns a sequence of ``NDData`` frames into what the core
stacks (float32 frames with masked pixels as NaN, one shared unit, and per-pixel
inverse-variance weights when asked for); :func:`to_ccddata` turns a
:class:`~zemosaic_xp.core.pipeline.StackResult` into a ``CCDData`` with a
``StdDevUncertainty`` and a mask of the pixels without data. astropy is imported only
by these functions.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

__all__ = ["is_nddata", "frames_from_nddata", "inverse_variance", "to_ccddata", "master_tile_inputs"]

logger = logging.getLogger(__name__)


def is_nddata(obj: Any) -> bool:
    """Tell whether ``obj`` is an astropy ``NDData`` (``CCDData`` included), without importing astropy.

    Parameters
    ----------
    obj : object
        Anything.

    Returns
    -------
    bool
        True for instances of ``astropy.nddata.NDData`` and its subclasses.
    """
    return any(cls.__module__.startswith("astropy.nddata") and cls.__name__ == "NDData"
               for cls in type(obj).__mro__)


def inverse_variance(frame: Any, name: str) -> np.ndarray:
    """Per-pixel inverse variance of an ``NDData``'s uncertainty (ccdproc's weights).

    Parameters
    ----------
    frame : astropy.nddata.NDData
        With a ``StdDevUncertainty``, ``VarianceUncertainty`` or
        ``InverseVariance`` of the data's shape (or broadcastable to it).
    name : str
        The frame's name in error messages.

    Returns
    -------
    ndarray, shape of ``frame.data``, float32
        ``1/σ²``; 0 where the uncertainty is not finite or not > 0 (no weight).

    Raises
    ------
    ValueError
        The frame has no uncertainty, or one of another kind.
    """
    unc = frame.uncertainty
    if unc is None:
        msg = f"{name} has no uncertainty; weighting='uncertainty' needs one on every frame"
        raise ValueError(msg)
    kind = getattr(unc, "uncertainty_type", None)
    if kind not in ("std", "var", "ivar"):
        msg = (f"{name} has a {type(unc).__name__}; weighting='uncertainty' takes StdDevUncertainty, "
               f"VarianceUncertainty or InverseVariance")
        raise ValueError(msg)
    # On call: zemosaic_xp.io imports astropy, and this module is imported with the package.
    from .io.uncert import inverse_variance_of

    return inverse_variance_of(np.broadcast_to(np.asarray(unc.array, dtype=np.float64), np.shape(frame.data)), kind)


def frames_from_nddata(frames: Sequence[Any], *, weights: bool = False) -> tuple[np.ndarray, Any, np.ndarray | None]:
    """Frames, unit and (optionally) inverse-variance weights of ``NDData`` frames.

    Parameters
    ----------
    frames : sequence of astropy.nddata.NDData
        Aligned frames of one shape ``(H, W)`` or ``(H, W, C)``. A ``mask`` (True =
        bad) makes the pixel "no data".
    weights : bool
        Also return ``1/σ²`` per pixel from each frame's uncertainty
        (:func:`inverse_variance`).

    Returns
    -------
    data : ndarray, shape (N, H, W[, C]), float32
        The frames, NaN where masked (and where the data are not finite).
    unit : astropy.units.UnitBase or None
        The unit every frame shares; None when no frame has one.
    ivar : ndarray, shape of ``data``, float32, or None
        Inverse variances (0 where masked); None unless ``weights``.

    Raises
    ------
    ValueError
        No frame, frames of different shapes, or frames of different units (the message
        names the first frame that differs and both units); a missing or unusable
        uncertainty with ``weights``.
    """
    frames = list(frames)
    if not frames:
        msg = "`frames` is empty: stacking needs at least one frame"
        raise ValueError(msg)
    units = [getattr(f, "unit", None) for f in frames]
    unit = units[0]
    for i, u in enumerate(units):
        if u != unit:
            msg = (f"frames[{i}] has unit {u!s} but frames[0] has {unit!s}: every frame must share one "
                   f"unit (convert them first, e.g. CCDData.convert_unit_to)")
            raise ValueError(msg)
    shape = np.shape(frames[0].data)
    data = np.empty((len(frames), *shape), np.float32)
    ivar = np.empty_like(data) if weights else None
    for i, f in enumerate(frames):
        if np.shape(f.data) != shape:
            msg = f"frames[{i}] has shape {np.shape(f.data)}; expected {shape} like frames[0]"
            raise ValueError(msg)
        data[i] = np.asarray(f.data, dtype=np.float32)
        if f.mask is not None:
            data[i][np.broadcast_to(np.asarray(f.mask, dtype=bool), shape)] = np.nan
        if ivar is not None:
            ivar[i] = inverse_variance(f, f"frames[{i}]")
            ivar[i][np.isnan(data[i])] = 0.0
    return data, unit, ivar


def to_ccddata(result: Any, *, unit: Any = None) -> Any:
    """A stack result as an astropy ``CCDData``.

    Parameters
    ----------
    result : StackResult
        From ``zemosaic_xp.stack`` (any backend: arrays are brought to the host).
    unit : str or astropy.units.UnitBase, optional
        The data's unit; default ``result.unit`` (the input frames' shared unit).

    Returns
    -------
    astropy.nddata.CCDData
        ``data`` the image (NaN kept), ``mask`` True where the image has no data (no
        surviving sample), ``uncertainty`` a ``StdDevUncertainty`` of
        ``result.uncertainty`` (absent when it was not computed); shape ``(H, W)`` or
        ``(H, W, C)`` as the image.

    Raises
    ------
    ValueError
        No unit given and the result has none.
    """
    from astropy.nddata import CCDData, StdDevUncertainty

    from .backends import to_host

    unit = getattr(result, "unit", None) if unit is None else unit
    if unit is None:
        msg = "the stack has no unit (its frames were plain arrays): pass unit=, e.g. to_ccddata(unit='adu')"
        raise ValueError(msg)
    image = np.asarray(to_host(result.image), dtype=np.float32)
    unc = None
    if result.uncertainty is not None:
        unc = StdDevUncertainty(np.asarray(to_host(result.uncertainty), dtype=np.float32))
    return CCDData(image, unit=unit, mask=~np.isfinite(image), uncertainty=unc,
                   meta={"ZMX_REJ": str(result.stats.get("reject", "")),
                         "ZMX_COMB": str(result.stats.get("combine", ""))})


def _masked_array(data: Any, mask: Any) -> np.ndarray:
    arr = np.array(data, dtype=np.float32)
    if mask is not None:
        arr[np.broadcast_to(np.asarray(mask, dtype=bool), arr.shape)] = np.nan
    return arr


def _fits_frame(path: Any, *, uncertainty: bool = False) -> tuple[Any, Any, Any]:
    """A FITS path as it is (streamed), or in memory with its MASK applied; its BUNIT; its weights.

    The headers are read by the fast reader (:func:`~zemosaic_xp.io.fits_header.scan_hdus`);
    astropy opens only a file with a ``MASK`` extension or one the fast reader leaves to
    it. A file that cannot be read is returned as it is: opening it as a frame source
    then raises the error that names it. With ``uncertainty``, the third value is the
    ``UNCERT`` extension's inverse variances (``(H, W[, C])`` array for a file read
    whole, else ``"stream"``: read by rows later); None without.
    """
    import os

    from .io.fits_header import ScannedPath, scan_hdus

    name = os.fspath(path)
    stream = "stream" if uncertainty else None
    try:
        hdus = scan_hdus(name) if os.path.isfile(name) else []
    except (OSError, ValueError):
        hdus = []
    if hdus:
        unit = hdus[0].cards.get("BUNIT")
        if not any(h.name == "MASK" for h in hdus):
            return ScannedPath(path, hdus), unit, stream  # the frame source takes the HDUs as scanned
    elif hdus is not None:  # missing or unreadable: the frame source reports it
        return path, None, stream
    from astropy.io import fits

    from .io.fits import _layout
    from .io.uncert import inverse_variance_of, uncert_kind

    try:
        with fits.open(name, memmap=False) as hdul:
            unit = hdul[0].header.get("BUNIT")
            if "MASK" not in hdul:
                return path, unit, stream
            arr = _masked_array(hdul[0].data, hdul["MASK"].data)
            found = (np.array(hdul["UNCERT"].data), hdul["UNCERT"].header.copy()) \
                if uncertainty and "UNCERT" in hdul else None
    except (OSError, ValueError, TypeError, KeyError):
        return path, None, stream
    ivar = None
    if uncertainty:
        if found is None:
            msg = (f"'{name}' has no UNCERT extension; weighting='uncertainty' needs one per frame "
                   f"(CCDData.write with an uncertainty)")
            raise ValueError(msg)
        ivar = inverse_variance_of(found[0], uncert_kind(found[1], name))
        ivar = np.where(np.isnan(arr), np.float32(0.0), np.broadcast_to(ivar, arr.shape))
    if arr.ndim == 3 and _layout(arr.shape, name) == "CHW":  # (H, W, C) for the stack
        arr = np.ascontiguousarray(np.moveaxis(arr, 0, -1))
        ivar = None if ivar is None else np.ascontiguousarray(np.moveaxis(ivar, 0, -1))
    return arr, unit, ivar


def master_tile_inputs(inputs: Any, *, uncertainty: bool = False) -> tuple[Any, Any, list | None]:
    """``stack_master_tile`` inputs with ``NDData`` frames and ``MASK`` extensions applied.

    Parameters
    ----------
    inputs : sequence of (str | PathLike | array | NDData), or one array
        The master tile's frames.
    uncertainty : bool
        Also return each frame's inverse variances (``weighting="uncertainty"``).

    Returns
    -------
    inputs : list or the input itself
        NDData frames as float32 arrays with masked pixels NaN; FITS files with a
        ``MASK`` extension (``CCDData.write``) read into such arrays (3-D data as
        ``(H, W, C)``, from CHW when the file holds planes first); other paths and
        arrays unchanged (still streamed). One array of frames is returned as is.
    unit : str or None
        The unit every frame shares (NDData ``unit``, FITS ``BUNIT``); None when none
        has one.
    weights : list or None
        With ``uncertainty``: per input, an
        :class:`~zemosaic_xp.io.uncert.ArrayUncertRows` for a frame in memory, or
        ``"stream"`` for a file still streamed (``open_sources`` reads its ``UNCERT``
        extension by rows); None otherwise.

    Raises
    ------
    ValueError
        Frames of different units (a frame without a unit among frames with one
        counts as different); the message names the first frame that differs. With
        ``uncertainty``: a frame without a usable uncertainty (named).
    """
    if not isinstance(inputs, (list, tuple)):
        if uncertainty:
            msg = ("weighting='uncertainty' needs CCDData frames or CCDData.write files with an UNCERT "
                   "extension; got one array of frames")
            raise ValueError(msg)
        return inputs, None, None
    from .io.uncert import ArrayUncertRows

    out, units, weights = [], [], []
    for i, item in enumerate(inputs):
        if is_nddata(item):
            frame = _masked_array(item.data, item.mask)
            out.append(frame)
            units.append(None if item.unit is None else item.unit.to_string())
            if uncertainty:
                ivar = inverse_variance(item, f"inputs[{i}]")
                weights.append(ArrayUncertRows(np.where(np.isnan(frame), np.float32(0.0), ivar)))
        elif isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
            frame, unit, ivar = _fits_frame(item, uncertainty=uncertainty)
            out.append(frame)
            units.append(None if unit is None else str(unit).strip())
            if uncertainty:
                weights.append(ivar if isinstance(ivar, str) else ArrayUncertRows(ivar))
        else:
            if uncertainty:
                msg = (f"inputs[{i}] is a plain array: weighting='uncertainty' needs CCDData frames or "
                       f"CCDData.write files with an UNCERT extension")
                raise ValueError(msg)
            out.append(item)
            units.append(None)
    unit = units[0] if units else None
    for i, other in enumerate(units):
        if other != unit:
            name = inputs[i] if isinstance(inputs[i], (str, bytes)) or hasattr(inputs[i], "__fspath__") \
                else f"inputs[{i}]"
            msg = (f"'{name}' has unit {other} but the first frame has {unit}: every frame of a master tile "
                   f"must share one unit (BUNIT / CCDData.unit)")
            raise ValueError(msg)
    return out, unit, (weights if uncertainty else None)
