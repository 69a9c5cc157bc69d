"""Reproject one frame onto the part of a tile it touches.

All channels and the ALPHA plane share one coordinate transform per output pixel
(the costly part), and only the frame's patch box is reprojected, not the whole tile.

The arithmetic is exactly that of ``reproject.reproject_interp(order="bilinear",
roundtrip_coords=False, parallel=False)`` (reproject 0.21, ``_reproject_full``): output
pixel → sky → frame pixel with astropy's WCS (distortions included), coordinates in
the outer half of the border pixels clipped onto the border pixel centres, then
``scipy.ndimage.map_coordinates(order=1, mode="constant", cval=NaN)`` per plane. It is
done here directly, so that

- worker processes do not import reproject (which pulls in dask: ~0.3 s of CPU at
  every worker start-up);
- the sky coordinates skip astropy's ``SkyCoord`` round trip of ``pixel_to_pixel``
  (~15 % of the transform) when both WCS are ICRS and the longitudes are
  already in [0, 360): the round trip then returns the same floats.
  Other cases go through ``astropy.wcs.utils.pixel_to_pixel`` as reproject does;
- the clipped coordinates are computed once per patch rather than once per plane.

reproject's round-trip check (world → input pixel → world, ``roundtrip_coords``) is not
done: it guards all-sky projections where two pixels share one sky position, which
cannot happen for the TAN-like fields of a few degrees that frames and tiles are here,
and it would double the cost of the coordinate transforms.

``tests/grid/test_reproject_tile.py`` checks the result bit for bit against
``reproject_interp``.

The radial weight (``apply_radial_weight``) belongs to the frame, not to the tile: it
down-weights the frame's own edges (vignetting, field curvature), so it is the frame's
map (its centre, its half diagonal) evaluated at the frame position each patch pixel
samples, and it travels with the patch in its weight. A tile's result therefore does not
depend on the tile's size or position, on its cells, or on the memory budget.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from astropy.wcs import WCS

from ..core.config import StackConfig
from ..core.weights import radial_weight_at
from ..io.framecache import frame_planes
from .geometry import tile_wcs

__all__ = ["reproject_patch", "reproject_planes", "frame_planes", "radial_at_patch"]



def _both_icrs(wcs_a: WCS, wcs_b: WCS) -> bool:
    """True when both WCS are celestial ICRS: astropy then converts nothing between them."""
    from astropy.coordinates import ICRS
    from astropy.wcs.utils import wcs_to_celestial_frame

    try:
        return all(type(wcs_to_celestial_frame(w)) is ICRS for w in (wcs_a, wcs_b))
    except Exception:  # noqa: BLE001 - anything unusual takes astropy's general path
        return False


def _pixel_to_pixel(wcs_out: WCS, wcs_in: WCS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (x, y) of ``wcs_out`` → pixel of ``wcs_in``, as ``astropy.wcs.utils.pixel_to_pixel``.

    The fast path uses the world values directly; ``pixel_to_pixel`` would wrap them in
    a ``SkyCoord`` (longitudes wrapped to [0, 360), latitudes checked) and take them
    out again, which leaves them unchanged when they are already in range and both WCS
    are ICRS (no frame transformation).
    """
    if _both_icrs(wcs_out, wcs_in):
        lon, lat = wcs_out.pixel_to_world_values(x, y)
        lon, lat = np.asarray(lon), np.asarray(lat)
        in_range = not (np.any(lon < 0.0) or np.any(lon >= 360.0) or np.any(np.abs(lat) > 90.0))
        if in_range:
            fx, fy = wcs_in.world_to_pixel_values(lon, lat)
            return np.asarray(fx), np.asarray(fy)
    from astropy.wcs.utils import pixel_to_pixel

    fx, fy = pixel_to_pixel(wcs_out, wcs_in, x, y)
    return np.asarray(fx), np.asarray(fy)


