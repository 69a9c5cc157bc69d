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
- the coordinates are clipped and sampled in one pass, by a numba kernel where numba
  is installed (:func:`~zemosaic_xp.backends.numba.bilinear.bilinear_sample`: SciPy's
  floats, 3–5× faster than ``map_coordinates`` with its separate clipping), else by
  SciPy once per plane;
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

The radial weight (``apply_radial_weight``) belongs to the frame, not to the tile: it
down-weights the frame's own edges (vignetting, field curvature), so it is the frame's
map (its centre, its half diagonal) evaluated at the frame position each patch pixel
samples, and it travels with the patch in its weight. A tile's result therefore does not
depend on the tile's size or position, on its cells, or on the memory budget.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
from astropy.wcs import WCS

from ..core.config import StackConfig
from ..core.weights import radial_weight_at
from ..io.framecache import frame_planes
from .geometry import tile_wcs
from .point_threads import clip_coords, pixel_grid_to_world, pixel_to_world, sample_planes, world_to_pixel

__all__ = ["reproject_patch", "reproject_planes", "frame_planes", "radial_at_patch", "TileSky",
           "inverse_variance_weight"]

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
    threads : int
        Threads for the transform (:mod:`.point_threads`; the same floats).

    Notes
    -----
    The coordinates (two float64 arrays of the tile's shape) are computed on the first
    :meth:`patch` call that can use them: only when the canvas is ICRS and every
    longitude is in [0, 360) (what :func:`_pixel_to_pixel`'s fast path needs).
    """

    def __init__(self, grid_wcs: WCS, y0: int, x0: int, shape: tuple[int, int], threads: int = 1) -> None:
        self.threads = int(threads)
        self.grid_crpix = (float(grid_wcs.wcs.crpix[0]), float(grid_wcs.wcs.crpix[1]))
        self.y0, self.x0, self.shape = int(y0), int(x0), (int(shape[0]), int(shape[1]))
        self.target = tile_wcs(grid_wcs, y0, x0, shape)
        self._world: tuple[np.ndarray, np.ndarray] | None = None
        self._usable: bool | None = None

    def _compute(self) -> bool:
        if not _is_icrs(self.target):
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lon, lat = pixel_grid_to_world(self.target, self.shape, threads=self.threads)
        if np.any(lon < 0.0) or np.any(lon >= 360.0) or np.any(np.abs(lat) > 90.0):
            return False
        self._world = (lon, lat)
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


def _pixel_to_pixel(wcs_out: WCS, wcs_in: WCS, x: np.ndarray, y: np.ndarray,
                    threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (x, y) of ``wcs_out`` → pixel of ``wcs_in``, as ``astropy.wcs.utils.pixel_to_pixel``.

    The fast path uses the world values directly; ``pixel_to_pixel`` would wrap them in
    a ``SkyCoord`` (longitudes wrapped to [0, 360), latitudes checked) and take them
    out again, which leaves them unchanged when they are already in range and both WCS
    are ICRS (no frame transformation). That path runs over ``threads`` threads
    (:mod:`.point_threads`: the same floats).
    """
    if _both_icrs(wcs_out, wcs_in):
        lon, lat = pixel_to_world(wcs_out, x, y, threads=threads)
        in_range = not (np.any(lon < 0.0) or np.any(lon >= 360.0) or np.any(np.abs(lat) > 90.0))
        if in_range:
            return world_to_pixel(wcs_in, lon, lat, threads=threads)
    from astropy.wcs.utils import pixel_to_pixel

    fx, fy = pixel_to_pixel(wcs_out, wcs_in, x, y)
    return np.asarray(fx), np.asarray(fy)


def reproject_planes(planes: np.ndarray, frame_wcs: WCS, target: WCS, shape: tuple[int, int],
                     out: np.ndarray | None = None, extra: tuple[np.ndarray, ...] = (),
                     world: tuple[np.ndarray, np.ndarray] | None = None, threads: int = 1) -> np.ndarray:
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
    world : (lon, lat), optional
        The sky coordinates of ``target``'s pixels, two arrays of shape ``(h, w)``, in
        degrees, from :meth:`TileSky.patch` (``target`` is then ICRS); used when
        ``frame_wcs`` is ICRS too, instead of transforming the pixels again.
    threads : int
        Threads for the transforms and the samples (:mod:`.point_threads`; the same
        floats).

    Returns
    -------
    ndarray, shape (P + len(extra), h, w), float32
        NaN outside the frame (exactly ``reproject_interp(..., roundtrip_coords=False)``).
    """
    return _reproject(planes, frame_wcs, target, shape, out=out, extra=extra, world=world, threads=threads)[0]


def _chunk_coords(frame_wcs: WCS, target: WCS, shape: tuple[int, int],
                  world: tuple[np.ndarray, np.ndarray] | None = None,
                  threads: int = 1) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Frame pixel coordinates of ``target``'s pixels in row chunks: ``(r0, r1, fy, fx)``.

    ``fy``, ``fx`` have shape ((r1 - r0)·w,), float64: row and column in the frame, not
    yet clipped (:func:`~.point_threads.clip_coords`). Every pixel is transformed on
    its own, so the chunks change no bit, and the temporaries (~80 bytes a pixel) stay
    ~20 MB for any patch size.
    """
    h, w = shape
    shared = world is not None and _is_icrs(frame_wcs)
    step = max(1, _CHUNK_PX // max(1, w))
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # distorted-inverse convergence warnings at far pixels
            if shared:
                lon, lat = (np.ravel(v[r0:r1]) for v in world)
                fx, fy = world_to_pixel(frame_wcs, lon, lat, threads=threads)
                del lon, lat
            else:
                # reproject_interp: meshgrid of float pixel indices, raveled, (x, y) to the transform.
                ys, xs = np.meshgrid(np.arange(r0, r1, dtype=float), np.arange(w, dtype=float), indexing="ij",
                                     sparse=False, copy=False)
                fx, fy = _pixel_to_pixel(target, frame_wcs, xs.ravel(), ys.ravel(), threads=threads)
                del xs, ys
        yield r0, r1, np.asarray(fy, dtype=np.float64), np.asarray(fx, dtype=np.float64)


def _frame_coords(frame_wcs: WCS, target: WCS, shape: tuple[int, int], frame_shape: tuple[int, ...]) -> np.ndarray:
    """Frame pixel coordinates (row, column), shape (2, h·w), of the pixels of ``target``, clipped as reproject."""
    return np.concatenate([clip_coords(np.array([fy, fx]), frame_shape)
                           for _, _, fy, fx in _chunk_coords(frame_wcs, target, shape)], axis=1)


def _reproject(planes: np.ndarray, frame_wcs: WCS, target: WCS, shape: tuple[int, int], *,
               out: np.ndarray | None = None, extra: tuple[np.ndarray, ...] = (),
               world: tuple[np.ndarray, np.ndarray] | None = None,
               radial: StackConfig | None = None, threads: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Bilinear samples of ``planes`` then ``extra`` (P, h, w), and the frame's radial map (h, w) if asked."""
    h, w = shape
    n_planes = planes.shape[0] + len(extra)
    if out is None:
        out = np.empty((n_planes, h, w), dtype=np.float32)
    flat = out.reshape(n_planes, h * w)
    radial_map = None
    sources = [planes[i] for i in range(planes.shape[0])] + list(extra)
    for r0, r1, fy, fx in _chunk_coords(frame_wcs, target, shape, world, threads):
        # The radial map needs the clipped coordinates too: clipped once here, then.
        coords = clip_coords(np.array([fy, fx]), planes.shape[1:]) if radial is not None else None
        sample_planes(sources, fy if coords is None else coords[0], fx if coords is None else coords[1],
                      [flat[i, r0 * w:r1 * w] for i in range(n_planes)], [np.nan] * n_planes,
                      clip=coords is None, threads=threads)
        if coords is not None:
            part = radial_at_patch(coords, planes.shape[1:], (r1 - r0, w), radial)
            if radial_map is None:  # the map's own dtype: the weight is multiplied exactly as unchunked
                radial_map = np.empty((h, w), dtype=part.dtype)
            radial_map[r0:r1] = part
    return out, radial_map


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
    from ..backends.numpy_xp import numpy_namespace

    np_xp = numpy_namespace()

    height, width = (int(v) for v in frame_shape[:2])
    radial = radial_weight_at(coords[0], coords[1], height=height, width=width,
                              feather_fraction=config.radial_feather_fraction,
                              shape_power=config.radial_shape_power, floor=config.radial_floor, xp=np_xp)
    return np.asarray(radial).reshape(shape)


def reproject_patch(data: np.ndarray | None, alpha: np.ndarray | None, frame_wcs: WCS, grid_wcs: WCS,
                    tile_y0: int, tile_x0: int, box: tuple[int, int, int, int], *,
                    planes: np.ndarray | None = None, target: Any = None,
                    radial: StackConfig | None = None, hits: np.ndarray | None = None,
                    sky: TileSky | None = None, variance: np.ndarray | None = None,
                    threads: int = 1) -> tuple[np.ndarray, ...]:
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
    sky : TileSky, optional
        The tile's shared sky coordinates (same ``grid_wcs``, ``tile_y0``, ``tile_x0``);
        the result is the same with or without it.
    variance : ndarray, shape (C, H, W), float32, optional
        The frame's variances ``σ²`` (``weighting="uncertainty"``,
        :meth:`~zemosaic_xp.io.framecache.FrameCache.variance`; NaN = unusable): reprojected
        with the same bilinear coordinates as the data, and ``1/σ²`` of the result
        multiplied into the weight, per channel (:func:`inverse_variance_weight`).
    threads : int
        Threads for the transforms and the samples (:mod:`.point_threads`): the same
        result for any count.

    Returns
    -------
    patch : ndarray, shape (py1 - py0, px1 - px0, C), float32
        Bilinear samples of the frame; NaN where it has no data (with ``variance``:
        also where that channel's weight is 0).
    weight : ndarray, shape (py1 - py0, px1 - px0), or (py1 - py0, px1 - px0, C) with ``variance``, float32
        Reprojection footprint × ALPHA (× the radial map), in [0, 1] (× ``1/σ²`` with
        ``variance``); 0 where ``patch`` is all NaN.
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
    extra = () if variance is None else tuple(variance)  # sampled after the planes, the hit map last
    if hits is not None:
        hit_map = np.zeros(planes.shape[1:], dtype=np.float32)
        hit_map.ravel()[hits] = 1.0
        extra = extra + (hit_map,)
    world = sky.patch(box) if sky is not None else None
    use_radial = radial if radial is not None and radial.radial_weight else None
    out, radial_map = _reproject(planes, frame_wcs, target, (h, w), extra=extra, world=world, radial=use_radial,
                                 threads=threads)
    # A pixel counts where any channel interpolated (a NaN in one channel stays NaN there).
    weight = np.any(~np.isnan(out[:channels]), axis=0).astype(np.float32)
    if alpha is not None:
        a = np.where(np.isfinite(out[channels]), out[channels], 0.0)
        weight = weight * np.clip(a, 0.0, 1.0)
    if radial_map is not None:
        weight = weight * radial_map
    weight = np.where(np.isfinite(weight) & (weight > 0), weight, 0.0).astype(np.float32)
    patch = np.moveaxis(out[:channels], 0, -1)
    if variance is not None:
        first = planes.shape[0]
        weight = inverse_variance_weight(weight, out[first:first + channels])
        patch = np.where(weight > 0, patch, np.float32(np.nan))
        has = np.any(weight > 0, axis=-1)
    else:
        patch = np.where(weight[..., None] > 0, patch, np.float32(np.nan))
        has = weight > 0
    patch = np.ascontiguousarray(patch, dtype=np.float32)
    if hits is not None:
        return patch, weight, (out[-1] > 0) & has  # NaN (outside the frame) compares False
    return patch, weight


def inverse_variance_weight(weight: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """A patch's weight times the inverse of its reprojected variance, per channel.

    The estimator: the frame's variance ``σ²`` is interpolated bilinearly with the
    data's own coordinates and the weight is ``1/σ²`` of the result. Variance, not
    ``1/σ²`` or ``σ``, is the quantity that interpolates: a bilinear sample
    ``Σ aᵢ xᵢ`` (``Σ aᵢ = 1``) of independent pixels has variance ``Σ aᵢ² σᵢ²``, which
    ``Σ aᵢ σᵢ²`` bounds from above (equal at pixel centres), so the weight is never
    more than the sample earns and equals ``1/σ²`` for a uniform σ; interpolating
    ``1/σ²`` would let the best neighbour dominate. The correlation the resampling
    brings between neighbouring output pixels is ignored, as in the usual
    inverse-variance coadd. A variance that is NaN (a stencil touching an unusable
    σ: 0, inf, NaN, or outside the frame), not finite or not > 0 gives weight 0.

    Parameters
    ----------
    weight : ndarray, shape (h, w), float32
        Footprint × ALPHA (× radial map) of the patch.
    variance : ndarray, shape (C, h, w), float32
        The reprojected variances of the frame's channels.

    Returns
    -------
    ndarray, shape (h, w, C), float32
        ``weight / σ²``; 0 where that is not finite or not > 0.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = weight[..., None] / np.moveaxis(variance, 0, -1)
    return np.where(np.isfinite(out) & (out > 0), out, np.float32(0.0)).astype(np.float32)
