"""One tile, start to finish: reproject its frames, stack them through the core, write it.

1. Each frame touching the tile is read, reprojected onto its patch box
   (:func:`~.reproject_tile.reproject_patch`) and kept in a :class:`~.store.PatchStore`
   (RAM, or a memory-mapped scratch file past ``stack_chunk_budget_mb``). With
   ``radial_weight``, a patch's weight carries its frame's radial map, computed in the
   frame's pixel coordinates (:mod:`.reproject_tile`), not the tile's or a cell's.
   With ``weighting="uncertainty"``, it also carries ``1/σ²`` per channel: the frame's
   ``UNCERT`` variances reprojected with the data's coordinates
   (:func:`~.reproject_tile.inverse_variance_weight`).
2. The frame plan (:func:`~.tile_plan.plan_tile_frames`): the survey's normalisation
   of each frame (:mod:`.normalise`), quality weights from the frames' noise, exposures.
3. The tile goes through the core's band driver
   (:func:`~zemosaic_xp.core.band_driver.stack_bands`) cell by cell (:mod:`.cells`), each
   cell with every frame that reaches it, on the GPU when the run's
   :class:`~zemosaic_xp.gpu.GpuPolicy` allows it (a failed block is redone on the CPU).
   Rejection therefore always sees every frame of a pixel, and the tile is
   bit-identical for any band size, budget or device
   (upstream stacked frame chunks separately and averaged them, which changed the
   result with the chunk size and left NaN holes on its GPU path).
4. ``tiles/tile_NNNN.fits`` is written atomically: float32 image (CHW, NaN = no
   data), ``ALPHA``, ``WEIGHT`` (CHW like the image) and ``COVERAGE`` (frames per pixel).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..backends import select_backend
from ..core.band_driver import BandDevice, stack_bands
from ..core.config import StackConfig
from ..core.pipeline import BandResult, StackResult, finish_stack
from ..gpu.policy import GpuPolicy
from ..gpu.session import GpuResultError, garbage_reason
from ..host_heap import release_free_heap
from ..io.fits_rows import FitsRows
from ..io.fits_write import UNCERT_NAME, uncertainty_hdu, write_fits
from ..io.framecache import FRAMES
from ..io.patch_store import PatchSource, PatchStore
from .cells import cell_blocks
from .config import GridConfig
from .geometry import TileSpec, tile_wcs
from .reproject_tile import TileSky, reproject_patch
from .tile_plan import frame_noise_samples, plan_tile_frames

__all__ = ["noise_sample_count", "FrameRef", "TileProduct", "stack_tile", "write_tile", "read_tile", "tile_filename"]

logger = logging.getLogger(__name__)

_MB = 1024 * 1024
# Noise σ per frame and channel from at most this many neighbour differences (σ to ~0.6 %).
_NOISE_SAMPLES = 16384
# ... fewer (at least 1024: σ to ~2 %) when a tile has so many frames that their samples
# would take more than 8 MB (the weights' temporaries take ~9x that). Not tied to
# stack_chunk_budget_mb: a tile is the same for any budget.
_MIN_NOISE_SAMPLES = 1024
_NOISE_MEMORY_BYTES = 8 * 2**20


@dataclass(frozen=True)
class FrameRef:
    """What a worker needs to read one frame itself, and the survey's normalisation of it.

    Attributes
    ----------
    index : int
        The frame's position in the plan (``FrameInfo.index``, its row in the maps).
    path : str
        The FITS file, read by the worker.
    exposure : float
        Exposure in seconds, a factor of the frame's weight. Default 1.0.
    gain, offset : tuple of float
        ``x' = gain·x + offset``, one value per channel; empty (the default) = identity.
    """

    index: int
    path: str
    exposure: float = 1.0
    gain: tuple[float, ...] = ()
    offset: tuple[float, ...] = ()

    def maps(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the frame's normalisation as arrays.

        Parameters
        ----------
        channels : int
            Channels of the frame; sizes the identity when ``gain`` / ``offset`` are empty.

        Returns
        -------
        gain : ndarray, shape (C,), float64
            1 in every channel when none was set.
        offset : ndarray, shape (C,), float64
            In ADU; 0 in every channel when none was set.
        """
        gain = np.asarray(self.gain or (1.0,) * channels, dtype=np.float64)
        offset = np.asarray(self.offset or (0.0,) * channels, dtype=np.float64)
        return gain, offset


