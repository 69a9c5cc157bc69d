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
- the clipped coordinates are computed once per patch rather than once per plane;
- the sky coordinates of a tile's pixels are computed once for the tile
  (:class:`TileSky`) and shared by every frame's patch, instead of once per patch
  (a tile of a survey N frames deep took N times the transforms). A patch's pixels
  are then the tile's pixels ``(px0 + j, py0 + i)`` rather than ``(j, i)`` of a WCS
  whose CRPIX is moved by ``(px0, py0)``; wcslib subtracts CRPIX from the pixel first,
  so both give the same float when that CRPIX is the tile's minus ``(px0, py0)``
  *exactly* — checked for each patch (else the patch is transformed on its own).

reproject's round-trip check (world → input pixel → world, ``roundtrip_coords``) is not
done: it guards all-sky projections where two pixels share one sky position, which
cannot happen for the TAN-like fields of a few degrees that frames and tiles are here,
and it would double the cost of the coordinate transforms.

``tests/grid/test_reproject_tile.py`` checks the result bit for bit against
``reproject_interp``.
"""

from __future__ import annotations

import warnings
from fractions import Fraction
from typing import Any

import numpy as np
from astropy.wcs import WCS

from ..io.framecache import frame_planes
from .geometry import tile_wcs

__all__ = ["reproject_patch", "reproject_planes", "frame_planes", "TileSky"]

_CHUNK_PX = 262144  # output pixels reprojected at once


def _both_icrs(wcs_a: WCS, wcs_b: WCS) -> bool:
    """True when both WCS are celestial ICRS: astropy then converts nothing between them."""
    return _is_icrs(wcs_a) and _is_icrs(wcs_b)


class TileSky:
    """Sky coordinates of every pixel of a tile, computed once and shared by its patches.

    Parameters
    ----------
    grid_wcs : WCS
        The canvas WCS.
    y0, x0 : int
        Canvas position of the tile's pixel (0, 0).
    shape : (h, w)
        The tile's size in px.

    Notes
    -----
    The coordinates (two float64 arrays of the tile's shape) are computed on the first
    :meth:`patch` call that can use them: only when the canvas is ICRS and every
    longitude is in [0, 360) (what :func:`_pixel_to_pixel`'s fast path needs).
    """

    def __init__(self, grid_wcs: WCS, y0: int, x0: int, shape: tuple[int, int]) -> None:
        self.grid_crpix = (float(grid_wcs.wcs.crpix[0]), float(grid_wcs.wcs.crpix[1]))
        self.y0, self.x0, self.shape = int(y0), int(x0), (int(shape[0]), int(shape[1]))
        self.target = tile_wcs(grid_wcs, y0, x0, shape)
        self._world: tuple[np.ndarray, np.ndarray] | None = None
        self._usable: bool | None = None

    def _compute(self) -> bool:
        if not _is_icrs(self.target):
            return False
        h, w = self.shape
        ys, xs = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij", copy=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lon, lat = self.target.pixel_to_world_values(xs.ravel(), ys.ravel())
        lon, lat = np.asarray(lon), np.asarray(lat)
        if np.any(lon < 0.0) or np.any(lon >= 360.0) or np.any(np.abs(lat) > 90.0):
            return False
        self._world = (lon.reshape(h, w), lat.reshape(h, w))
        return True

    def _exact(self, box: tuple[int, int, int, int]) -> bool:
        """Whether CRPIX of the patch's own WCS is exactly the tile's minus the patch origin."""
        py0, _, px0, _ = box
        tile = self.target.wcs.crpix
        for axis, (origin, offset) in enumerate(((self.x0, px0), (self.y0, py0))):
            own = self.grid_crpix[axis] - (origin + offset)  # as _patch_targets / tile_wcs make it
            if Fraction(float(tile[axis])) - offset != Fraction(own):
                return False
        return True

    def patch(self, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the sky coordinates of a patch box's pixels, when they can be shared.

        Parameters
        ----------
        box : (py0, py1, px0, px1)
            The patch box in tile pixels.

        Returns
        -------
        tuple of two ndarray, or None
            ``(lon, lat)`` in degrees, each of shape ``(py1 - py0, px1 - px0)``, float64
            (views of the tile's arrays): bit for bit what the patch's own WCS gives;
            None when they cannot be shared (the caller transforms the patch).
        """
        if self._usable is None:
            self._usable = self._compute()
        if not self._usable or not self._exact(box):
            return None
        py0, py1, px0, px1 = box
        lon, lat = self._world
        return lon[py0:py1, px0:px1], lat[py0:py1, px0:px1]


def _is_icrs(wcs: WCS) -> bool:
    from astropy.coordinates import ICRS
    from astropy.wcs.utils import wcs_to_celestial_frame

    try:
        return type(wcs_to_celestial_frame(wcs)) is ICRS
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
                     out: np.ndarray | None = None,
                     world: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
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
    out : ndarray, shape (P, h, w), float32, optional
        Written in place.
    world : (lon, lat), optional
        The sky coordinates of ``target``'s pixels, two arrays of shape ``(h, w)``, in
        degrees, from :meth:`TileSky.patch` (``target`` is then ICRS); used when
        ``frame_wcs`` is ICRS too, instead of transforming the pixels again.

    Returns
    -------
    ndarray, shape (P, h, w), float32
        NaN outside the frame (exactly ``reproject_interp(..., roundtrip_coords=False)``).
    """
    from scipy.ndimage import map_coordinates

    h, w = shape
    n_planes = planes.shape[0]
    if out is None:
        out = np.empty((n_planes, h, w), dtype=np.float32)
    flat = out.reshape(n_planes, h * w)
    shared = world is not None and _is_icrs(frame_wcs)
    # Row chunks: every pixel is transformed and interpolated on its own, so chunks change
    # no bit, and the temporaries (~80 bytes a pixel) stay ~20 MB for any patch size.
    step = max(1, _CHUNK_PX // max(1, w))
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # distorted-inverse convergence warnings at far pixels
            if shared:
                lon, lat = (np.ravel(v[r0:r1]) for v in world)
                fx, fy = (np.asarray(v) for v in frame_wcs.world_to_pixel_values(lon, lat))
                del lon, lat
            else:
                # reproject_interp: meshgrid of float pixel indices, raveled, (x, y) to the transform.
                ys, xs = np.meshgrid(np.arange(r0, r1, dtype=float), np.arange(w, dtype=float), indexing="ij",
                                     sparse=False, copy=False)
                fx, fy = _pixel_to_pixel(target, frame_wcs, xs.ravel(), ys.ravel())
                del xs, ys
        coords = _clip_coords(np.array([fy, fx]), planes.shape[1:])
        del fx, fy
        for i in range(n_planes):
            map_coordinates(planes[i], coords, output=flat[i, r0 * w:r1 * w], order=1, cval=np.nan,
                            mode="constant")
    return out


def reproject_patch(data: np.ndarray | None, alpha: np.ndarray | None, frame_wcs: WCS, grid_wcs: WCS,
                    tile_y0: int, tile_x0: int, box: tuple[int, int, int, int], *,
                    planes: np.ndarray | None = None, target: Any = None,
                    sky: TileSky | None = None) -> tuple[np.ndarray, np.ndarray]:
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
    sky : TileSky, optional
        The tile's shared sky coordinates (same ``grid_wcs``, ``tile_y0``, ``tile_x0``);
        the result is the same with or without it.

    Returns
    -------
    patch : ndarray, shape (py1 - py0, px1 - px0, C), float32
        Bilinear samples of the frame; NaN where it has no data.
    weight : ndarray, shape (py1 - py0, px1 - px0), float32
        Reprojection footprint × ALPHA, in [0, 1]; 0 where ``patch`` is all NaN.
    """
    py0, py1, px0, px1 = box
    h, w = py1 - py0, px1 - px0
    if planes is None:
        planes = frame_planes(data, alpha)
    channels = planes.shape[0] - (1 if alpha is not None else 0)
    if target is None:
        target = tile_wcs(grid_wcs, tile_y0 + py0, tile_x0 + px0, (h, w))
    world = sky.patch(box) if sky is not None else None
    out = reproject_planes(planes, frame_wcs, target, (h, w), world=world)
    # A pixel counts where any channel interpolated (a NaN in one channel stays NaN there).
    weight = np.any(~np.isnan(out[:channels]), axis=0).astype(np.float32)
    if alpha is not None:
        a = np.where(np.isfinite(out[channels]), out[channels], 0.0)
        weight = weight * np.clip(a, 0.0, 1.0)
    weight = np.where(np.isfinite(weight) & (weight > 0), weight, 0.0).astype(np.float32)
    patch = np.moveaxis(out[:channels], 0, -1)
    patch = np.where(weight[..., None] > 0, patch, np.float32(np.nan))
    return np.ascontiguousarray(patch, dtype=np.float32), weight
