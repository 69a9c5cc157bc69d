"""The global mosaic WCS, the tile grid on it, and which frames touch which tile.

``build_global_grid`` reads only FITS headers: each frame's celestial WCS (SIP and
other distortions included, they are honoured when its footprint is projected),
then a distortion-free TAN WCS for the whole survey, the one
``reproject.mosaicking.find_optimal_celestial_wcs`` gives at the median pixel scale
(computed here without importing reproject, :func:`_survey_tan`), rotated
so that the canvas is smallest (shapely's minimum rotated rectangle of the projected
frame outlines, as reproject's ``auto_rotate`` does with the frame corners), cut into
square tiles of ``grid_size_factor`` × the median frame
field of view, overlapping by ``overlap_fraction``, numbered row-major from 1.
A frame joins a tile when its projected footprint touches it; the part of the
tile it touches (its *patch box*) is all that gets reprojected.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from astropy import units as u
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from ..io.fits import FitsFrameSource, frame_wcs
from .plan import PlanEntry

__all__ = ["FrameInfo", "TileSpec", "GlobalGrid", "build_global_grid", "frame_wcs", "tile_wcs",
           "MAX_TILES"]

logger = logging.getLogger(__name__)

#: More tiles than this is a configuration error (a grid_size_factor far too small).
MAX_TILES = 50000
_MIN_TILE_PX = 32
_EDGE_POINTS = 9  # points per frame edge when projecting footprints (distortion bends edges)
_PATCH_PAD_PX = 2  # margin around a projected footprint so interpolation edges are kept
# The canvas is rotated only when that shrinks it by more than this fraction.
_ROTATION_GAIN = 1e-9
# Hull edges whose directions differ by less than this are parallel (rounding only).
_PARALLEL_RAD = 1e-9


@dataclass(frozen=True)
class FrameInfo:
    """A frame of the survey as seen by the grid (headers only).

    Attributes
    ----------
    index : int
        Position in the plan (frames are stacked in this order).
    path : str
        The FITS file.
    exposure : float
        Exposure in seconds (the plan's; 1.0 when absent).
    shape : (H, W)
        Frame size in px.
    channels : int
        Colour channels (an ALPHA plane not counted).
    pixel_scale_deg : float
        Mean pixel scale of the frame's celestial WCS, deg/px.
    footprint : (xmin, xmax, ymin, ymax)
        Bounding box of the frame's outline in global canvas pixel coordinates.
    wcs_key : str
        Digest of the frame's WCS header (for the resume hash).
    size_bytes, mtime_ns : int
        File identity (for the resume hash).
    """

    index: int
    path: str
    exposure: float
    shape: tuple[int, int]
    channels: int
    pixel_scale_deg: float
    footprint: tuple[float, float, float, float]
    wcs_key: str
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class TileSpec:
    """One tile of the grid.

    Attributes
    ----------
    tile_id : int
        Row-major position, from 1.
    y0, y1, x0, x1 : int
        Pixel box ``[y0, y1) × [x0, x1)`` on the global canvas.
    frames : tuple of int
        Indices (into ``GlobalGrid.frames``) of the frames touching the tile, ascending.
    patch_boxes : tuple of (py0, py1, px0, px1)
        For each of ``frames``, the part of the tile its footprint touches, in tile pixels.
    """

    tile_id: int
    y0: int
    y1: int
    x0: int
    x1: int
    frames: tuple[int, ...]
    patch_boxes: tuple[tuple[int, int, int, int], ...]

    @property
    def shape(self) -> tuple[int, int]:
        """Return the tile size.

        Returns
        -------
        (h, w)
            ``(y1 - y0, x1 - x0)`` in px.
        """
        return (self.y1 - self.y0, self.x1 - self.x0)


@dataclass
class GlobalGrid:
    """The mosaic canvas and its tiles.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        Distortion-free TAN WCS of the canvas (pixel (0, 0) = canvas corner).
    shape : (H, W)
        Canvas size in px.
    frames : list of FrameInfo
        The frames with a usable WCS, in plan order (``FrameInfo.index`` = position).
    tiles : list of TileSpec
        Tiles touched by at least one frame, in id order.
    tile_size_px, step_px : int
        Tile side and distance between neighbouring tile origins, in px
        (``tile_size_px - step_px`` is the overlap).
    pixel_scale_deg : float
        Canvas pixel scale, deg/px (the median of the frames').
    channels : int
        Channels of every frame.
    fallback : bool
        True when the optimal WCS was degenerate or failed and the fallback was used.
    unit : str or None
        The ``BUNIT`` every frame shares (``CCDData.write`` files), kept by the
        mosaic; None when the frames have none.
    """

    wcs: WCS
    shape: tuple[int, int]
    frames: list[FrameInfo]
    tiles: list[TileSpec]
    tile_size_px: int
    step_px: int
    pixel_scale_deg: float
    channels: int
    fallback: bool = False
    unit: str | None = None

    def header_string(self) -> str:
        """Return the canvas WCS as a FITS header string.

        Returns
        -------
        str
            ``WCS.to_header_string(relax=True)``: what tile tasks carry across process
            boundaries, and part of each tile's resume hash.
        """
        return self.wcs.to_header_string(relax=True)


def _outline(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates along the frame's outer edge (pixel corners, 0-based)."""
    h, w = shape
    xs = np.linspace(-0.5, w - 0.5, _EDGE_POINTS)
    ys = np.linspace(-0.5, h - 0.5, _EDGE_POINTS)
    px = np.concatenate([xs, np.full(_EDGE_POINTS, w - 0.5), xs[::-1], np.full(_EDGE_POINTS, -0.5)])
    py = np.concatenate([np.full(_EDGE_POINTS, -0.5), ys, np.full(_EDGE_POINTS, h - 0.5), ys[::-1]])
    return px, py


def _project_outline(wcs_in: WCS, shape: tuple[int, int], wcs_out: WCS) -> tuple[np.ndarray, np.ndarray]:
    px, py = _outline(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of distorted inverses
        world = wcs_in.celestial.pixel_to_world_values(px, py)
        ox, oy = wcs_out.world_to_pixel_values(*world)
    return np.asarray(ox, dtype=np.float64), np.asarray(oy, dtype=np.float64)


def _plain_tan(reference: WCS) -> WCS:
    """A TAN WCS with ``reference``'s tangent point, scale and rotation, no distortion."""
    cel = reference.celestial
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.crval = cel.wcs.crval
    out.wcs.crpix = cel.wcs.crpix
    out.wcs.cd = cel.pixel_scale_matrix
    out.wcs.set()
    return out


def _min_area_angle(points: np.ndarray) -> float:
    """Rotation (radians, in [0, π/2)) of the smallest rectangle holding ``points`` (M, 2).

    shapely's minimum rotated rectangle (``oriented_envelope``: GEOS, rotating calipers
    on the convex hull) finds it. One of its sides lies on a hull edge, whose direction
    gives the angle exactly (the rectangle's corners carry rounding); of hull edges
    parallel up to rounding, the one with the smallest angle. 0 when the rectangle is
    no smaller than the axis-aligned box, so that an unrotated survey stays unrotated.
    """
    import shapely

    cloud = shapely.MultiPoint(points)
    rect = shapely.oriented_envelope(cloud)
    box_area = float(np.ptp(points[:, 0]) * np.ptp(points[:, 1]))
    if rect.geom_type != "Polygon" or not rect.area < box_area * (1.0 - _ROTATION_GAIN):
        return 0.0
    corners = np.asarray(rect.exterior.coords)
    side = corners[1] - corners[0]
    target = math.atan2(side[1], side[0]) % (math.pi / 2)
    edges = np.diff(np.asarray(cloud.convex_hull.exterior.coords), axis=0)
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))  # sorted
    gap = np.abs(angles - target)
    parallel = angles[np.minimum(gap, np.pi / 2 - gap) <= _PARALLEL_RAD]
    return float(parallel[0]) if parallel.size else target


def _rotate_to_min_area(wcs: WCS, points: tuple[np.ndarray, np.ndarray]) -> WCS:
    """Rotate ``wcs`` about its reference pixel so the points' bounding box is smallest.

    What ``find_optimal_celestial_wcs(auto_rotate=True)`` does, with shapely too, but on
    the projected outlines of :func:`_project_outline` (SIP distortion included) rather
    than the four corners, and as a rotation of the CD matrix rather than a PC matrix
    folded into ±45°: reproject's own rotation gives other canvases (a tile column less
    on the golden survey of ``tools/golden.py``). The angle is :func:`_min_area_angle`'s.
    """
    xy = np.column_stack(points)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    theta = _min_area_angle(xy) if len(xy) >= 3 else 0.0
    if theta == 0.0:  # load-bearing: keeps the WCS of an unrotated survey as reproject made it
        return wcs
    c, s = math.cos(theta), math.sin(theta)
    # new pixel axes = old axes rotated by theta: p_old = R^T p_new, so CD_new = CD_old R^T.
    rot = np.array([[c, -s], [s, c]])
    out = wcs.deepcopy()
    out.wcs.cd = wcs.pixel_scale_matrix @ rot
    out.wcs.set()
    return out


def _survey_tan(frames: Sequence[tuple[tuple[int, int], WCS]], scale_deg: float) -> WCS:
    """TAN WCS centred on the mean of the frames' reference points, at ``scale_deg`` per px.

    The optimal WCS of ``reproject.mosaicking.find_optimal_celestial_wcs`` (no rotation,
    TAN, the given resolution), computed here with the same astropy operations so that
    it is the same WCS to the last bit (tested against reproject), without importing
    reproject: its import pulls in dask, about 0.5 s of every run's set-up.

    The reference sky position is the vector mean of every frame's CRPIX on the sky,
    in the first frame's celestial frame; longitude pixels count east to the left
    (CDELT1 < 0); CRPIX puts the lowest pixel corner of all frames at (0.5, 0.5).
    """
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import celestial_frame_to_wcs, pixel_to_skycoord, skycoord_to_pixel, wcs_to_celestial_frame

    frame = None
    corners, references = [], []
    for (ny, nx), wcs in frames:
        if frame is None:
            frame = wcs_to_celestial_frame(wcs)
        xc = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
        yc = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
        corners.append(wcs.pixel_to_world(xc, yc).transform_to(frame).frame)
        references.append(pixel_to_skycoord(*wcs.wcs.crpix, wcs, origin=1).transform_to(frame).frame)
    corners = SkyCoord(corners)
    references = SkyCoord(references)
    reference = SkyCoord(references.data.mean(), frame=references.frame).transform_to(frame)
    out = celestial_frame_to_wcs(frame, projection="TAN")
    for axis in (0, 1):
        if out.wcs.cunit[axis] == "":
            out.wcs.cunit[axis] = "deg"
    rep = reference.represent_as("unitspherical")
    resolution = scale_deg * u.deg
    out.wcs.crval = (rep.lon.to_value(out.wcs.cunit[0]), rep.lat.to_value(out.wcs.cunit[1]))
    out.wcs.cdelt = (-resolution.to_value(out.wcs.cunit[0]), resolution.to_value(out.wcs.cunit[1]))
    out.wcs.crpix = (1, 1)  # the corners' pixels relative to pixel (1, 1), then shifted
    xs, ys = skycoord_to_pixel(corners, out, origin=1)
    out.wcs.crpix = (1 - xs.min()) + 0.5, (1 - ys.min()) + 0.5
    return out


def _optimal_wcs(frames: Sequence[tuple[tuple[int, int], WCS]], scale_deg: float) -> WCS:
    """The survey's TAN WCS: reproject's optimal centre and scale, rotated to the smallest canvas."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = _survey_tan([(shape, wcs.celestial) for shape, wcs in frames], scale_deg)
    xs, ys = [], []
    for shape, fw in frames:
        ox, oy = _project_outline(fw, shape, wcs)
        xs.append(ox)
        ys.append(oy)
    return _rotate_to_min_area(wcs, (np.concatenate(xs), np.concatenate(ys)))


def _canvas(wcs: WCS, outlines: list[tuple[np.ndarray, np.ndarray]]) -> tuple[WCS, tuple[int, int]]:
    """Shift ``wcs`` so the canvas starts at the outlines' lowest pixel; return it and (H, W)."""
    xs = np.concatenate([o[0] for o in outlines])
    ys = np.concatenate([o[1] for o in outlines])
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        msg = "frame outlines do not project onto the mosaic WCS"
        raise ValueError(msg)
    ox, oy = math.floor(xs.min() + 0.5), math.floor(ys.min() + 0.5)
    width = math.floor(xs.max() + 0.5) - ox + 1
    height = math.floor(ys.max() + 0.5) - oy + 1
    out = wcs.deepcopy()
    out.wcs.crpix = [wcs.wcs.crpix[0] - ox, wcs.wcs.crpix[1] - oy]
    out.wcs.set()
    out.pixel_shape = (width, height)
    return out, (height, width)


def _load_frames(entries: Sequence[PlanEntry]) -> list[tuple[PlanEntry, FitsFrameSource, WCS]]:
    from ..io.framecache import FRAMES

    loaded = []
    for entry in entries:
        try:
            # Through the process's frame cache: the normalisation and the tiles made in
            # this process find the parsed header and WCS there.
            cached = FRAMES.entry(entry.path)
            source, wcs = cached.source, cached.wcs
        except (ValueError, OSError) as exc:
            logger.warning("[GRID] frame skipped: %s", exc)
            continue
        loaded.append((entry, source, wcs))
    if not loaded:
        msg = "no frame of the plan has a usable celestial WCS; grid mode needs plate-solved FITS frames"
        raise ValueError(msg)
    channels = {source.channels for _, source, _ in loaded}
    if len(channels) > 1:
        first = loaded[0][1]
        odd = next(s for _, s, _ in loaded if s.channels != first.channels)
        msg = (f"'{odd.path}' has {odd.channels} channel(s) but '{first.path}' has {first.channels}; "
               f"a grid run stacks frames of one channel layout (split the plan)")
        raise ValueError(msg)
    frame_unit(loaded)
    return loaded


def frame_unit(loaded: Sequence[tuple[Any, Any, Any]]) -> str | None:
    """The ``BUNIT`` every loaded frame shares.

    Parameters
    ----------
    loaded : sequence of (PlanEntry, FitsFrameSource, WCS)
        The plan's frames as :func:`_load_frames` returns them.

    Returns
    -------
    str or None
        The shared unit (stripped); None when no frame has one.

    Raises
    ------
    ValueError
        Two frames differ (a frame without ``BUNIT`` among frames with one counts as
        different); the message names both files and both units.
    """
    def _unit(source: Any) -> str | None:
        value = source.card("BUNIT")
        return None if value is None or not str(value).strip() else str(value).strip()

    first = loaded[0][1]
    unit = _unit(first)
    for _, source, _ in loaded[1:]:
        other = _unit(source)
        if other != unit:
            msg = (f"'{source.path}' has BUNIT {other} but '{first.path}' has {unit}: every frame of a grid "
                   f"run must share one unit (convert them first, e.g. CCDData.convert_unit_to)")
            raise ValueError(msg)
    return unit


def _tile_starts(length: int, size: int, step: int) -> list[int]:
    starts = [0]
    while starts[-1] + size < length:
        starts.append(starts[-1] + step)
    return starts


def _patch_box(footprint: tuple[float, float, float, float], y0: int, y1: int, x0: int,
               x1: int) -> tuple[int, int, int, int] | None:
    xmin, xmax, ymin, ymax = footprint
    fx0 = max(x0, math.floor(xmin + 0.5) - _PATCH_PAD_PX)
    fx1 = min(x1, math.floor(xmax + 0.5) + 1 + _PATCH_PAD_PX)
    fy0 = max(y0, math.floor(ymin + 0.5) - _PATCH_PAD_PX)
    fy1 = min(y1, math.floor(ymax + 0.5) + 1 + _PATCH_PAD_PX)
    if fx0 >= fx1 or fy0 >= fy1:
        return None
    return (fy0 - y0, fy1 - y0, fx0 - x0, fx1 - x0)


def _make_tiles(shape: tuple[int, int], size: int, step: int, frames: list[FrameInfo]) -> list[TileSpec]:
    height, width = shape
    ys, xs = _tile_starts(height, size, step), _tile_starts(width, size, step)
    if len(ys) * len(xs) > MAX_TILES:
        msg = (f"the grid would have {len(ys) * len(xs)} tiles (more than {MAX_TILES}); raise "
               f"`grid_size_factor` (tiles are {size} px on a {width}x{height} px canvas)")
        raise ValueError(msg)
    tiles = []
    tile_id = 0
    for y0 in ys:
        for x0 in xs:
            tile_id += 1
            y1, x1 = min(height, y0 + size), min(width, x0 + size)
            members, boxes = [], []
            for frame in frames:
                box = _patch_box(frame.footprint, y0, y1, x0, x1)
                if box is not None:
                    members.append(frame.index)
                    boxes.append(box)
            if members:
                tiles.append(TileSpec(tile_id, y0, y1, x0, x1, tuple(members), tuple(boxes)))
    return tiles


def _degenerate(shape: tuple[int, int], frame_shapes: list[tuple[int, int]]) -> bool:
    med_h = float(np.median([s[0] for s in frame_shapes]))
    med_w = float(np.median([s[1] for s in frame_shapes]))
    h, w = shape
    # Upstream also rejects any side < 256 px; frames smaller than that are legitimate
    # here (tests, thumbnails), so the floor scales with the frames instead.
    return h < 0.5 * min(med_h, med_w) or w < 0.5 * min(med_h, med_w)


def _frame_info(index: int, entry: PlanEntry, source: FitsFrameSource, fw: WCS, canvas: WCS,
                scale: float) -> FrameInfo:
    ox, oy = _project_outline(fw, (source.height, source.width), canvas)
    stat = os.stat(source.path)
    key = hashlib.sha256(fw.to_header_string(relax=True).encode()).hexdigest()[:16]
    return FrameInfo(index, source.path, entry.exposure, (source.height, source.width), source.channels,
                     scale, (float(ox.min()), float(ox.max()), float(oy.min()), float(oy.max())), key,
                     int(stat.st_size), int(stat.st_mtime_ns))


def build_global_grid(entries: Sequence[PlanEntry], *, grid_size_factor: float,
                      overlap_fraction: float) -> GlobalGrid:
    """Global TAN WCS, canvas and tiles for the frames of a plan.

    Parameters
    ----------
    entries : sequence of PlanEntry
        Frames; those without a usable celestial WCS are skipped with a warning.
    grid_size_factor : float
        Tile side in median frame fields of view.
    overlap_fraction : float
        Tile overlap as a fraction of the tile side, [0, 0.9].

    Returns
    -------
    GlobalGrid
        The canvas WCS and shape, the frames with a usable WCS and the tiles that at
        least one of them touches. ``fallback`` is True when the optimal WCS
        failed or was degenerate and a TAN WCS on the first frame was used instead
        (logged as a warning).

    Raises
    ------
    ValueError
        No usable frame, mixed channel layouts, or more than ``MAX_TILES`` tiles.
    ImportError
        shapely is not installed.
    """
    loaded = _load_frames(entries)
    shapes = [(s.height, s.width) for _, s, _ in loaded]
    scales = [float(np.mean(proj_plane_pixel_scales(w.celestial))) for _, _, w in loaded]
    scale = float(np.median(scales))
    pairs = list(zip(shapes, [w for _, _, w in loaded]))
    fallback = False
    try:
        projection = _optimal_wcs(pairs, scale)
        outlines = [_project_outline(w, s, projection) for s, w in pairs]
        canvas, shape = _canvas(projection, outlines)
        fallback = _degenerate(shape, shapes)
        if fallback:
            logger.warning("[GRID] optimal WCS is degenerate (%dx%d px); using the fallback WCS",
                           shape[1], shape[0])
    except ImportError:
        raise  # shapely missing: an installation to fix, not a survey to work around
    except Exception as exc:  # noqa: BLE001 - any failure of the optimiser means "use the fallback"
        logger.warning("[GRID] optimal WCS failed (%s); using the fallback WCS", exc)
        fallback = True
    if fallback:
        projection = _plain_tan(pairs[0][1])
        outlines = [_project_outline(w, s, projection) for s, w in pairs]
        canvas, shape = _canvas(projection, outlines)
    frames = [_frame_info(i, e, s, w, canvas, scales[i]) for i, (e, s, w) in enumerate(loaded)]
    fov_px = float(np.median([max(f.shape) * f.pixel_scale_deg / scale for f in frames]))
    size = max(_MIN_TILE_PX, int(round(grid_size_factor * fov_px)))
    overlap = min(max(overlap_fraction, 0.0), 0.9)
    step = max(1, int(round(size * (1.0 - overlap))))
    tiles = _make_tiles(shape, size, step, frames)
    logger.info("[GRID] global canvas %dx%d px at %.3f arcsec/px, %d tiles of %d px (step %d), %d frames%s",
                shape[1], shape[0], scale * 3600.0, len(tiles), size, step, len(frames),
                " (fallback WCS)" if fallback else "")
    return GlobalGrid(canvas, shape, frames, tiles, size, step, scale, frames[0].channels, fallback,
                      unit=frame_unit(loaded))


def tile_wcs(grid_wcs: WCS, y0: int, x0: int, shape: tuple[int, int]) -> WCS:
    """Return the canvas WCS shifted to a box of the canvas.

    Parameters
    ----------
    grid_wcs : astropy.wcs.WCS
        The canvas WCS (:attr:`GlobalGrid.wcs`); not modified.
    y0, x0 : int
        Canvas pixel of the box's pixel (0, 0).
    shape : (h, w)
        Box size in px.

    Returns
    -------
    astropy.wcs.WCS
        A copy of ``grid_wcs`` with CRPIX moved by ``(-x0, -y0)`` and ``pixel_shape``
        ``(w, h)``: pixel (0, 0) of the box is canvas pixel (y0, x0).
    """
    out = copy.deepcopy(grid_wcs)
    out.wcs.crpix = [grid_wcs.wcs.crpix[0] - x0, grid_wcs.wcs.crpix[1] - y0]
    out.wcs.set()
    out.pixel_shape = (shape[1], shape[0])
    return out
