"""Per-point work of the grid split over threads: WCS transforms and bilinear samples.

astropy's WCS transforms (wcslib's ``p2s`` / ``s2p`` behind ``pixel_to_world_values``
and ``world_to_pixel_values``) and ``scipy.ndimage.map_coordinates(order=1)`` release
the GIL and compute every point on its own. Splitting the points into contiguous parts,
one per thread, gives the same floats, bit for bit, in less wall time where cores are
free: a run with one worker (tiles in the calling process) gives them its cores
(:func:`~.worker_count.point_threads`). Both are most of a small survey's tile time
(issue 14: 1.8 s of wcslib and 0.6 s of sampling in a 5 s run).

Each extra thread transforms with its own copy of the WCS (a copy gives the same floats:
wcslib derives everything from the same parameters): astropy does not document its WCS
objects as safe to share between threads. The sky → pixel transform of a *distorted* WCS
(SIP, lookup tables) is not split: astropy inverts it by fixed-point iterations that run
until the slowest point of the whole call converges, so a point's last bits depend on
the points it is called with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

__all__ = ["pixel_to_world", "pixel_grid_to_world", "world_to_pixel", "sample_planes", "clip_coords",
           "MIN_POINTS_PER_THREAD", "GRID_CHUNK_POINTS"]

#: Fewest points a thread is given: below ~2 ms of work, starting it costs more than it saves.
MIN_POINTS_PER_THREAD = 32768
#: Points :func:`pixel_grid_to_world` transforms per call: astropy holds ~6 float64 copies
#: of a call's points, so a whole tile at once (1536² px) cost ~110 MB more at the peak.
GRID_CHUNK_POINTS = 65536


def _bounds(n: int, threads: int) -> list[tuple[int, int]]:
    """Contiguous ``[a, b)`` parts of ``n`` points, one per thread, each ≥ the minimum."""
    parts = max(1, min(int(threads), n // MIN_POINTS_PER_THREAD))
    edges = [n * k // parts for k in range(parts + 1)]
    return [(edges[k], edges[k + 1]) for k in range(parts)]


def _run(bounds: list[tuple[int, int]], work: Callable[[int, int, int], Any]) -> list[Any]:
    """``work(k, a, b)`` for every part, the first in this thread; results in part order."""
    if len(bounds) == 1:
        return [work(0, *bounds[0])]
    with ThreadPoolExecutor(max_workers=len(bounds) - 1, thread_name_prefix="zemosaic-points") as pool:
        futures = [pool.submit(work, k, a, b) for k, (a, b) in enumerate(bounds) if k > 0]
        first = work(0, *bounds[0])
        return [first] + [f.result() for f in futures]


def _transform(method: str, wcs: Any, u: np.ndarray, v: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.asarray(u), np.asarray(v)
    pointwise = method == "pixel_to_world_values" or not wcs.has_distortion
    bounds = _bounds(int(u.size), threads) if pointwise and u.ndim == 1 and u.shape == v.shape else [(0, 0)]
    if len(bounds) == 1:
        a, b = getattr(wcs, method)(u, v)
        return np.asarray(a), np.asarray(b)
    copies = [wcs] + [wcs.deepcopy() for _ in bounds[1:]]

    def work(k: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = getattr(copies[k], method)(u[lo:hi], v[lo:hi])
        return np.asarray(a), np.asarray(b)

    parts = _run(bounds, work)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def pixel_to_world(wcs: Any, x: np.ndarray, y: np.ndarray, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``wcs.pixel_to_world_values(x, y)`` over ``threads`` threads, the same floats.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A celestial WCS.
    x, y : ndarray, shape (n,), float64
        0-based pixel coordinates.
    threads : int
        Most threads to use (1: this thread only).

    Returns
    -------
    lon : ndarray, shape (n,), float64
        First world coordinate (degrees for a celestial axis); NaN where wcslib has none.
    lat : ndarray, shape (n,), float64
        Second world coordinate, likewise.
    """
    return _transform("pixel_to_world_values", wcs, x, y, threads)