@dataclass
class TileProduct:
    """A stacked tile.

    Attributes
    ----------
    image : ndarray, shape (h, w, C), float32
        NaN where no frame has data.
    weight : ndarray, shape (h, w, C), float32
        Σ weights of the kept samples.
    coverage : ndarray, shape (h, w), float32
        Number of frames with data at each pixel.
    stats : dict
        JSON-able stack statistics (rejection, plan, bands, spill, devices).
    uncertainty : ndarray, shape (h, w, C), float32, or None
        Standard error of each pixel (``StackResult.uncertainty``).
    """

    image: np.ndarray
    weight: np.ndarray
    coverage: np.ndarray
    stats: dict = field(default_factory=dict)
    uncertainty: np.ndarray | None = None


def tile_filename(tile_id: int) -> str:
    """Return the file name of a tile.

    Parameters
    ----------
    tile_id : int
        The tile.

    Returns
    -------
    str
        ``tile_NNNN.fits`` (zero-padded to four digits).
    """
    return f"tile_{tile_id:04d}.fits"


def _cpu_xp() -> Any:
    return select_backend("numpy").xp


def _patch_targets(grid_wcs: WCS, tile: TileSpec) -> Any:
    """``tile_wcs`` of each patch box, made from one copy of the canvas WCS per tile.

    Same CRPIX arithmetic as :func:`~.geometry.tile_wcs` (canvas CRPIX − patch origin),
    so the transforms are those of a fresh copy; the copy is re-set for each patch and
    must be used before the next one is asked for.
    """
    target = tile_wcs(grid_wcs, tile.y0, tile.x0, tile.shape)
    crpix = grid_wcs.wcs.crpix
    for py0, py1, px0, px1 in tile.patch_boxes:
        target.wcs.crpix = [crpix[0] - (tile.x0 + px0), crpix[1] - (tile.y0 + py0)]
        target.wcs.set()
        target.pixel_shape = (px1 - px0, py1 - py0)
        yield target


def noise_sample_count(max_samples: int, n_frames: int, channels: int) -> int:
    """Choose the number of noise samples per frame and channel for a tile.

    Parameters
    ----------
    max_samples : int
        ``StackConfig.frame_stats_samples``: an upper bound when > 0.
    n_frames : int
        Frames of the tile (the runner passes its largest tile's count).
    channels : int
        Channels of every frame.

    Returns
    -------
    int
        ``min(max_samples, 16384)`` (16384 when ``max_samples`` <= 0), lowered, but
        not below 1024, so that the samples of all frames and channels fit in 8 MB.
    """
    count = min(max_samples, _NOISE_SAMPLES) if max_samples > 0 else _NOISE_SAMPLES
    fit = _NOISE_MEMORY_BYTES // (4 * max(1, channels) * max(1, n_frames))
    return int(min(count, max(_MIN_NOISE_SAMPLES, fit)))