def _clip_coords(coords: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Coordinates in the outer half of the border pixels moved onto the border pixel centres."""
    coords = coords.copy()
    for i in range(coords.shape[0]):
        coords[i][(coords[i] < 0) & (coords[i] >= -0.5)] = 0
        coords[i][(coords[i] < shape[i] - 0.5) & (coords[i] >= shape[i] - 1)] = shape[i] - 1
    return coords


def reproject_planes(planes: np.ndarray, frame_wcs: WCS, target: WCS, shape: tuple[int, int],
                     out: np.ndarray | None = None, extra: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """Bilinear samples of ``planes`` ``(P, H, W)`` on the pixels of ``target`` ``(h, w)``.

    Parameters
    ----------
    planes : ndarray, shape (P, H, W), float32, C-contiguous
        The frame's planes: channels in ADU (NaN = no data), then ALPHA when present.
    frame_wcs : WCS
        The WCS of ``planes``.
    target : WCS
        The output pixel grid.
    shape : (h, w)
        Output size in px, the pixel grid of ``target``.
    out : ndarray, shape (P + len(extra), h, w), float32, optional
        Written in place.
    extra : tuple of ndarray, shape (H, W), float32
        More planes of the same frame (a cosmic-ray hit map), sampled with the same
        coordinates after ``planes``.

    Returns
    -------
    ndarray, shape (P + len(extra), h, w), float32
        NaN outside the frame (exactly ``reproject_interp(..., roundtrip_coords=False)``).
    """
    return _sample(planes, _frame_coords(frame_wcs, target, shape, planes.shape[1:]), shape, out, extra)


def _frame_coords(frame_wcs: WCS, target: WCS, shape: tuple[int, int], frame_shape: tuple[int, ...]) -> np.ndarray:
    """Frame pixel coordinates (row, column), shape (2, h·w), of the pixels of ``target``, clipped as reproject."""
    h, w = shape
    # reproject_interp: meshgrid of float pixel indices, raveled, (x, y) to the transform.
    ys, xs = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij", sparse=False,
                         copy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # distorted-inverse convergence warnings at far pixels
        fx, fy = _pixel_to_pixel(target, frame_wcs, xs.ravel(), ys.ravel())
    return _clip_coords(np.array([fy, fx]), frame_shape)


def _sample(planes: np.ndarray, coords: np.ndarray, shape: tuple[int, int], out: np.ndarray | None,
            extra: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """Bilinear samples of every plane, then of ``extra``, at ``coords`` (:func:`_frame_coords`), shape (P, h, w)."""
    from scipy.ndimage import map_coordinates

    h, w = shape
    n_planes = planes.shape[0] + len(extra)
    if out is None:
        out = np.empty((n_planes, h, w), dtype=np.float32)
    flat = out.reshape(n_planes, h * w)
    for i in range(n_planes):
        plane = planes[i] if i < planes.shape[0] else extra[i - planes.shape[0]]
        map_coordinates(plane, coords, output=flat[i], order=1, cval=np.nan, mode="constant")
    return out


def radial_at_patch(coords: np.ndarray, frame_shape: tuple[int, ...], shape: tuple[int, int],
                    config: StackConfig) -> np.ndarray:
    """The frame's radial weight map carried onto a patch: the map at the frame position of each patch pixel.

    Parameters
    ----------
    coords : ndarray, shape (2, h·w), float64
        Frame pixel coordinates (row, column) of the patch pixels (:func:`_frame_coords`).
    frame_shape : (H, W)
        The frame's full size: its centre and half diagonal define the map.
    shape : (h, w)
        The patch size.
    config : StackConfig
        ``radial_feather_fraction``, ``radial_shape_power``, ``radial_floor``.

    Returns
    -------
    ndarray, shape (h, w), float32
        :func:`~zemosaic_xp.core.weights.radial_weight_at` of the frame; NaN where a
        coordinate is NaN (no sky position).
    """
    from array_api_compat import numpy as np_xp

    height, width = (int(v) for v in frame_shape[:2])
    radial = radial_weight_at(coords[0], coords[1], height=height, width=width,
                              feather_fraction=config.radial_feather_fraction,
                              shape_power=config.radial_shape_power, floor=config.radial_floor, xp=np_xp)
    return np.asarray(radial).reshape(shape)


def reproject_patch(data: np.ndarray | None, alpha: np.ndarray | None, frame_wcs: WCS, grid_wcs: WCS,
                    tile_y0: int, tile_x0: int, box: tuple[int, int, int, int], *,
                    planes: np.ndarray | None = None, target: Any = None,
                    radial: StackConfig | None = None, hits: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Reproject a frame onto a patch box of a tile.

    Parameters
    ----------
    data : ndarray, shape (H, W, C), float32, or None
        The frame; NaN = no data (None when ``planes`` is given).
    alpha : ndarray, shape (H, W), float32 in [0, 1], or None
        The frame's ALPHA weights (None = 1 everywhere).
    frame_wcs : WCS
        The frame's celestial WCS (distortion included).
    grid_wcs : WCS
        The canvas WCS.
    tile_y0, tile_x0 : int
        Canvas position of the tile.
    box : (py0, py1, px0, px1)
        The patch box in tile pixels.
    planes : ndarray, shape (C [+ 1], H, W), optional
        :func:`frame_planes` of ``data`` and ``alpha``, when already made (a frame
        reprojected onto several tiles); its last plane is ALPHA when ``alpha`` is given.
    target : WCS, optional
        ``tile_wcs(grid_wcs, tile_y0 + py0, tile_x0 + px0, (h, w))`` when already made.
    radial : StackConfig, optional
        When given with ``radial_weight`` True, the weight also carries the frame's
        radial map (:func:`radial_at_patch`): computed in the frame's own pixel
        coordinates (its centre, its half diagonal), at the position each patch pixel
        samples. Default: no radial factor.
    hits : ndarray, shape (K,), int64, optional
        The frame's cosmic-ray hits as flat indices ``y·W + x``
        (:meth:`~zemosaic_xp.io.framecache.FrameCache.hits`): their map is
        reprojected with the same coordinates and returned as ``hit_px``; they take
        no part in ``patch`` or ``weight``.

    Returns
    -------
    patch : ndarray, shape (py1 - py0, px1 - px0, C), float32
        Bilinear samples of the frame; NaN where it has no data.
    weight : ndarray, shape (py1 - py0, px1 - px0), float32
        Reprojection footprint × ALPHA (× the radial map), in [0, 1]; 0 where
        ``patch`` is all NaN.
    hit_px : ndarray, shape (py1 - py0, px1 - px0), bool
        Only when ``hits`` is given: the output pixels whose bilinear stencil touches
        a hit (where masking the hit in the frame would have made them NaN).
    """
    py0, py1, px0, px1 = box
    h, w = py1 - py0, px1 - px0
    if planes is None:
        planes = frame_planes(data, alpha)
    channels = planes.shape[0] - (1 if alpha is not None else 0)
    if target is None:
        target = tile_wcs(grid_wcs, tile_y0 + py0, tile_x0 + px0, (h, w))
    extra = ()
    if hits is not None:
        hit_map = np.zeros(planes.shape[1:], dtype=np.float32)
        hit_map.ravel()[hits] = 1.0
        extra = (hit_map,)
    coords = _frame_coords(frame_wcs, target, (h, w), planes.shape[1:])
    out = _sample(planes, coords, (h, w), None, extra)
    # A pixel counts where any channel interpolated (a NaN in one channel stays NaN there).
    weight = np.any(~np.isnan(out[:channels]), axis=0).astype(np.float32)
    if alpha is not None:
        a = np.where(np.isfinite(out[channels]), out[channels], 0.0)
        weight = weight * np.clip(a, 0.0, 1.0)
    if radial is not None and radial.radial_weight:
        weight = weight * radial_at_patch(coords, planes.shape[1:], (h, w), radial)
    weight = np.where(np.isfinite(weight) & (weight > 0), weight, 0.0).astype(np.float32)
    patch = np.moveaxis(out[:channels], 0, -1)
    patch = np.where(weight[..., None] > 0, patch, np.float32(np.nan))
    patch = np.ascontiguousarray(patch, dtype=np.float32)
    if hits is not None:
        return patch, weight, (out[-1] > 0) & (weight > 0)  # NaN (outside the frame) compares False
    return patch, weight
