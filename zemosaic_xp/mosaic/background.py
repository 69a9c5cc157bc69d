"""Light background extraction of a final mosaic (ZeMosaic's ``final_mosaic_dbe_*``).

A mosaic keeps the large-scale gradients of its frames (light pollution, moon glow,
vignetting residuals the flats missed). :func:`extract_background` measures the sky
with photutils' :class:`~photutils.background.Background2D` (3σ-clipped medians in a
mesh of boxes, sources masked) and subtracts a smooth polynomial surface fitted to
those box medians, less its median, so the mosaic keeps its sky level:

1. per channel, the pixels without data (NaN, or ``valid`` False) are photutils'
   ``coverage_mask``: they take part in no statistic and stay NaN in the output;
2. sources are detected in the residual from the current surface
   (:func:`photutils.segmentation.detect_sources`): point sources above ``k`` robust σ
   (at least 9 connected pixels), then faint extended emission on a copy smoothed
   with a Gaussian of FWHM 9 px with the point sources left out (threshold ``k`` σ of
   the smoothed noise, at least 400 connected pixels); both dilated by ``dilate_px``;
   two rounds (the second against a surface fitted without the sources), the surface
   at least cubic here so that a gradient the strength's own surface cannot follow is
   not taken for a source; a mask over more than half the sky falls back to the point
   sources;
3. ``Background2D`` with that mask gives the box medians; boxes more than half masked
   are dropped; a polynomial of the strength's degree is fitted to the rest
   (least squares weighted by each box's unmasked pixels), rejecting boxes beyond 3
   robust σ of the fit in turn, so a nebula larger than the boxes is bridged over,
   not followed;
4. ``out = image − (surface − median(surface over the data))``.

Strengths (:data:`DBE_STRENGTHS`; ZeMosaic's names, ``low`` = ``weak``, ``high`` =
``strong``) go from a plane on 128-px boxes (``weak``) to a quartic on 48-px boxes
(``aggressive``). ZeMosaic's own DBE (upstream_spec §3.7 step 10) blurs an
object-masked copy with a Gaussian of σ = 24 / 36 / 52 / 68 px, masking above median +
k·σ_MAD (k = 3.0 / 2.8 / 2.5 / 2.2, the thresholds we use): a Gaussian blur follows
any structure wider than σ, so it removes much of a nebula's faint outskirts, and on a
strong gradient its global threshold masks the bright side of the gradient instead of
the nebula. On the synthetic sky of ``benchmarks/dbe_nebula.py`` (nebula of FWHM ¼ of
the field) ``normal`` removes 4 % of the nebula's flux on a flat sky and 1 % on a
gradient (99 % of the gradient removed), ZeMosaic's ``normal`` 14 % and 90 % (67 % of
the gradient); docs/grid.md "Background extraction of the final mosaic" has the table
and the cost (about 40 bytes per pixel of one channel at the peak).

Departures from ZeMosaic on purpose: a polynomial surface, not a Gaussian blur (above);
mono mosaics are corrected too (ZeMosaic skips them); source pixels are corrected like
the rest (ZeMosaic leaves them unchanged, a step at every mask edge on a gradient); an
unknown strength is an error, not "normal".

photutils is an optional dependency (``pip install zemosaic_xp[dbe]``); without it
:func:`extract_background` raises an ``ImportError`` naming the config key.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DbeStrength", "DBE_STRENGTHS", "dbe_strength", "extract_background", "require_photutils"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DbeStrength:
    """The parameters of one background-extraction strength.

    Attributes
    ----------
    box_px : int
        Side of a mesh box, px (the nearest size that tiles the mosaic evenly is used).
    degree : int
        Degree of the polynomial surface fitted to the box medians.
    k : float
        Source detection threshold, in units of the background RMS.
    dilate_px : int
        Side of the square the source segments are dilated with, px (odd).
    zemosaic_sigma_px : float
        The Gaussian σ of ZeMosaic's DBE at this strength, px (for the record).
    """

    box_px: int
    degree: int
    k: float
    dilate_px: int
    zemosaic_sigma_px: float


#: Strength name -> parameters. ZeMosaic's k and its Gaussian σ for reference; the boxes
#: are ours (see the module docstring).
DBE_STRENGTHS: dict[str, DbeStrength] = {
    "weak": DbeStrength(box_px=128, degree=1, k=3.0, dilate_px=5, zemosaic_sigma_px=24.0),
    "normal": DbeStrength(box_px=96, degree=2, k=2.8, dilate_px=7, zemosaic_sigma_px=36.0),
    "strong": DbeStrength(box_px=64, degree=3, k=2.5, dilate_px=9, zemosaic_sigma_px=52.0),
    "aggressive": DbeStrength(box_px=48, degree=4, k=2.2, dilate_px=11, zemosaic_sigma_px=68.0),
}
_ALIASES = {"low": "weak", "high": "strong"}
_MIN_PIXELS = 9          # connected pixels of a source segment
_EXCLUDE_PERCENT = 50.0  # boxes more masked than this are interpolated over
_MIN_VALID = 64          # fewer valid pixels in a channel: nothing to model
_FILTER = (1, 1)
_MIN_EXTENDED = 400     # connected pixels of an extended segment (20 x 20 px)
_CLIP_ROUNDS = 10
_DETECT_DEGREE = 3
_TRUNCATE = 3.0         # Gaussian kernel radius, in σ
_MAX_SOURCE_FRACTION = 0.5
_SMOOTH_FWHM = 9       # px, the kernel extended emission is detected with
_ITERATIONS = 2        # model -> sources rounds (the second detects against the source-free fit)


def dbe_strength(name: Any, key: str = "final_mosaic_dbe_strength") -> str:
    """Normalise a strength name (ZeMosaic's spellings).

    Parameters
    ----------
    name : str
        ``weak``/``low``, ``normal``, ``strong``/``high`` or ``aggressive``, any case.
    key : str
        The name of the setting, for the error message.

    Returns
    -------
    str
        A key of :data:`DBE_STRENGTHS`.

    Raises
    ------
    ValueError
        Not a known strength; the message names ``key`` and the valid names.
    """
    text = str(name).strip().lower() if isinstance(name, str) else None
    text = _ALIASES.get(text, text)
    if text not in DBE_STRENGTHS:
        valid = ", ".join(list(DBE_STRENGTHS) + list(_ALIASES))
        msg = f"`{key}` must be one of {valid}, got {name!r}"
        raise ValueError(msg)
    return text


def require_photutils(key: str = "final_mosaic_dbe_enabled") -> Any:
    """Import photutils, or explain which setting needs it.

    Parameters
    ----------
    key : str
        The setting that asked for the background extraction.

    Returns
    -------
    module
        ``photutils``.

    Raises
    ------
    ImportError
        photutils is not installed; the message names ``key`` and the extra to install.
    """
    try:
        import photutils
        import photutils.background  # noqa: F401
        import photutils.segmentation  # noqa: F401
    except ImportError as exc:
        msg = (f"`{key}` (background extraction of the final mosaic) needs photutils: "
               f"pip install 'zemosaic_xp[dbe]' (or set `{key}` false)")
        raise ImportError(msg) from exc
    return photutils


def _box(size: int, shape: tuple[int, int]) -> tuple[int, int]:
    """The box nearest ``size`` that tiles each axis evenly (photutils pads the last
    box otherwise, and a box mostly padding is excluded: the gradient at that edge
    would be extrapolated instead of measured)."""
    out = []
    for n in shape:
        count = max(1, round(n / size))
        out.append(max(1, -(-n // count)))
    return (out[0], out[1])


def _model(data: np.ndarray, no_data: np.ndarray, box: tuple[int, int], mask: np.ndarray | None) -> Any:
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, MedianBackground, StdBackgroundRMS

    return Background2D(data, box, mask=mask, coverage_mask=no_data, fill_value=np.nan,
                        exclude_percentile=_EXCLUDE_PERCENT, filter_size=_FILTER,
                        sigma_clip=SigmaClip(sigma=3.0, maxiters=5), bkg_estimator=MedianBackground(),
                        bkg_rms_estimator=StdBackgroundRMS())


def _surface(bkg: Any, box: tuple[int, int], shape: tuple[int, int], degree: int,
             min_pixels: float) -> tuple[np.ndarray, int]:
    """A polynomial surface of ``degree`` fitted to the mesh of ``bkg`` (box medians at
    the box centres, weighted by their unmasked pixels), boxes beyond 3 robust σ of
    the fit rejected in turn; evaluated at every pixel. Returns it and the boxes used."""
    from astropy.stats import mad_std

    mesh = np.asarray(bkg.background_mesh, dtype=np.float64)
    npix = np.asarray(bkg.n_pixels_mesh if hasattr(bkg, "n_pixels_mesh") else bkg.npixels_mesh, dtype=np.float64)
    cy = (np.arange(mesh.shape[0]) * box[0] + (box[0] - 1) / 2.0) / max(shape[0] - 1, 1) * 2.0 - 1.0
    cx = (np.arange(mesh.shape[1]) * box[1] + (box[1] - 1) / 2.0) / max(shape[1] - 1, 1) * 2.0 - 1.0
    yy, xx = np.meshgrid(cy, cx, indexing="ij")
    use = np.isfinite(mesh) & (npix >= min_pixels)
    powers = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    # as many terms as the boxes used allow (a lone box: a constant)
    while len(powers) > max(1, int(use.sum())):
        degree -= 1
        powers = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
    coef = np.zeros(len(powers))
    for _ in range(_CLIP_ROUNDS):
        if not use.any():
            break
        basis = np.stack([yy[use] ** i * xx[use] ** j for i, j in powers], axis=1)
        w = np.sqrt(npix[use])
        coef = np.linalg.lstsq(basis * w[:, None], mesh[use] * w, rcond=None)[0]
        fit = sum(c * yy**i * xx**j for c, (i, j) in zip(coef, powers))
        resid = mesh - fit
        spread = float(mad_std(resid[use])) if use.sum() > len(powers) else 0.0
        keep = use & (np.abs(resid) <= 3.0 * spread) if spread > 0 else use
        if np.array_equal(keep, use) or keep.sum() < len(powers):
            break
        use = keep
    py = np.linspace(-1.0, 1.0, shape[0]) if shape[0] > 1 else np.zeros(1)
    px = np.linspace(-1.0, 1.0, shape[1]) if shape[1] > 1 else np.zeros(1)
    model = np.zeros(shape, dtype=np.float32)
    for i in range(degree + 1):  # Σ_i y^i (Σ_j c_ij x^j): one outer product per power of y
        row = sum(c * px**j for c, (ii, j) in zip(coef, powers) if ii == i)
        model += np.outer(py**i, row).astype(np.float32)
    return model, int(use.sum())


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    """Binary dilation by a ``size`` × ``size`` square (a separable maximum filter)."""
    from scipy.ndimage import maximum_filter

    return maximum_filter(mask.view(np.uint8), size=size, mode="constant").astype(bool)


def _detect(resid: np.ndarray, no_data: np.ndarray, params: DbeStrength) -> np.ndarray:
    """Source pixels of a residual: point sources at full resolution, then faint
    extended emission on a copy smoothed with the point sources left out (its noise is
    lower by the kernel's noise factor); both dilated."""
    from astropy.stats import mad_std
    from photutils.segmentation import detect_sources
    from scipy.ndimage import gaussian_filter

    resid = np.where(no_data, np.float32(0.0), resid).astype(np.float32, copy=False)
    sigma = float(mad_std(resid[~no_data]))
    points = np.zeros(resid.shape, dtype=bool)
    segm = detect_sources(resid, params.k * sigma, _MIN_PIXELS, mask=no_data)
    if segm is not None:
        points = _dilate(segm.data > 0, params.dilate_px)
    # normalised convolution (a separable Gaussian of the kept pixels over that of their
    # weights): O(pixels) memory, unlike an FFT of the whole mosaic
    sigma_px = _SMOOTH_FWHM / 2.3548
    keep = (~(no_data | points)).astype(np.float32)
    weight = gaussian_filter(keep, sigma_px, mode="constant", truncate=_TRUNCATE)
    keep *= resid
    smooth = gaussian_filter(keep, sigma_px, mode="constant", truncate=_TRUNCATE)
    np.divide(smooth, weight, out=smooth, where=weight > 1e-3)
    smooth[weight <= 1e-3] = 0.0
    del keep, weight
    radius = int(_TRUNCATE * sigma_px + 0.5)  # gaussian_filter's kernel
    k1 = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    factor = float(np.sum((k1 / k1.sum()) ** 2))  # sqrt(Σ k²) of the 2-D kernel
    extended = np.zeros(resid.shape, dtype=bool)
    segm = detect_sources(np.where(no_data, 0.0, smooth), params.k * sigma * factor,
                          _MIN_EXTENDED, mask=no_data)
    if segm is not None:
        extended = _dilate(segm.data > 0, params.dilate_px)
    found = (points | extended) & ~no_data
    if found.sum() > _MAX_SOURCE_FRACTION * (~no_data).sum():
        # "extended emission" over most of the sky is the surface failing to describe
        # it (too few boxes for its degree), not a nebula: keep the point sources only
        return points & ~no_data
    return found


def _channel(data: np.ndarray, no_data: np.ndarray, params: DbeStrength) -> tuple[np.ndarray, dict[str, Any]]:
    """The background model of one channel, less its median, and its record."""
    box = _box(params.box_px, data.shape)
    min_pixels = (1.0 - _EXCLUDE_PERCENT / 100.0) * box[0] * box[1]
    sources = np.zeros(data.shape, dtype=bool)
    for _ in range(_ITERATIONS):
        bkg = _model(data, no_data, box, sources)
        # sources are found against a surface at least cubic: a gradient that the
        # strength's own surface cannot follow (a plane at "weak") is not a source
        model, used = _surface(bkg, box, data.shape, max(params.degree, _DETECT_DEGREE), min_pixels)
        grown = _detect(data - model, no_data, params)
        if np.array_equal(grown, sources):
            break
        sources = grown
    bkg = _model(data, no_data, box, sources)
    model, used = _surface(bkg, box, data.shape, params.degree, min_pixels)
    on_data = model[~no_data]
    level = float(np.median(on_data))
    info = {"source_fraction": float(sources.sum() / max(1, int((~no_data).sum()))),
            "boxes_used": used, "model_ptp": float(np.ptp(on_data)), "level": level}
    del on_data
    model -= np.float32(level)
    return model, info


def extract_background(image: Any, *, strength: str = "normal", valid: Any = None,
                       key: str = "final_mosaic_dbe_enabled") -> tuple[np.ndarray, dict[str, Any]]:
    """Subtract the large-scale background of a mosaic; see the module docstring.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, C), float
        The mosaic in ADU, on the host; NaN = no data.
    strength : str
        A name of :data:`DBE_STRENGTHS` (or ``low`` / ``high``).
    valid : array_like of bool, (H, W), optional
        Pixels with data (e.g. coverage > 0); False is treated like NaN.
    key : str
        The setting named in the error when photutils is missing.

    Returns
    -------
    out : ndarray, shape of ``image``, float32
        ``image − (model − median(model))`` per channel; NaN wherever ``image`` is NaN
        or ``valid`` is False. A channel with fewer than 64 valid pixels is returned
        unchanged.
    info : dict
        JSON-able: ``applied``, ``strength``, ``box_px``, ``degree``, ``k``, ``channels``
        (per channel: ``applied``, ``source_fraction``, ``boxes_used``, ``model_ptp``
        (ADU, peak to peak of the subtracted model), ``level``, or ``reason``).

    Raises
    ------
    ValueError
        ``image`` is not 2-D or 3-D, ``valid`` has another (H, W), or an unknown
        ``strength`` (the message names ``final_mosaic_dbe_strength``).
    ImportError
        photutils is not installed (the message names ``key``).
    """
    name = dbe_strength(strength)
    params = DBE_STRENGTHS[name]
    data = np.asarray(image)
    if data.ndim not in (2, 3):
        msg = f"`image` must be (H, W) or (H, W, C), got shape {data.shape}"
        raise ValueError(msg)
    planes = data[..., None] if data.ndim == 2 else data
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != planes.shape[:2]:
            msg = f"`valid` must have shape {planes.shape[:2]}, got {valid.shape}"
            raise ValueError(msg)
    require_photutils(key)
    out = np.empty(planes.shape, dtype=np.float32)
    channels = []
    for c in range(planes.shape[2]):
        plane = np.asarray(planes[..., c], dtype=np.float32)
        no_data = ~np.isfinite(plane) if valid is None else ~(np.isfinite(plane) & valid)
        if int((~no_data).sum()) < _MIN_VALID:
            out[..., c] = np.where(no_data, np.nan, plane)
            channels.append({"applied": False, "reason": "too_few_valid_pixels"})
            continue
        try:
            with warnings.catch_warnings():  # "no sources found" is a normal answer here
                warnings.filterwarnings("ignore", message=".*No sources were found.*")
                model, info = _channel(np.where(no_data, 0.0, plane), no_data, params)
        except ValueError as exc:  # photutils: every box masked or excluded
            out[..., c] = np.where(no_data, np.nan, plane)
            channels.append({"applied": False, "reason": f"no_background_boxes: {exc}"})
            continue
        out[..., c] = np.where(no_data, np.nan, plane - model)
        channels.append({"applied": True, **info})
    applied = any(ch["applied"] for ch in channels)
    info = {"applied": applied, "strength": name, "box_px": params.box_px, "degree": params.degree, "k": params.k,
            "channels": channels}
    logger.debug("[DBE] applied=%s strength=%s box=%d px degree=%d channels=%d/%d", applied, name,
                 params.box_px, params.degree, sum(ch["applied"] for ch in channels), len(channels))
    return (out[..., 0] if data.ndim == 2 else out), info