def _reproject_into(store: PatchStore, tile: TileSpec, grid_wcs: WCS, frames: Sequence[FrameRef],
                    noise_samples: int, config: StackConfig,
                    threads: int = 1) -> tuple[list[int], list[np.ndarray], dict, float]:
    """Reproject every frame into the store.

    Returns the slots that got data, their noise samples, the cosmic-ray holes (slot →
    flat tile indices to blank, :func:`_cosmic_holes`) and the seconds spent reading
    and searching frames for hits (the frame reads included: they are cached after).
    With ``config.radial_weight``, each patch's weight carries its frame's radial map;
    with ``weighting="uncertainty"``, the inverse of its reprojected variances (per channel).
    """
    active, noise = [], []
    t_cosmic = 0.0
    sky = TileSky(grid_wcs, tile.y0, tile.x0, tile.shape, threads)  # transformed once, shared by the patches
    radial = config if config.radial_weight else None
    cosmic = config.cosmic_method if config.cosmic != "off" else None
    uncertainty = config.weighting == "uncertainty"
    hits: dict[int, np.ndarray] = {}
    depth = np.zeros(tile.shape, dtype=np.int32) if cosmic else None
    width = tile.shape[1]
    for k, (ref, target) in enumerate(zip(frames, _patch_targets(grid_wcs, tile))):
        if cosmic:
            t0 = time.perf_counter()
            entry, planes, frame_hits = FRAMES.hits(ref.path, cosmic)  # found once per frame and process
            t_cosmic += time.perf_counter() - t0
        else:
            (entry, planes), frame_hits = FRAMES.planes(ref.path), None
        channels = entry.source.channels
        alpha = planes[channels] if entry.source.has_alpha else None
        out = reproject_patch(None, alpha, entry.wcs, grid_wcs, tile.y0, tile.x0, store.boxes[k],
                              planes=planes, target=target, radial=radial, sky=sky,
                              hits=frame_hits if frame_hits is not None and frame_hits.size else None,
                              variance=FRAMES.variance(ref.path) if uncertainty else None, threads=threads)
        patch, weight = out[0], out[1]
        store.put(k, patch, weight)
        if cosmic:
            py0, py1, px0, px1 = store.boxes[k]
            depth[py0:py1, px0:px1] += (weight > 0) if weight.ndim == 2 else np.any(weight > 0, axis=-1)
        if len(out) == 3:
            ys, xs = np.nonzero(out[2])
            if ys.size:
                hits[k] = (ys + py0) * width + (xs + px0)
        if store.has_data(k):
            active.append(k)
            frame_noise = entry.noise.get(noise_samples)
            if frame_noise is None:
                frame_noise = frame_noise_samples(np.moveaxis(planes[:channels], 0, -1), noise_samples)
                entry.noise[noise_samples] = frame_noise
            noise.append(frame_noise)
    return active, noise, _cosmic_holes(hits, depth, config), t_cosmic


def _cosmic_holes(hits: dict[int, np.ndarray], depth: np.ndarray | None, config: StackConfig) -> dict:
    """The hit pixels to blank per slot: all of them (``"always"``) or where fewer than
    ``cosmic_min_depth`` frames cover the tile pixel (``"auto"``)."""
    if not hits:
        return {}
    if config.cosmic == "always":
        return hits
    shallow = depth.ravel() < config.cosmic_min_depth
    holes = {k: flat[shallow[flat]] for k, flat in hits.items()}
    return {k: flat for k, flat in holes.items() if flat.size}


class _BlockRunner:
    """Run each block of a tile through the run's GPU policy, counting where it ran."""

    def __init__(self, policy: GpuPolicy, tile_id: int) -> None:
        self.policy, self.label = policy, f"tile {tile_id}"
        self.gpu_blocks = self.cpu_blocks = self.fallbacks = 0

    @staticmethod
    def _check(result: BandResult) -> None:
        # A GPU block that lost all its data where there was some is a failure
        # (upstream's all-NaN GPU outputs), not a result.
        reason = garbage_reason(result.image, has_data=result.n_valid > 0)
        if reason is not None:
            raise GpuResultError(reason)

    def run(self, work: Any) -> BandResult:
        unit = self.policy.run(work, check=self._check, label=self.label)
        self.fallbacks += unit.fallbacks
        if unit.used_gpu:
            self.gpu_blocks += 1
        else:
            self.cpu_blocks += 1
        return unit.value


