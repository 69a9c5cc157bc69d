"""``zemosaic_xp.combine``: ccdproc's ``combine`` signature on top of ``zemosaic_xp.stack``.

Switching from ``ccdproc.combine`` is a change of import for the common cases; the
differences (all documented in docs/algorithms.md, "ccdproc-shaped combine") are:

- the σ-clip is centred on the median (ccdproc's default ``sigma_clip_func`` is the mean,
  which the outliers it should reject drag along); a mean centre is refused;
- ``sigma_clip`` and ``clip_extrema`` are one rejection each: asking for both is refused
  (``minmax_clip`` combines with either);
- ``scale`` multiplies the frames before the rejection (ccdproc clips the unscaled data
  and scales afterwards) and a callable sees the whole frame (ccdproc calls it per
  memory tile);
- ``clip_extrema`` counts valid samples only (ccdproc counts masked ones toward
  ``nlow`` / ``nhigh``), and the σ-clip's centre and σ leave masked samples out
  (ccdproc computes them on the raw data, masked values included), and a weighted
  average divides by the weights of the surviving samples only;
- the uncertainty is the standard error of :mod:`zemosaic_xp.core.uncertainty` (sample
  std with ``ddof = 1``, the median's factor, the clip correction) where ccdproc divides
  a ``ddof = 0`` std (median: 1.4826·MAD) by ``sqrt(n)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .api import stack
from .core.config import StackConfig
from .io.atomic import atomic_path
from .nddata import frames_from_nddata, is_nddata

__all__ = ["combine"]

_METHODS = {"average": "mean", "median": "median", "sum": "sum"}
_MEDIAN_CENTRES = ("median", "nanmedian")
_STD_DEVS = ("std", "nanstd")


def _name(func: Any) -> str | None:
    if func is None:
        return None
    return func if isinstance(func, str) else getattr(func, "__name__", repr(func))


def _read(img_list: Any, unit: Any) -> list:
    from astropy.nddata import CCDData

    if isinstance(img_list, str):
        img_list = [p.strip() for p in img_list.split(",") if p.strip()]
    frames = []
    for i, item in enumerate(list(img_list)):
        if is_nddata(item):
            frames.append(item)
        elif isinstance(item, (str, os.PathLike)):
            frames.append(CCDData.read(item, unit=unit) if unit is not None else CCDData.read(item))
        else:
            msg = f"img_list[{i}] is a {type(item).__name__}; expected a CCDData or a FITS file name"
            raise TypeError(msg)
    if not frames:
        msg = "`img_list` is empty: combine needs at least one image"
        raise ValueError(msg)
    return frames


def _rejection(sigma_clip: bool, low: float, high: float, func: Any, dev_func: Any, clip_extrema: bool,
               nlow: int, nhigh: int) -> dict[str, Any]:
    if sigma_clip and clip_extrema:
        msg = ("sigma_clip and clip_extrema together are not supported: zemosaic_xp runs one rejection "
               "per stack (minmax_clip combines with either)")
        raise ValueError(msg)
    if clip_extrema:
        return {"reject": "minmax", "minmax_low": int(nlow), "minmax_high": int(nhigh)}
    if not sigma_clip:
        return {"reject": "none"}
    centre, dev = _name(func), _name(dev_func)
    if centre is not None and centre not in _MEDIAN_CENTRES:
        msg = (f"sigma_clip_func={centre!r}: zemosaic_xp centres the clip on the median only (the mean is "
               f"pulled by the outliers being clipped); pass None or 'median'")
        raise ValueError(msg)
    kappa = {"kappa_low": abs(float(low)), "kappa_high": abs(float(high)), "max_iters": 1}
    if dev is None or dev in _STD_DEVS:
        return {"reject": "kappa_sigma", "sigma_ddof": 0, **kappa}
    if dev == "mad_std":
        return {"reject": "mad", **kappa}
    msg = f"sigma_clip_dev_func={dev!r} is not supported; pass None, 'std' or 'mad_std'"
    raise ValueError(msg)


def _scales(scale: Any, frames: list, data: np.ndarray) -> np.ndarray | None:
    if scale is None:
        return None
    if callable(scale):
        values = [scale(np.ma.masked_invalid(data[i])) for i in range(len(frames))]
    else:
        values = scale
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(frames),):
        msg = f"`scale` gives {values.shape} values; expected one per image ({len(frames)})"
        raise ValueError(msg)
    return values


def combine(img_list: Any, output_file: str | os.PathLike | None = None, method: str = "average",
            weights: Any = None, scale: Any = None, mem_limit: float = 16e9, clip_extrema: bool = False,
            nlow: int = 1, nhigh: int = 1, minmax_clip: bool = False, minmax_clip_min: float | None = None,
            minmax_clip_max: float | None = None, sigma_clip: bool = False, sigma_clip_low_thresh: float = 3,
            sigma_clip_high_thresh: float = 3, sigma_clip_func: Any = None, sigma_clip_dev_func: Any = None,
            dtype: Any = None, overwrite_output: bool = False, unit: Any = None, backend: Any = None) -> Any:
    """Combine images as ``ccdproc.combine`` does, on zemosaic_xp's stack.

    Parameters
    ----------
    img_list : sequence of (CCDData | str | PathLike), or str
        Images, or FITS file names (read by ``CCDData.read``; a single string may list
        them separated by commas). Masked pixels are "no data"; all must share a unit.
    output_file : str or PathLike, optional
        Also write the result there (``CCDData.write``: primary image, ``MASK``,
        ``UNCERT``), atomically.
    method : {"average", "median", "sum"}
        The combine.
    weights : array, shape (N,) or (N, H, W), optional
        Weights of the average (ignored by median and sum, as in ccdproc).
    scale : callable or array of shape (N,), optional
        Images are multiplied by it before the rejection and the combine; a callable
        gets each image as a masked array and returns its factor.
    mem_limit : float
        Working memory in bytes (the stack's ``memory_budget_bytes``); the result
        does not depend on it.
    clip_extrema : bool
        Drop the ``nlow`` lowest and ``nhigh`` highest valid samples of each pixel.
    nlow, nhigh : int
        For ``clip_extrema``.
    minmax_clip : bool
        Mask samples below ``minmax_clip_min`` or above ``minmax_clip_max`` (either may be
        None) before anything else.
    minmax_clip_min, minmax_clip_max : float, optional
        For ``minmax_clip``.
    sigma_clip : bool
        One pass of σ-clipping around the median: reject samples below
        ``median − low·σ`` or above ``median + high·σ``.
    sigma_clip_low_thresh, sigma_clip_high_thresh : float
        The thresholds (absolute values are used).
    sigma_clip_func : None, "median" or a median function
        The centre; anything else (ccdproc's default mean) is refused.
    sigma_clip_dev_func : None, "std", "mad_std" or a std function
        The σ of the clip: the standard deviation (ddof 0, astropy's) or 1.4826·MAD.
    dtype : dtype, optional
        Data type of the result (default float32).
    overwrite_output : bool
        Replace an existing ``output_file``.
    unit : str or astropy.units.UnitBase, optional
        Unit of images read from files without ``BUNIT``.
    backend : str, optional
        Where to compute (``zemosaic_xp.stack``'s ``backend``).

    Returns
    -------
    astropy.nddata.CCDData
        The combined image, its unit, ``StdDevUncertainty`` (the standard error of
        each pixel) and a mask of the pixels without a surviving sample.

    Raises
    ------
    ValueError
        Unknown ``method``, unsupported option combinations (see the module
        docstring), mismatched units or shapes, bad ``scale``.
    TypeError
        An entry of ``img_list`` is neither a CCDData nor a file name.
    FileExistsError
        ``output_file`` exists and ``overwrite_output`` is False.
    """
    if method not in _METHODS:
        msg = f"method={method!r}; expected one of {sorted(_METHODS)}"
        raise ValueError(msg)
    if output_file is not None and os.path.exists(output_file) and not overwrite_output:
        msg = f"'{output_file}' exists; pass overwrite_output=True to replace it"
        raise FileExistsError(msg)
    rejection = _rejection(sigma_clip, sigma_clip_low_thresh, sigma_clip_high_thresh, sigma_clip_func,
                           sigma_clip_dev_func, clip_extrema, nlow, nhigh)
    frames = _read(img_list, unit)
    data, frame_unit, _ = frames_from_nddata(frames)
    if minmax_clip:
        with np.errstate(invalid="ignore"):
            if minmax_clip_min is not None:
                data[data < minmax_clip_min] = np.nan
            if minmax_clip_max is not None:
                data[data > minmax_clip_max] = np.nan
    factors = _scales(scale, frames, data)
    if factors is not None:
        data *= factors.astype(np.float32).reshape((-1,) + (1,) * (data.ndim - 1))
    config = StackConfig.plain(combine=_METHODS[method], min_survivors=1, **rejection)
    result = stack(data, config=config, weights=weights if method == "average" else None, backend=backend,
                   memory_budget_bytes=max(1, int(mem_limit)))
    ccd = result.to_ccddata(unit=frame_unit if frame_unit is not None else unit)
    if dtype is not None:
        ccd.data = ccd.data.astype(dtype)
    if output_file is not None:
        with atomic_path(output_file) as tmp:
            ccd.write(tmp, overwrite=True, format="fits")
    return ccd
