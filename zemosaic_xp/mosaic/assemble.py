"""Mosaic assembly: photometric matching between stacked tiles, feathered blending, outputs.

:func:`assemble_mosaic` takes stacked tiles (in memory, on the host; a grid run's, or
any tiles placed on one canvas) and returns the seamless mosaic: per-channel gains and
offsets fitted robustly on the overlaps and solved globally (:mod:`.photometry`), then
a feathered, weight-aware blend (:mod:`.blend`). :func:`write_mosaic_outputs` writes
``mosaic_grid.fits``, ``mosaic_grid_coverage.fits`` and ``mosaic_grid_preview.png``
(:mod:`.preview`) atomically; :func:`zemosaic_xp.diagnostics.seam_steps` measures what
is left of the seams.

Departures from upstream ZeMosaic on purpose (``upstream_spec.md`` §3.7–3.8): gain *and*
offset are solved (not multiplicative median scaling), NaN is the only no-data marker
(no ``|x| ≤ 1e-6`` test, no NaN→0), no baseline shift is applied on save, the WEIGHT HDU
has the image's axis order, and the coverage is a frame count, not a sum over channels.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from astropy.io import fits

from ..host_heap import release_free_heap
from ..io.fits_rows import FitsRows
from ..io.fits_write import uncertainty_hdu, write_fits
from .blend import STRIPE_ROWS, blend_tiles, edge_distance, feather_ramp
from .photometry import find_overlaps, solve_photometry
from .preview import write_preview_png

__all__ = ["TileImage", "MosaicResult", "assemble_mosaic", "write_mosaic_outputs", "as_hwc",
           "assembly_memory_bytes", "MOSAIC_OUTPUT_NAMES"]

logger = logging.getLogger(__name__)

_STAGE = "Grid: assembly"
#: The files :func:`write_mosaic_outputs` writes (each through a temporary file beside it).
MOSAIC_OUTPUT_NAMES = ("mosaic_grid.fits", "mosaic_grid_coverage.fits", "mosaic_grid_preview.png")
_FEATHER_RANGE_PX = (4, 256)


@dataclass
class TileImage:
    """One stacked tile placed on the mosaic canvas.

    Attributes
    ----------
    tile_id : int
        Identifier (unique in one assembly).
    y0, x0 : int
        Mosaic pixel of the tile's pixel (0, 0).
    image : ndarray, shape (h, w, C), float32
        The tile stack; NaN = no data. (h, w) is accepted as C = 1.
    weight : ndarray, shape (h, w, C), float32
        Σ weights of the tile stack; 0 = no data.
    coverage : ndarray, shape (h, w), float32
        Frames that contributed (max over channels).
    uncertainty : ndarray, shape of ``image``, float32, optional
        Standard error of each tile pixel (``StackResult.uncertainty``); the mosaic
        gets an uncertainty map only when every tile has one.

    Each array may also be a :class:`~zemosaic_xp.io.fits_rows.FitsRows` (channels last
    for the images, 2-D for the coverage): the assembly then reads its rows from the
    file as it needs them instead of holding the tile (the grid's tiles on disk).
    """

    tile_id: int
    y0: int
    x0: int
    image: np.ndarray
    weight: np.ndarray
    coverage: np.ndarray
    uncertainty: np.ndarray | None = None


@dataclass
class MosaicResult:
    """The assembled mosaic.

    Attributes
    ----------
    image : ndarray, shape (H, W, C), float32
        NaN where no tile covers.
    weight : ndarray, shape (H, W, C), float32
        Feather-averaged tile weight (see :mod:`.blend`); 0 where no tile covers.
    coverage : ndarray, shape (H, W), float32
        Frame count (feather-averaged over tiles, never summed over channels); 0 where none.
    gains, offsets : dict of int to list of float
        Per tile id, per channel, as applied: ``x' = gain·x + offset``.
    info : dict
        JSON-able report: ``reference_tile``, ``feather_px``, ``match_photometry``,
        ``pairs`` (per overlap: tile ids, samples, slope, residual after matching),
        ``pairs_used``, ``pairs_dropped``, ``unconnected_tiles``, ``channels``
        (iterations, clipped gains), ``max_abs_pair_residual``.
    uncertainty : ndarray, shape (H, W, C), float32, or None
        Standard error of each mosaic pixel: the tiles' ``|gain|·σ`` blended with the
        image's own blend weights (the tiles' errors taken as fully correlated, an
        upper bound; docs/algorithms.md); NaN where no tile covers or a covering
        tile's error is unknown. None unless every tile had one.
    """

    image: np.ndarray
    weight: np.ndarray
    coverage: np.ndarray
    gains: dict[int, list[float]]
    offsets: dict[int, list[float]]
    info: dict[str, Any] = field(default_factory=dict)
    uncertainty: np.ndarray | None = None


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def as_hwc(array: Any, name: str) -> np.ndarray:
    """Return ``array`` as float32 ``(h, w, C)``; a 2-D array gets C = 1.

    Parameters
    ----------
    array : array-like, shape (h, w) or (h, w, C)
        An image or weight map on the host; NaN is kept.
    name : str
        What it is, for the error message.

    Returns
    -------
    ndarray, shape (h, w, C), float32
        A view of ``array`` when it already is float32, else a copy; a channels-last
        :class:`~zemosaic_xp.io.fits_rows.FitsRows` as it is (read by rows later).

    Raises
    ------
    ValueError
        Neither 2-D nor 3-D.
    """
    if isinstance(array, FitsRows) and array.ndim == 3:
        return array  # type: ignore[return-value]
    arr = np.asarray(array, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        msg = f"{name} has shape {arr.shape}; expected (h, w) or (h, w, C)"
        raise ValueError(msg)
    return arr


def _validate(tiles: Sequence[TileImage], mosaic_shape: tuple[int, int], reference_tile: int | None,
              feather_px: int | None) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    if len(tiles) == 0:
        msg = "`tiles` is empty; assemble at least one tile"
        raise ValueError(msg)
    if len(mosaic_shape) != 2 or min(mosaic_shape) < 1:
        msg = f"`mosaic_shape` must be (H, W) with H, W >= 1, got {mosaic_shape}"
        raise ValueError(msg)
    ids = [int(t.tile_id) for t in tiles]
    if len(set(ids)) != len(ids):
        msg = f"tile ids must be unique, got {ids}"
        raise ValueError(msg)
    if reference_tile is not None and reference_tile not in ids:
        msg = f"`reference_tile` {reference_tile} is not one of the tile ids {ids}"
        raise ValueError(msg)
    if feather_px is not None and feather_px < 0:
        msg = f"`feather_px` must be >= 0 or None, got {feather_px}"
        raise ValueError(msg)
    images, weights, covs = [], [], []
    for t in tiles:
        img = as_hwc(t.image, f"tile {t.tile_id} image")
        wt = as_hwc(t.weight, f"tile {t.tile_id} weight")
        cov = t.coverage if isinstance(t.coverage, FitsRows) else np.asarray(t.coverage, dtype=np.float32)
        if wt.shape != img.shape or cov.shape != img.shape[:2]:
            msg = (f"tile {t.tile_id}: image {img.shape}, weight {wt.shape}, coverage {cov.shape}; "
                   f"expected weight = image shape and coverage = {img.shape[:2]}")
            raise ValueError(msg)
        if images and img.shape[2] != images[0].shape[2]:
            msg = (f"tile {t.tile_id} has {img.shape[2]} channel(s), tile {tiles[0].tile_id} has "
                   f"{images[0].shape[2]}; assemble one channel layout per call")
            raise ValueError(msg)
        y0, x0 = int(t.y0), int(t.x0)
        if y0 < 0 or x0 < 0 or y0 + img.shape[0] > mosaic_shape[0] or x0 + img.shape[1] > mosaic_shape[1]:
            msg = (f"tile {t.tile_id} at (y0={y0}, x0={x0}) with shape {img.shape[:2]} does not fit in "
                   f"the mosaic {tuple(mosaic_shape)}")
            raise ValueError(msg)
        images.append(img)
        weights.append(wt)
        covs.append(cov)
    return images, weights, covs


def _map(threads: int, fn: Callable[[Any], Any], items: Any) -> list:
    """``[fn(x) for x in items]``, on ``threads`` threads when more than one."""
    items = list(items)
    if threads <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="zemosaic-assemble") as pool:
        return list(pool.map(fn, items))


def _auto_feather_px(overlaps: Sequence[Any]) -> int:
    """Ramp length = median short side of the tile overlaps, so the cross-fade spans them."""
    if not overlaps:
        return _FEATHER_RANGE_PX[0]
    minor = float(np.median([ov.minor_px for ov in overlaps]))
    return int(np.clip(round(minor), *_FEATHER_RANGE_PX))


def assembly_memory_bytes(mosaic_shape: tuple[int, int], channels: int, tile_pixels: int, *,
                          largest_tile_pixels: int | None = None) -> int:
    """Estimate the peak host memory of :func:`assemble_mosaic` before any tile exists.

    Parameters
    ----------
    mosaic_shape : (H, W)
        The canvas size in px.
    channels : int
        C, the tiles' channels.
    tile_pixels : int
        Σ h·w over the tiles (overlaps counted once per tile).
    largest_tile_pixels : int, optional
        The largest tile's h·w, when the tiles are given as
        :class:`~zemosaic_xp.io.fits_rows.FitsRows` (read by rows, as the grid does);
        None: the tiles are given as arrays, held whole.

    Returns
    -------
    int
        Bytes: per canvas pixel the blend's outputs with the standard error
        ``(3·C + 1)·4`` and a validity mask (C bytes); per pixel of the stripes in
        flight (one :data:`~.blend.STRIPE_ROWS`-row stripe per CPU core at most) the
        float64 accumulators ``(4·C + 2)·8`` and the final divisions' temporaries
        (``28·C`` bytes times the covered fraction, taken as
        ``min(1, tile_pixels / (H·W))``); per tile pixel ``13·C + 12`` bytes for tiles
        held as arrays (image, weight, error, coverage, mask, distance and ramp; the
        photometric correction is applied stripe by stripe, without a copy of the
        tile), or ``C + 4`` for tiles read by rows (mask, and the distance map its
        ramp replaces), plus, per CPU core, one largest tile read whole with its
        distance transform's temporaries (``9·C + 28`` bytes a pixel).

    Notes
    -----
    An upper bound: measured with ``tracemalloc`` (which does not count the tiles
    given) on a 4.8 Mpx canvas of nine 800² tiles, the peak is 163 MB (1 channel)
    and 343 MB (3 channels) against estimates of 270 and 608 MB, on 2 cores (before the
    errors were blended: the estimate now counts them); writing the outputs needs less
    than assembling them. Tiles read by rows, the large survey of
    ``benchmarks/peers_grid.py`` (a 3195 × 2682 canvas, six 1536² mono tiles, 2 cores):
    the process's peak grew by ~230 MiB (240 MB) over its start, against an estimate of 422 MB.
    """
    height, width = (int(v) for v in mosaic_shape)
    canvas_px = height * width
    c = int(channels)
    cores = os.cpu_count() or 1
    covered = min(1.0, tile_pixels / canvas_px) if canvas_px else 0.0
    per_canvas_px = (3 * c + 1) * 4 + c
    stripe_px = min(height, STRIPE_ROWS * cores) * width
    per_stripe_px = (4 * c + 2) * 8 + 28 * c * covered
    if largest_tile_pixels is None:
        tiles = int(tile_pixels) * (13 * c + 12)
    else:
        tiles = int(tile_pixels) * (c + 4) + cores * int(largest_tile_pixels) * (9 * c + 28)
    return int(canvas_px * per_canvas_px + stripe_px * per_stripe_px + tiles)


def assemble_mosaic(tiles: Sequence[TileImage], mosaic_shape: tuple[int, int], *, match_photometry: bool = True,
                    reference_tile: int | None = None, feather_px: int | None = None,
                    progress_callback: Callable[..., Any] | None = None, threads: int = 1) -> MosaicResult:
    """Match tiles photometrically and blend them into one seamless mosaic.

    Parameters
    ----------
    tiles : sequence of TileImage
        Stacked tiles, float32 ``(h, w, C)`` on the host; all with the same C.
    mosaic_shape : (H, W)
        Canvas size; every tile must lie inside it.
    match_photometry : bool
        Solve per-tile, per-channel gains and offsets on the overlaps (see
        :mod:`.photometry`). False applies the identity.
    reference_tile : int, optional
        Tile id kept at gain 1, offset 0; default the tile sharing the most overlap.
    feather_px : int, optional
        Length of the raised-cosine ramp from each tile's valid edge (:mod:`.blend`);
        default the median short side of the tile overlaps, clipped to [4, 256];
        0 disables feathering.
    progress_callback : callable, optional
        ZeMosaic protocol; receives ``("STAGE_PROGRESS", "Grid: assembly", done, total=n)``.
    threads : int
        Threads for the per-tile masks, distance maps and corrections and for the blend
        (NumPy and SciPy release the GIL there); the overlap fits stay in this thread
        (their BLAS dot products take the BLAS's own threads). The result does not
        depend on it.

    Returns
    -------
    MosaicResult
        NumPy arrays on the host; NaN (without a warning) where no tile covers.

    Raises
    ------
    ValueError
        Empty tile list, duplicate ids, inconsistent shapes or channels, a tile outside
        the canvas, an unknown ``reference_tile`` or a negative ``feather_px``.

    Notes
    -----
    The tiles given as arrays are held in RAM; those given as
    :class:`~zemosaic_xp.io.fits_rows.FitsRows` are read whole once (one per thread at
    a time) for their masks, then by rows: their overlaps for the photometry, and each
    canvas stripe's rows for the blend. Besides: float64 accumulators of the canvas
    stripes being blended (``(4·C + 2)·8`` bytes per pixel of
    :data:`~.blend.STRIPE_ROWS` rows per thread, with the errors), per-tile masks and
    distance maps, each replaced by its ramp (:func:`assembly_memory_bytes`
    estimates the peak); the photometric correction and the errors' scaling are
    applied stripe by stripe, with no corrected copy of a tile. Overlap fits use at
    most 65 536 samples per overlap and channel.
    """
    images, weights, covs = _validate(tiles, mosaic_shape, reference_tile, feather_px)
    callback = progress_callback or _noop
    ids = [int(t.tile_id) for t in tiles]
    boxes = [(int(t.y0), int(t.x0), img.shape[0], img.shape[1]) for t, img in zip(tiles, images)]
    # Tiles held as FitsRows are read whole here, one per thread at a time, and let go.
    valid = _map(threads, lambda iw: np.isfinite(np.asarray(iw[0])) & (np.asarray(iw[1]) > 0),
                 list(zip(images, weights)))
    dists = _map(threads, lambda v: edge_distance(v.any(axis=2)), valid)
    overlaps = find_overlaps(boxes)
    total = (len(overlaps) if match_photometry else 0) + len(tiles)
    done = 0

    def _step() -> None:
        nonlocal done
        done += 1
        callback("STAGE_PROGRESS", _STAGE, done, total=total)

    n_chan = images[0].shape[2]
    gains = np.ones((len(tiles), n_chan))
    offsets = np.zeros((len(tiles), n_chan))
    ref_index = ids.index(reference_tile) if reference_tile is not None else None
    info: dict[str, Any] = {"match_photometry": bool(match_photometry), "n_tiles": len(tiles),
                            "n_overlaps": len(overlaps)}
    if match_photometry:
        sol = solve_photometry(images, valid, dists, overlaps, reference=ref_index, tile_ids=ids, progress=_step)
        gains, offsets = sol.gains, sol.offsets
        info.update(sol.info)
        logger.info("[GRID] Assembly: reference tile %d, %d/%d overlaps used, max pair residual %.3g, "
                    "unconnected tiles %s", sol.info["reference_tile"], sol.info["pairs_used"], len(overlaps),
                    sol.info["max_abs_pair_residual"], sol.info["unconnected_tiles"] or "none")
    else:
        info["reference_tile"] = ids[ref_index] if ref_index is not None else None
    feather = _auto_feather_px(overlaps) if feather_px is None else int(feather_px)
    info["feather_px"] = feather

    def _ramp(i: int) -> None:
        dists[i] = feather_ramp(dists[i], feather)  # each distance map replaced by its ramp

    _map(threads, _ramp, range(len(dists)))
    ramps, dists = dists, None
    release_free_heap()  # what the masks, distance maps and overlap fits freed, before the canvas
    # Each tile blended as x·gain + offset, and its error as σ·|gain| with the same blend
    # weights (the weighted average of the tiles' errors), in one pass over the canvas:
    # the corrected and scaled values are made stripe by stripe, not as tile copies.
    corrections = [(gains[i].astype(np.float32), offsets[i].astype(np.float32)) for i in range(len(images))]
    sigmas = None
    if all(t.uncertainty is not None for t in tiles):
        sigmas = [as_hwc(t.uncertainty, f"tile {i} uncertainty") for t, i in zip(tiles, ids)]
        for sigma, img, i in zip(sigmas, images, ids):
            if sigma.shape != img.shape:
                msg = f"tile {i}: uncertainty {sigma.shape} differs from image {img.shape}"
                raise ValueError(msg)
    blended = blend_tiles(boxes, images, weights, covs, valid, ramps, tuple(mosaic_shape), corrections=corrections,
                          uncertainties=sigmas, progress=_step, threads=threads)
    image, weight, coverage = blended[:3]
    uncertainty = blended[3] if sigmas is not None else None
    covered = sum(int(np.count_nonzero(np.isfinite(image[r:r + STRIPE_ROWS]).any(axis=2)))
                  for r in range(0, image.shape[0], STRIPE_ROWS))  # by stripes: no canvas-sized mask
    info["covered_fraction"] = covered / float(image.shape[0] * image.shape[1])
    return MosaicResult(image, weight, coverage,
                        {i: [float(v) for v in gains[k]] for k, i in enumerate(ids)},
                        {i: [float(v) for v in offsets[k]] for k, i in enumerate(ids)}, info, uncertainty)


def _chw(array: np.ndarray) -> np.ndarray:
    """HWC → CHW, or 2-D for one channel: the axis order :func:`write_fits` gives the image."""
    if array.ndim == 3 and array.shape[2] == 1:
        return np.ascontiguousarray(array[..., 0], dtype=np.float32)
    if array.ndim == 3:
        return np.ascontiguousarray(np.moveaxis(array, -1, 0), dtype=np.float32)
    return np.asarray(array, dtype=np.float32)


def _mosaic_header(result: MosaicResult, header: fits.Header | None) -> fits.Header:
    hdr = fits.Header() if header is None else header.copy()
    info = result.info
    ref = info.get("reference_tile")
    hdr["NTILES"] = (int(info.get("n_tiles", len(result.gains))), "tiles assembled")
    hdr["PHOTMTCH"] = (bool(info.get("match_photometry", False)), "tile gain/offset matching applied")
    if ref is not None:
        hdr["REFTILE"] = (int(ref), "photometric reference tile id")
    hdr["FEATHER"] = (int(info.get("feather_px", 0)), "[px] feather ramp length")
    hdr["HISTORY"] = "zemosaic_xp grid assembly: x' = gain*x + offset per tile, feathered blend; NaN = no data"
    return hdr


def write_mosaic_outputs(result: MosaicResult, out_dir: str | os.PathLike, *,
                         header: fits.Header | None = None, threads: int = 1,
                         legacy_rgb_cube: bool = False) -> dict[str, Path]:
    """Write the mosaic, its coverage map and a PNG preview, each atomically.

    Parameters
    ----------
    result : MosaicResult
        The assembled mosaic.
    out_dir : path
        Created if missing.
    header : Header, optional
        Global WCS and provenance cards, copied into both FITS files.
    threads : int
        More than one writes the two FITS files at once (after the preview, which reads
        the image that the mosaic's writer byte-swaps in place).
    legacy_rgb_cube : bool
        A mono mosaic (and its WEIGHT) as a (1, H, W) cube instead of 2-D.

    Returns
    -------
    dict of str to Path
        ``"mosaic"``: ``mosaic_grid.fits``, float32 CHW (2-D for mono), NaN = no data, an
        ``ALPHA`` HDU (255 where any channel has data), a ``WEIGHT`` HDU in the same
        axis order as the image and, when the mosaic has one, its standard error map
        as an ``UNCERT`` HDU (``UTYPE = StdDevUncertainty``, read by ``CCDData.read``);
        ``"coverage"``: ``mosaic_grid_coverage.fits``, float32 (H, W) frame count,
        ``EXTNAME = COVERAGE``, ``BUNIT = count``; ``"preview"``:
        ``mosaic_grid_preview.png``.

    Raises
    ------
    zemosaic_xp.io.atomic.FileWriteError
        A file could not be written for lack of room (disk full, quota, file-size
        limit); the message names it and the cause. Each file is replaced only once
        complete: the failed one keeps its older version, if any.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hdr = _mosaic_header(result, header)
    cov_hdr = fits.Header() if header is None else header.copy()
    cov_hdr["EXTNAME"] = "COVERAGE"
    cov_hdr["BUNIT"] = ("count", "frames contributing (not summed over channels)")
    mosaic_name, coverage_name, preview_name = MOSAIC_OUTPUT_NAMES

    def _mosaic() -> Path:
        weight = _chw(result.weight)
        weight_hdu = fits.ImageHDU(data=weight[None] if legacy_rgb_cube and weight.ndim == 2 else weight,
                                   name="WEIGHT")
        weight_hdu.header["WGHTDSC"] = ("feather-averaged tile weight sum", "WEIGHT meaning")
        alpha = np.isfinite(result.image).any(axis=2).view(np.uint8)  # 0 / 1 ...
        alpha *= np.uint8(255)  # ... to 0 / 255 in place
        # Written as it is, by row chunks (astropy's writeto, the writer's fallback,
        # byte-swaps it in place and back: the preview is made first, so no copy).
        image = result.image
        extra = [weight_hdu]
        if result.uncertainty is not None:
            extra.append(uncertainty_hdu(result.uncertainty, unit=hdr.get("BUNIT")))
        return write_fits(out / mosaic_name, image, header=hdr, alpha=alpha, extra_hdus=extra,
                          keep_cube=legacy_rgb_cube)

    paths = {"preview": write_preview_png(result.image, out / preview_name)}
    jobs = {"mosaic": _mosaic,
            "coverage": lambda: write_fits(out / coverage_name, result.coverage, header=cov_hdr)}
    names = list(jobs)
    paths.update(zip(names, _map(threads, lambda name: jobs[name](), names)))
    return {name: paths[name] for name in ("mosaic", "coverage", "preview")}