def stack_tile(tile: TileSpec, grid_wcs: WCS, frames: Sequence[FrameRef], config: GridConfig, *,
               scratch_dir: str | Path, channels: int, gpu_policy: GpuPolicy | None = None,
               resolve_frames: Callable[[Sequence[FrameRef]], Sequence[FrameRef]] | None = None,
               noise_samples: int | None = None, threads: int = 1) -> TileProduct:
    """Reproject and stack the frames of one tile.

    Parameters
    ----------
    tile : TileSpec
        The tile: its box on the canvas and each frame's patch box.
    grid_wcs : WCS
        The canvas WCS.
    frames : sequence of FrameRef
        The tile's frames, in the order of ``tile.frames`` / ``tile.patch_boxes``.
    config : GridConfig
        The run's settings: ``stack`` (normalisation is the survey's, from ``frames``;
        weighting, rejection, combine) and ``stack_chunk_budget_mb``.
    scratch_dir : path
        Where patches spill when they exceed ``config.stack_chunk_budget_mb``.
    channels : int
        Channels of every frame.
    gpu_policy : GpuPolicy, optional
        The run's GPU policy (:meth:`GpuPolicy.for_grid`): blocks go to its GPU while it
        allows, a failed block is redone on the CPU. None = CPU only.
    resolve_frames : callable, optional
        Called with ``frames`` once they are reprojected, before anything uses their
        gains and offsets; returns them with the survey normalisation filled in (a tile
        submitted while the normalisation is still being solved waits here, see
        :mod:`.framemaps`).
    noise_samples : int, optional
        Noise samples per frame and channel for the weights; the runner passes one
        count for the whole survey (:func:`noise_sample_count` of its largest tile),
        so that a frame gets the same weight in every tile. Default: from this tile.
    threads : int
        Threads for the reprojection's coordinate transforms and samples
        (:mod:`.point_threads`) and for the cells stacked at once on the CPU; the tile
        is the same for any count.

    Returns
    -------
    TileProduct
        Host NumPy arrays of the tile's shape: image ``(h, w, C)`` float32 with NaN
        (without a warning) where no frame has a valid sample, the weight sums, the
        frame coverage and the stack statistics (including where each block ran and
        timings). Identical for any budget, band size or device.

    Raises
    ------
    ValueError
        No frame has data on the tile.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    height, width = tile.shape
    budget = int(config.stack_chunk_budget_mb * _MB)
    weight_planes = channels if config.stack.weighting == "uncertainty" else 1  # 1/σ² per channel
    with PatchStore(tile.patch_boxes, tile.shape, channels, budget_bytes=budget, scratch_dir=scratch_dir,
                    weight_planes=weight_planes) as store:
        if noise_samples is None:
            noise_samples = noise_sample_count(config.stack.frame_stats_samples, len(frames), channels)
        active, noise, holes, t_cosmic = _reproject_into(store, tile, grid_wcs, frames, noise_samples,
                                                         config.stack, threads)
        t_reproject = time.perf_counter() - t0
        if not active:
            msg = f"no frame has data on tile {tile.tile_id} (its {len(frames)} frame(s) reproject to nothing)"
            raise ValueError(msg)
        t_wait = time.perf_counter()
        if resolve_frames is not None:
            frames = resolve_frames(frames)
        t_wait = time.perf_counter() - t_wait
        xp = _cpu_xp()
        exposures = np.asarray([frames[k].exposure for k in active], dtype=np.float32)
        maps = [frames[k].maps(channels) for k in active]
        plan = plan_tile_frames(np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps]), noise, exposures,
                                config.stack, xp=xp)
        del noise
        runner = _BlockRunner(gpu_policy, tile.tile_id) if gpu_policy is not None else None
        gpu = runner is not None and gpu_policy.gpu_backend() is not None
        # The radial map is already in the patch weights (the frame's map, _reproject_into): the
        # core must not add the tile's own on top of it.
        stack_config = config.stack.replace(radial_weight=False)
        blocks = cell_blocks(store, active, budget=budget, config=stack_config, height=height, width=width,
                             channels=channels, gpu=gpu, policy=gpu_policy)
        source = PatchSource(store, active, channels, holes=holes)
        device = BandDevice(xp)
        # The cells of a CPU tile are independent: ``threads`` of them at once (a spilled
        # store's scratch file too: positioned reads).
        workers = threads if not gpu else 1
        outputs, stats = stack_bands(source, blocks, config=stack_config, plan=plan, device=device,
                                     run_block=runner.run if runner is not None else None,
                                     native=None if gpu else _native_cells(source, device, stack_config, plan, xp),
                                     workers=workers)
        spilled, store_mb = store.spilled, store.nbytes / _MB
    # The patches are freed: back to the system before the tile's results are made and
    # written (glibc keeps them in its heap otherwise, under the next allocations).
    release_free_heap()
    stats.update({"n_frames": len(active), "patch_store_mb": round(store_mb, 3), "spilled": spilled,
                  "gpu_bands": runner.gpu_blocks if runner else 0, "cpu_bands": runner.cpu_blocks if runner else 0,
                  "gpu_fallbacks": runner.fallbacks if runner else 0, "time_reproject_sec": t_reproject,
                  "time_wait_maps_sec": t_wait, "cosmic": config.stack.cosmic,
                  "cosmic_masked_px": int(sum(v.size for v in holes.values())), "time_cosmic_sec": t_cosmic,
                  "time_total_sec": time.perf_counter() - t0,
                  "cpu_sec": time.process_time() - cpu0})
    result = finish_stack(outputs, stats, config=config.stack, mono=False)
    return _product(result)


def _native_cells(source: PatchSource, device: BandDevice, config: Any, plan: Any, xp: Any) -> Any:
    """The CPU backend's native stacker of a tile's cells (numba), or None (the core's band path)."""
    stacker = device.ops.block_stacker(config, plan)
    if stacker is None:
        return None

    def native(block: Any, views: tuple) -> tuple[int, int, int, int]:
        values, weights = source.read(block)
        # A cell's columns are a slice of the tile's rows: stack into C-ordered scratch.
        out = tuple(np.empty(v.shape, v.dtype) for v in views)
        counts = stacker(values, weights, device.plan(plan, block.frames, xp), out)
        for view, res in zip(views, out):
            view[...] = res
        return counts

    return native


def _product(result: StackResult) -> TileProduct:
    image = np.asarray(result.image, dtype=np.float32)
    weight = np.asarray(result.weight_sum, dtype=np.float32)
    valid = (np.asarray(result.coverage) + np.asarray(result.rejected_low) + np.asarray(result.rejected_high))
    coverage = valid.max(axis=-1).astype(np.float32)
    uncertainty = None if result.uncertainty is None else np.asarray(result.uncertainty, dtype=np.float32)
    return TileProduct(image, weight, coverage, result.stats, uncertainty)


def _tile_header(tile: TileSpec, grid_wcs: WCS, product: TileProduct, config: GridConfig) -> fits.Header:
    header = tile_wcs(grid_wcs, tile.y0, tile.x0, tile.shape).to_header(relax=True)
    stats = product.stats
    cards = [
        ("ZMT_TYPE", "Grid Tile", "zemosaic_xp grid-mode tile"),
        ("TILEID", tile.tile_id, "row-major tile id, from 1"),
        ("TILEY0", tile.y0, "first canvas row"),
        ("TILEX0", tile.x0, "first canvas column"),
        ("NFRAMES", int(stats.get("n_frames", 0)), "frames stacked"),
        ("ZMT_NORM", config.stack.normalize, "normalisation"),
        ("ZMT_WGHT", config.stack.weighting, "quality weighting"),
        ("ZMT_REJ", config.stack.reject, "rejection"),
        ("ZMT_COMB", config.stack.combine, "final combine"),
        ("KAPPALO", config.stack.kappa_low, "rejection kappa low"),
        ("KAPPAHI", config.stack.kappa_high, "rejection kappa high"),
        ("REJPCT", round(float(stats.get("rejected_pct", 0.0)), 4), "rejected samples, percent"),
    ]
    for key, value, comment in cards:
        header[key] = (value, comment)
    return header


def write_tile(path: str | Path, tile: TileSpec, grid_wcs: WCS, product: TileProduct,
               config: GridConfig) -> Path:
    """Write a tile FITS atomically: image, ALPHA, WEIGHT (CHW) and COVERAGE HDUs.

    Parameters
    ----------
    path : str or Path
        The file to write (``tiles/`` + :func:`tile_filename`).
    tile : TileSpec
        The tile; its id and canvas origin go into the header.
    grid_wcs : WCS
        The canvas WCS; the header gets :func:`~.geometry.tile_wcs` of the tile.
    product : TileProduct
        The stacked tile.
    config : GridConfig
        Its stack methods and κ are recorded in the header.

    Returns
    -------
    Path
        The written file: primary HDU float32 CHW image (2-D for one channel), NaN =
        no data; ``ALPHA`` uint8 (255 where any channel has weight, else 0);
        ``WEIGHT`` in the image's axis order; ``COVERAGE`` (frames per pixel,
        ``BUNIT = count``); ``UNCERT`` (standard error, the image's axis order) when
        the product has one.
    """
    alpha = np.any(product.weight > 0, axis=-1)
    weight = product.weight
    weight_chw = weight[..., 0] if weight.shape[-1] == 1 else np.moveaxis(weight, -1, 0)
    extra = [fits.ImageHDU(np.ascontiguousarray(weight_chw, dtype=np.float32), name="WEIGHT"),
             fits.ImageHDU(np.ascontiguousarray(product.coverage, dtype=np.float32), name="COVERAGE")]
    extra[1].header["BUNIT"] = ("count", "frames with data per pixel")
    if product.uncertainty is not None:
        extra.append(uncertainty_hdu(product.uncertainty))
    header = _tile_header(tile, grid_wcs, product, config)
    return write_fits(path, product.image, header=header, alpha=alpha.astype(np.float32), extra_hdus=extra)


def _hwc(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data, dtype=np.float32)  # native float32 (FITS data are big-endian)
    return data[..., None] if data.ndim == 2 else np.ascontiguousarray(np.moveaxis(data, 0, -1))


def read_tile(path: str | Path, *, by_rows: bool = False) -> tuple[TileProduct, fits.Header]:
    """Read a tile written by :func:`write_tile` back.

    Parameters
    ----------
    path : str or Path
        The tile FITS.
    by_rows : bool
        Return the arrays as :class:`~zemosaic_xp.io.fits_rows.FitsRows` (same shapes,
        read from the file when sliced) instead of reading them now: the assembly's
        way to hold many tiles.

    Returns
    -------
    product : TileProduct
        Image, weight (and uncertainty, when the file has an ``UNCERT`` HDU) as
        float32 ``(h, w, C)``, coverage ``(h, w)``; ``stats`` holds only ``n_frames``
        and ``rejected_pct`` (from the header).
    header : astropy.io.fits.Header
        A copy of the primary header (tile WCS and provenance cards).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        with fits.open(path, memmap=False, lazy_load_hdus=by_rows) as hdul:
            header = hdul[0].header.copy()
            if by_rows:
                has_se = UNCERT_NAME in hdul
                rows = (FitsRows(path, 0), FitsRows(path, "WEIGHT"), FitsRows(path, "COVERAGE", channels_last=False),
                        FitsRows(path, UNCERT_NAME) if has_se else None)
                stats = {"n_frames": int(header.get("NFRAMES", 0)), "rejected_pct": float(header.get("REJPCT", 0.0))}
                return TileProduct(rows[0], rows[1], rows[2], stats, rows[3]), header
            image = _hwc(hdul[0].data)
            weight = _hwc(hdul["WEIGHT"].data)
            coverage = np.asarray(hdul["COVERAGE"].data, dtype=np.float32)
            uncertainty = _hwc(hdul[UNCERT_NAME].data) if UNCERT_NAME in hdul else None
    stats = {"n_frames": int(header.get("NFRAMES", 0)), "rejected_pct": float(header.get("REJPCT", 0.0))}
    return TileProduct(image, weight, coverage, stats, uncertainty), header