def pixel_grid_to_world(wcs: Any, shape: tuple[int, int], *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The world coordinates of every pixel of an ``(h, w)`` image, in bounded memory.

    ``wcs.pixel_to_world_values(x, y)`` of the pixel grid (``x = 0 … w − 1`` along rows),
    the same floats, but computed :data:`GRID_CHUNK_POINTS` points at a time into the
    outputs (split over ``threads`` as :func:`pixel_to_world`): no grid of inputs, no
    whole-image temporaries.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A celestial WCS.
    shape : (h, w)
        Image size in px.
    threads : int
        Most threads to use (1: this thread only).

    Returns
    -------
    lon : ndarray, shape (h, w), float64
        First world coordinate of each pixel (degrees for a celestial axis); NaN where
        wcslib has none.
    lat : ndarray, shape (h, w), float64
        Second world coordinate, likewise.
    """
    h, w = (int(v) for v in shape)
    n = h * w
    lon, lat = np.empty(n), np.empty(n)
    bounds = _bounds(n, threads)
    copies = [wcs] + [wcs.deepcopy() for _ in bounds[1:]]
    _run(bounds, partial(_grid_part, copies, w, lon, lat))
    return lon.reshape(h, w), lat.reshape(h, w)


def _grid_part(copies: list[Any], w: int, lon: np.ndarray, lat: np.ndarray, k: int, lo: int, hi: int) -> None:
    """Grid points ``[lo, hi)`` (rows of ``w``) with WCS copy ``k``, a chunk at a time."""
    for a in range(lo, hi, GRID_CHUNK_POINTS):
        b = min(hi, a + GRID_CHUNK_POINTS)
        y, x = np.divmod(np.arange(a, b, dtype=np.int64), w)
        lon[a:b], lat[a:b] = copies[k].pixel_to_world_values(x.astype(np.float64), y.astype(np.float64))


def world_to_pixel(wcs: Any, lon: np.ndarray, lat: np.ndarray, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``wcs.world_to_pixel_values(lon, lat)`` over ``threads`` threads, the same floats.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A celestial WCS; one with distortions is transformed in this thread only
        (astropy's iterative inverse, as called directly).
    lon, lat : ndarray, shape (n,), float64
        World coordinates in the WCS's units (degrees).
    threads : int
        Most threads to use (1: this thread only).

    Returns
    -------
    x : ndarray, shape (n,), float64
        0-based pixel column; NaN where wcslib has none.
    y : ndarray, shape (n,), float64
        0-based pixel row, likewise.
    """
    return _transform("world_to_pixel_values", wcs, lon, lat, threads)


def sample_planes(planes: Sequence[np.ndarray], ys: np.ndarray, xs: np.ndarray, outputs: Sequence[np.ndarray],
                  cvals: Sequence[float], *, clip: bool = False, threads: int = 1) -> None:
    """Bilinear samples of each plane at ``(ys, xs)``, written into ``outputs``, over threads.

    ``scipy.ndimage.map_coordinates(plane, [ys, xs], output=out, order=1,
    mode="constant", cval=cval)`` for each plane, the points split between threads (the
    same floats: order 1 needs no spline prefilter, each point is interpolated alone).
    With numba (:func:`~zemosaic_xp.backends.numba.numba_enabled`) and float32 planes,
    :func:`~zemosaic_xp.backends.numba.bilinear.bilinear_sample` computes the same
    floats in one pass (clipping included), several times faster.

    Parameters
    ----------
    planes : sequence of ndarray, shape (H, W), float32
        The images sampled; NaN propagates to the samples that use it.
    ys, xs : ndarray, shape (n,), float64
        Row and column of each point, 0-based.
    outputs : sequence of ndarray, shape (n,), float32
        One contiguous output per plane, written in place.
    cvals : sequence of float
        The value of each plane outside it (NaN for data, 0 for ALPHA).
    clip : bool
        First move the coordinates in the outer half of the border pixels onto the
        border pixel centres, as ``reproject_interp`` does (a coordinate in
        ``[−0.5, 0)`` becomes 0, one in ``[L − 1, L − 0.5)`` becomes ``L − 1``).
    threads : int
        Most threads to use (1: this thread only).
    """
    bounds = _bounds(int(ys.shape[0]), threads)
    kernel = _bilinear_kernel(planes)
    if kernel is None:
        coords = np.array([ys, xs], dtype=np.float64)
        if clip:
            coords = clip_coords(coords, planes[0].shape)
        work = partial(_sample_part, planes, coords, outputs, cvals, len(bounds) > 1)
    else:
        planes = [np.ascontiguousarray(plane) for plane in planes]  # once, not in every part
        work = partial(_kernel_part, kernel, planes, np.ascontiguousarray(ys, dtype=np.float64),
                       np.ascontiguousarray(xs, dtype=np.float64), outputs, cvals, bool(clip))
    _run(bounds, work)


def clip_coords(coords: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Move the coordinates in the outer half of the border pixels onto the border pixel centres.

    Parameters
    ----------
    coords : ndarray, shape (2, n), float64
        (row, column) of each point.
    shape : (H, W)
        The sampled image's size.

    Returns
    -------
    ndarray, shape (2, n), float64
        A copy: ``[−0.5, 0)`` → 0 and ``[L − 1, L − 0.5)`` → ``L − 1`` per axis, as
        ``reproject_interp`` clips them; NaN stays NaN.
    """
    coords = coords.copy()
    for i in range(coords.shape[0]):
        coords[i][(coords[i] < 0) & (coords[i] >= -0.5)] = 0
        coords[i][(coords[i] < shape[i] - 0.5) & (coords[i] >= shape[i] - 1)] = shape[i] - 1
    return coords


def _bilinear_kernel(planes: Sequence[np.ndarray]) -> Callable[..., None] | None:
    """The numba sampler when numba is on and every plane is 2-D float32, else None (SciPy)."""
    from ..backends.numba import numba_enabled, numba_kernels

    if not planes or not all(p.dtype == np.float32 and p.ndim == 2 for p in planes) or not numba_enabled():
        return None
    kernels = numba_kernels()
    return None if kernels is None else kernels.bilinear_sample


def _kernel_part(kernel: Callable[..., None], planes: Sequence[np.ndarray], ys: np.ndarray, xs: np.ndarray,
                 outputs: Sequence[np.ndarray], cvals: Sequence[float], clip: bool, k: int, lo: int,
                 hi: int) -> None:
    """Sample every plane at points ``[lo, hi)`` with the numba kernel."""
    for plane, out, cval in zip(planes, outputs, cvals):
        part = out[lo:hi]
        if part.shape[0] != hi - lo:
            msg = f"an output holds {out.shape[0]} points, fewer than the {ys.shape[0]} sampled"
            raise ValueError(msg)
        kernel(plane, ys[lo:hi], xs[lo:hi], part, float(cval), clip)


def _sample_part(planes: Sequence[np.ndarray], coords: np.ndarray, outputs: Sequence[np.ndarray],
                 cvals: Sequence[float], split: bool, k: int, lo: int, hi: int) -> None:
    """Sample every plane at points ``[lo, hi)`` (part ``k``) into its output."""
    from scipy.ndimage import map_coordinates

    part = np.ascontiguousarray(coords[:, lo:hi]) if split else coords
    for plane, out, cval in zip(planes, outputs, cvals):
        map_coordinates(plane, part, output=out[lo:hi], order=1, mode="constant", cval=cval)
