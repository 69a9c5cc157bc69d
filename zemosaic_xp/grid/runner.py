"""``run_grid_mode``: stack_plan.csv → global grid → tiles (in parallel) → mosaic.

Order of work: read the plan (split by mount when it mixes EQ and Alt-Az frames,
each group into ``grid_EQ`` / ``grid_ALTZ``), build every group's grid, stack the
tiles (:mod:`.scheduler`, one task per tile; finished tiles are recorded in
``tiles/manifest.json`` so a rerun resumes), then assemble each group
(:mod:`zemosaic_xp.mosaic`). Progress and telemetry follow :mod:`.progress`.

Run safety: the run holds the output folder's lock (:mod:`zemosaic_xp.io.runlock`)
from start to end, so a second run into it stops at once, and it removes what a
killed run left there (temporary files, spill folders, running-markers). The canvas
guard (:mod:`.canvas`) refuses a mosaic that could not be assembled before any tile is
stacked, and a resume recomputes a finished tile whose file no longer matches the
manifest.

GPU: when the GPU is on and no ``executor`` is given, tiles run in this process, one
at a time, all through the run's one :class:`~zemosaic_xp.gpu.GpuPolicy` (one CUDA
context per device, blocks serialised by its device lock, its circuit breaker). On an
``executor`` (a dask cluster) each GPU tile gets a policy of its own.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from astropy.io import fits

from .._version import __version__
from ..backends import select_backend
from ..compat.zemosaic import load_config_file
from ..gpu.policy import GpuPolicy
from ..host_heap import release_free_heap
from ..io.framecache import FRAMES
from ..io.uncert import check_uncert_files
from ..telemetry import ResourceTelemetryController
from ..telemetry.csvlog import DEFAULT_CSV_NAME
from .canvas import check_canvas
from .cluster import describe_executor, executor_slots, release_worker_caches
from .config import GridConfig
from .geometry import GlobalGrid, build_global_grid
from .manifest import TileManifest, config_hash, tile_inputs_hash
from .normalise import FrameNormalisation, normalise_frames
from .outdir import lock_output_folder, remove_leftovers, remove_scratch
from .pipeline import BackgroundNormalisation
from .plan import load_stack_plan, split_by_mount
from .processes import exit_if_bootstrapping, start_server, stop_server
from .progress import GridProgress
from .result import GridResult
from .scheduler import TileScheduler
from .tile import FrameRef, noise_sample_count, read_tile
from .worker import TileOutcome, TileTask
from .worker_count import most_workers, point_threads, resolve_workers

__all__ = ["run_grid_mode", "resolve_workers"]

logger = logging.getLogger(__name__)

# Above this many frames the normalisation samples them on the workers (about 15 ms a frame).
_PARALLEL_SAMPLING_FRAMES = 200


@dataclass
class _Group:
    label: str | None
    out_dir: Path
    grid: GlobalGrid
    result: GridResult
    norm: FrameNormalisation | None = None


def _as_config(config: GridConfig | Mapping[str, Any] | str | os.PathLike | None) -> GridConfig:
    if config is None:
        return GridConfig()
    if isinstance(config, GridConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        config = load_config_file(config)
    return GridConfig.from_dict(config)


def _telemetry(cfg: GridConfig, out: Path, callback: Callable[..., Any] | None) -> ResourceTelemetryController:
    csv_path = out / DEFAULT_CSV_NAME if cfg.telemetry_log_to_csv else None
    return ResourceTelemetryController(cfg.telemetry_enabled, cfg.telemetry_interval_sec, callback, csv_path=csv_path)


def _setup(input_folder: Path, out: Path, cfg: GridConfig, progress: GridProgress) -> list[_Group]:
    plan = load_stack_plan(input_folder)
    if not plan.entries:
        msg = f"none of the {len(plan.missing)} frame(s) listed in '{plan.source}' was found"
        raise FileNotFoundError(msg)
    if plan.missing:  # each was logged by the plan reader: the GUI gets one line
        progress.notify(f"[GRID] {len(plan.missing)} frame(s) of '{plan.source}' not found, skipped: "
                        + ", ".join(str(m) for m in plan.missing[:5]) + (" ..." if len(plan.missing) > 5 else ""))
    groups = []
    split = split_by_mount(plan)
    if len(split) > 1:
        progress.message("[GRID] mixed mounts: %s stacked apart", ", ".join(
            f"{k} ({len(v)} frames)" for k, v in split.items()))
    for label, entries in split.items():
        group_out = out if label is None else out / f"grid_{label}"
        group_out.mkdir(parents=True, exist_ok=True)
        grid = build_global_grid(entries, grid_size_factor=cfg.grid_size_factor,
                                 overlap_fraction=cfg.overlap_fraction)
        # Logged by the geometry: the GUI gets one line each.
        if len(grid.frames) < len(entries):
            progress.notify(f"[GRID] {len(entries) - len(grid.frames)} frame(s) without a usable celestial WCS "
                            "skipped (named in the log)")
        if grid.fallback:
            progress.notify("[GRID] optimal WCS failed or degenerate; using the fallback WCS")
        check_canvas(grid, cfg, label=label)  # before any tile: the assembly must fit
        if cfg.stack.weighting == "uncertainty":  # before any tile: every frame has its UNCERT
            check_uncert_files((f.path, (*f.shape, f.channels)) for f in grid.frames)
        groups.append(_Group(label, group_out, grid, GridResult(group_out, tiles_total=len(grid.tiles),
                                                                n_frames=len(grid.frames))))
    return groups


def _frame_ref(group: _Group, index: int, *, maps: bool = True) -> FrameRef:
    frame = group.grid.frames[index]
    norm = group.norm
    if norm is None or not maps:
        return FrameRef(index, frame.path, frame.exposure)
    return FrameRef(index, frame.path, frame.exposure, tuple(float(v) for v in norm.gains[index]),
                    tuple(float(v) for v in norm.offsets[index]))


def _tile_maps(group: _Group, tile: Any) -> list:
    """The normalisation maps of a tile's frames (part of what its pixels depend on)."""
    if group.norm is None:
        return []
    return [[np.float32(group.norm.gains[i]).tolist(), np.float32(group.norm.offsets[i]).tolist()]
            for i in tile.frames]


def _normalised_message(group: _Group, cfg: GridConfig, progress: GridProgress, seconds: float,
                        overlapped: bool = False) -> None:
    if cfg.stack.normalize != "none":
        progress.message("[GRID] frames normalised (%s, %d pairs) in %.1f s%s", cfg.stack.normalize,
                         group.norm.info["pairs"], seconds, " while the tiles reprojected" if overlapped else "")


def _normalise_groups(groups: list[_Group], cfg: GridConfig, scheduler: TileScheduler,
                      progress: GridProgress) -> None:
    xp = select_backend("numpy").xp
    for group in groups:
        t0 = time.perf_counter()
        # Small surveys are sampled here while the workers start up; large ones on the workers.
        mapper = scheduler.map if len(group.grid.frames) > _PARALLEL_SAMPLING_FRAMES else map
        # Tiles made in this process find the frames read for the samples in its frame cache.
        threads = point_threads(scheduler.workers, external=scheduler.executor is not None) if mapper is map else 1
        group.norm = normalise_frames(group.grid, cfg.stack, xp=xp, mapper=mapper,
                                      keep_planes=scheduler.in_process, threads=threads)
        _normalised_message(group, cfg, progress, time.perf_counter() - t0)


def _pipelined(groups: list[_Group], cfg: GridConfig, scheduler: TileScheduler, resume: bool) -> bool:
    """Whether tiles start before the normalisation is solved (see :mod:`.pipeline`).

    With an executor, unless a resume may skip tiles: which ones depends on the
    normalisation (it is part of each tile's inputs hash). Tiles finished with other
    settings cannot be skipped, so they do not count.
    """
    if not scheduler.uses_pool:
        return False
    if not resume:
        return True
    cfg_hash = config_hash(cfg)
    return not any(entry.get("config_hash") == cfg_hash
                   for g in groups for entry in TileManifest(g.out_dir / "tiles").entries.values())


def _tasks(group: _Group, cfg: GridConfig, manifest: TileManifest, cfg_hash: str, run_id: str, use_gpu: bool,
           progress: GridProgress, maps_file: str | None = None,
           threads: int = 1) -> tuple[list[TileTask], dict[int, str]]:
    """The group's tile tasks, largest first, and the tiles' inputs hashes.

    With ``maps_file`` (pipelined) the normalisation is not known yet: the tasks carry
    no maps, no tile is skipped and the hashes are left for :func:`_inputs_hashes`.
    """
    grid = group.grid
    header = grid.header_string()
    tasks, hashes = [], {}
    level = logging.getLogger("zemosaic_xp").getEffectiveLevel()
    # One noise sample count for the survey: a frame gets the same weight in every tile.
    noise_samples = noise_sample_count(cfg.stack.frame_stats_samples,
                                       max((len(t.frames) for t in grid.tiles), default=1), grid.channels)
    for tile in grid.tiles:
        if maps_file is None:
            inputs = tile_inputs_hash(grid, tile, _tile_maps(group, tile))
            hashes[tile.tile_id] = inputs
            if manifest.matches(tile.tile_id, inputs, cfg_hash):
                problem = manifest.verify(tile.tile_id)
                if problem is None:
                    group.result.tiles_skipped += 1
                    progress.tile_finished(measured=False)
                    continue
                progress.message("[GRID] resume: tile %d does not match the manifest (%s); recomputing it",
                                 tile.tile_id, problem, level=logging.WARNING)
        manifest.forget(tile.tile_id)
        frames = tuple(_frame_ref(group, i, maps=maps_file is None) for i in tile.frames)
        tasks.append(TileTask(tile, header, frames, grid.channels, cfg, str(group.out_dir / "tiles"), run_id,
                              use_gpu, 1, os.getpid(), level, maps_file, noise_samples, threads))
    if group.result.tiles_skipped:
        progress.message("[GRID] resume: %d of %d tile(s) already done, skipped", group.result.tiles_skipped,
                         len(grid.tiles))
    # Largest tiles first (patch pixels x frames): workers finish together. Outputs do not
    # depend on the order.
    tasks.sort(key=lambda t: (-sum((b[1] - b[0]) * (b[3] - b[2]) for b in t.tile.patch_boxes), t.tile_id))
    return tasks, hashes


def _stack_tiles(group: _Group, cfg: GridConfig, *, resume: bool, run_id: str, use_gpu: bool,
                 scheduler: TileScheduler, progress: GridProgress,
                 normaliser: BackgroundNormalisation | None = None) -> None:
    tiles_dir = group.out_dir / "tiles"
    tiles_dir.mkdir(parents=True, exist_ok=True)
    remove_scratch(tiles_dir)
    manifest = TileManifest(tiles_dir, fresh=not resume)
    cfg_hash = config_hash(cfg)
    maps_file = normaliser.maps_file(group) if normaliser is not None else None
    threads = point_threads(scheduler.workers, external=scheduler.executor is not None)
    tasks, hashes = _tasks(group, cfg, manifest, cfg_hash, run_id, use_gpu, progress, maps_file, threads)

    def await_normalisation() -> None:
        # Pipelined: the hashes (and the report) need the normalisation; a finished tile
        # implies it was published, so this does not block then.
        if normaliser is not None and not hashes:
            normaliser.wait(group)
            _normalised_message(group, cfg, progress, normaliser.seconds.get(id(group), 0.0), overlapped=True)
            hashes.update({t.tile_id: tile_inputs_hash(group.grid, t, _tile_maps(group, t)) for t in group.grid.tiles})

    def on_done(outcome: TileOutcome) -> None:
        if outcome.ok:
            await_normalisation()
            manifest.record(outcome.tile_id, hashes[outcome.tile_id], cfg_hash, outcome.file,
                            n_frames=outcome.stats.get("n_frames"))
            group.result.tiles_processed += 1
            group.result.gpu_fallbacks += int(outcome.stats.get("gpu_fallbacks", 0))
            progress.message("[GRID] tile %d processed by worker pid=%d (%d frames, %.2f s, rejected %.2f %%)",
                             outcome.tile_id, outcome.pid, outcome.stats.get("n_frames", 0), outcome.elapsed_sec,
                             outcome.stats.get("rejected_pct", 0.0))
        progress.tile_finished()

    manifest.save()
    before = (dict(scheduler.report.failed), list(scheduler.report.retried), scheduler.report.crashes)
    report = scheduler.run(tasks, on_done)
    await_normalisation()  # raises the normalisation's error, if any
    remove_scratch(tiles_dir)  # what a killed worker left behind
    group.result.failed_tiles.update({k: v for k, v in report.failed.items() if k not in before[0]})
    group.result.retried_tiles.extend(t for t in report.retried if t not in before[1])
    group.result.worker_crashes += report.crashes - before[2]
    group.result.cancelled = report.cancelled


def _mosaic_header(group: _Group, cfg: GridConfig) -> fits.Header:
    header = group.grid.wcs.to_header(relax=True)
    header["ZMT_TYPE"] = ("Grid Mosaic", "zemosaic_xp grid-mode mosaic")
    header["NFRAMES"] = (len(group.grid.frames), "frames in the plan group")
    header["ZMT_NORM"] = (cfg.stack.normalize, "tile normalisation")
    header["ZMT_WGHT"] = (cfg.stack.weighting, "quality weighting")
    header["ZMT_REJ"] = (cfg.stack.reject, "rejection")
    header["ZMT_COMB"] = (cfg.stack.combine, "final combine")
    header["ZXPVERS"] = (__version__, "zemosaic_xp version")
    if group.grid.unit is not None:
        header["BUNIT"] = (group.grid.unit, "unit of the frames")
    if group.label:
        header["MOUNT"] = (group.label, "mount group of this mosaic")
    return header


def _assemble(group: _Group, cfg: GridConfig, progress: GridProgress, threads: int = 1) -> None:
    from ..io.viewer import VIEWER_NAME, write_uint16_viewer
    from ..mosaic.assemble import TileImage, assemble_mosaic, write_mosaic_outputs
    from ..mosaic.finish import finish_cards, finish_mosaic

    manifest = TileManifest(group.out_dir / "tiles")
    tiles, rej_sum, rej_weight = [], 0.0, 0.0
    for spec in group.grid.tiles:
        if str(spec.tile_id) not in manifest.entries:
            continue
        product = _read_finished_tile(manifest, spec)  # by rows: the assembly reads them as it goes
        samples = float(np.asarray(product.coverage).sum())
        rej_sum += product.stats["rejected_pct"] * samples
        rej_weight += samples
        tiles.append(TileImage(spec.tile_id, spec.y0, spec.x0, product.image, product.weight, product.coverage,
                               product.uncertainty))
    if not tiles:
        first = next(iter(group.result.failed_tiles.values()), "no tile")
        msg = f"grid mode: every tile failed ({len(group.grid.tiles)} tile(s)); first error: {first}"
        raise RuntimeError(msg)
    relay = progress.sub_progress("GRID: photometry & blending", progress.units_done, len(group.grid.tiles))
    mosaic = assemble_mosaic(tiles, group.grid.shape, match_photometry=cfg.match_photometry,
                             feather_px=cfg.feather_px, progress_callback=relay, threads=threads)
    del tiles
    release_free_heap()  # the assembly's masks, ramps and stripes, before the writers allocate
    header = _mosaic_header(group, cfg)
    done = finish_mosaic(mosaic, rgb_equalize=cfg.final_rgb_equalize, rgb_gain_clip=cfg.final_rgb_gain_clip,
                         dbe=cfg.dbe, dbe_strength=cfg.dbe_strength, emit=progress.message)
    for key, value, comment in finish_cards(done):
        header[key] = (value, comment)
    paths = write_mosaic_outputs(mosaic, group.out_dir, header=header, threads=threads,
                                 legacy_rgb_cube=cfg.legacy_rgb_cube)
    if cfg.save_uint16:
        viewer = write_uint16_viewer(group.out_dir / VIEWER_NAME, mosaic.image, header=header,
                                     legacy_rgb_cube=cfg.legacy_rgb_cube)
        progress.message("[GRID] uint16 viewer copy written: %s", viewer)
    result = group.result
    result.mosaic_path, result.coverage_path = paths.get("mosaic"), paths.get("coverage")
    result.preview_path = paths.get("preview")
    result.mosaic_shape = tuple(group.grid.shape)
    result.rejected_pct = rej_sum / rej_weight if rej_weight else None
    result.assembly = mosaic.info
    progress.message("[GRID] mosaic written: %s (%dx%d px, %d tiles)", result.mosaic_path,
                     group.grid.shape[1], group.grid.shape[0], len(group.grid.tiles) - len(result.failed_tiles))


def _read_finished_tile(manifest: TileManifest, spec: Any) -> Any:
    """Read a finished tile for the assembly, checked against the manifest; raise naming a damaged one."""
    path = manifest.file_of(spec.tile_id)
    problem = manifest.verify(spec.tile_id)
    product = None
    if problem is None:
        try:
            product, _ = read_tile(path, by_rows=True)
        except Exception as exc:  # noqa: BLE001 - astropy and NumPy raise many kinds on damaged files
            problem = f"'{path}' cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())})"
    shape = (spec.y1 - spec.y0, spec.x1 - spec.x0)
    if product is not None and product.image.shape[:2] != shape:
        problem = (f"'{path}' holds a {product.image.shape[1]} x {product.image.shape[0]} px image, the grid's "
                   f"tile is {shape[1]} x {shape[0]} px")
    if problem is not None:
        msg = (f"tile {spec.tile_id}: {problem}; the file changed after the tile was stacked: run again to "
               f"recompute it (resume checks every tile)")
        raise ValueError(msg)
    return product


def _merge(out: Path, groups: list[_Group]) -> GridResult:
    if len(groups) == 1 and groups[0].label is None:
        return groups[0].result
    top = GridResult(out, groups={g.label: g.result for g in groups})
    for g in groups:
        r = g.result
        top.tiles_total += r.tiles_total
        top.tiles_processed += r.tiles_processed
        top.tiles_skipped += r.tiles_skipped
        top.failed_tiles.update({tid: f"[{g.label}] {err}" for tid, err in r.failed_tiles.items()})
        top.retried_tiles.extend(r.retried_tiles)
        top.worker_crashes += r.worker_crashes
        top.n_frames += r.n_frames
        top.gpu_fallbacks += r.gpu_fallbacks
        top.cancelled = top.cancelled or r.cancelled
    return top


def _gpu_decision(grid_use_gpu: bool | None, cfg: GridConfig, progress: GridProgress,
                  policy: GpuPolicy | None) -> GpuPolicy | None:
    """The run's GPU policy, or None when the run stays on the CPU."""
    requested = grid_use_gpu if grid_use_gpu is not None else bool(cfg.use_gpu or policy is not None)
    progress.message("[GRID] GPU requested = %s", requested)
    if not requested:
        progress.message("[GRID] GPU=OFF")
        return None
    policy = policy if policy is not None else GpuPolicy.for_grid("auto")
    policy.notify = progress.notify  # fallbacks and the breaker reach the GUI as WARN
    gpu = policy.gpu_backend()
    progress.message("[GRID] GPU=%s (%s)", "ON" if gpu is not None else "OFF", policy.describe())
    return policy if gpu is not None else None


def run_grid_mode(input_folder: str | os.PathLike, output_folder: str | os.PathLike,
                  progress_callback: Callable[..., Any] | None = None, *,
                  config: GridConfig | Mapping[str, Any] | str | os.PathLike | None = None,
                  grid_use_gpu: bool | None = None,
                  grid_workers: int | None = None, executor: Executor | None = None, resume: bool = True,
                  cancel: Any = None, gpu_policy: GpuPolicy | None = None) -> GridResult:
    """Build a mosaic from the plate-solved frames listed in ``<input_folder>/stack_plan.csv``.

    Parameters
    ----------
    input_folder : path
        Holds ``stack_plan.csv``; relative and foreign paths in it are resolved here.
    output_folder : path
        Receives ``tiles/``, ``mosaic_grid.fits`` (+ ``WEIGHT`` HDU),
        ``mosaic_grid_coverage.fits``, ``mosaic_grid_preview.png`` and, with telemetry,
        ``resource_telemetry.csv`` (split runs: ``grid_EQ/``, ``grid_ALTZ/``).
    progress_callback : callable, optional
        ZeMosaic protocol ``cb(key, progress, level, **kw)``; see :mod:`.progress`.
    config : GridConfig, dict of ZeMosaic keys, or path of a ``zemosaic_config.json``, optional
        The run's settings (:meth:`GridConfig.from_dict` for keys and files); default
        ``GridConfig()``.
    grid_use_gpu : bool, optional
        Overrides ``config`` (``use_gpu_grid``); default CPU.
    grid_workers : int, optional
        Overrides ``config`` (``grid_workers``): 0 = auto, 1 = in this process, N =
        N worker processes (spawn). Neither given → 1. Auto and N are capped by the
        tiles, the CPU cores and the RAM (:func:`~.worker_count.resolve_workers`; a
        ``[GRID]`` warning says when N was).
    executor : concurrent.futures.Executor, optional
        Run tile tasks there instead, e.g. ``distributed.Client(...).get_executor()``
        (:func:`~.cluster.connect_cluster`); as many tiles are kept in flight as the
        cluster has worker threads. The frames and ``output_folder`` must be reachable
        from where tasks run (a shared path); the assembly runs here.
    resume : bool
        Skip tiles finished by an earlier run with the same inputs and settings.
    cancel : object with ``is_set()``, optional
        E.g. a ``threading.Event``: no new tile starts once set; the run returns with
        ``cancelled=True`` (finished tiles are kept for a resume).
    gpu_policy : GpuPolicy, optional
        The run's GPU policy (default :meth:`GpuPolicy.for_grid`: one GPU try per
        block, CPU redo on failure, GPU off after 3 failures). Passing one turns the
        GPU on unless ``grid_use_gpu=False``; GPU tiles run in this process.

    Returns
    -------
    GridResult
        Output paths, tile counts (processed, skipped by resume, failed, retried),
        timings and the assembly report; per-mount results in ``groups`` for a run
        split by mount. A cancelled run returns early with ``cancelled=True`` and no
        mosaic. Tiles that fail twice are listed in ``failed_tiles``, not raised.

    Raises
    ------
    zemosaic_xp.io.runlock.FolderLockedError
        Another run holds ``output_folder`` (the message names it: pid, host, start).
    FileNotFoundError
        No ``stack_plan.csv``, or none of its frames exists.
    ValueError
        Bad settings, no frame with a celestial WCS, mixed channel layouts; a canvas
        whose assembly would not fit in memory
        (:class:`~zemosaic_xp.grid.canvas.CanvasTooLargeError`, raised before any tile
        is stacked); a finished tile whose file is damaged (the message names it).
    zemosaic_xp.io.atomic.FileWriteError
        A file could not be written for lack of room (disk full, quota, file-size
        limit); the message names the file and the cause.
    RuntimeError
        Every tile of a group failed; or the worker processes cannot start because
        they re-run the calling script, which has no ``if __name__ == "__main__":``
        guard (the message shows the fix).

    Notes
    -----
    With worker processes, a script calling this must guard its entry point with
    ``if __name__ == "__main__":`` (spawned workers import the main module). Worker
    processes ignore SIGINT (Ctrl-C is the caller's: set ``cancel``) and exit when
    this process dies (:mod:`.processes`).
    """
    exit_if_bootstrapping()  # a spawned worker importing an unguarded script: stop it here
    t0 = time.perf_counter()
    cfg = _as_config(config)
    if cfg.dbe:  # before any tile is stacked, not after the run
        from ..mosaic.background import require_photutils
        require_photutils("final_mosaic_dbe_enabled (GridConfig.dbe)")
    FRAMES.fit_budget(int(cfg.stack_chunk_budget_mb * 2**20))
    out = Path(output_folder)
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_output_folder(out)  # held until the end: one run per output folder
    telemetry: ResourceTelemetryController | None = None
    run_id = uuid.uuid4().hex
    timings: dict[str, float] = {}
    normaliser: BackgroundNormalisation | None = None
    warn: Callable[..., Any] | None = None  # the progress's warnings, once it exists
    server = False  # this run started the fork server of its workers
    try:
        telemetry = _telemetry(cfg, out, progress_callback)
        progress = GridProgress(progress_callback, telemetry)
        warn = _warner(progress)
        progress.set_phase(0)
        telemetry.start_background(progress.telemetry_context)  # samples during long phases too
        remove_leftovers(out, progress.message)
        progress.message("[GRID] grid mode: input '%s', output '%s'", input_folder, out)
        policy = _gpu_decision(grid_use_gpu, cfg, progress, gpu_policy)
        use_gpu = policy is not None
        if executor is None and not use_gpu and cfg.worker_kind == "process" and most_workers(grid_workers, cfg) > 1:
            server = start_server()  # its imports run while this process reads the headers
        groups = _setup(Path(input_folder), out, cfg, progress)
        # The tile count caps the workers, so the pool starts once the grid is known.
        workers, how = _workers(grid_workers, cfg, use_gpu, executor, progress,
                                sum(len(g.grid.tiles) for g in groups))
        with TileScheduler(workers=workers, executor=executor, cancel=cancel, emit=progress.message,
                           kind=cfg.worker_kind, gpu_policy=policy, notify=progress.notify) as scheduler:
            scheduler.start(cfg.stack)  # worker start-up overlaps the normalisation below
            timings["setup_sec"] = time.perf_counter() - t0
            if _pipelined(groups, cfg, scheduler, resume):
                # Tiles are submitted now and wait for the maps only to stack (pipeline.py).
                normaliser = BackgroundNormalisation(groups, cfg.stack, run_id,
                                                     keep_planes=scheduler.in_process).start()
                timings["normalise_sec"] = 0.0
            else:
                _normalise_groups(groups, cfg, scheduler, progress)
                timings["normalise_sec"] = time.perf_counter() - t0 - timings["setup_sec"]
            progress.set_totals(sum(len(g.grid.tiles) for g in groups))
            progress.advance(1, stage="GRID: setup", force=True)
            progress.set_phase(1)
            progress.message("[GRID] using %d workers (%s)", workers, how)
            progress.set_phase(2, extra={"cpu_workers": workers, "use_gpu": use_gpu})
            progress.start_clock()
            t_tiles = time.perf_counter()
            for group in groups:
                _stack_tiles(group, cfg, resume=resume, run_id=run_id, use_gpu=use_gpu, scheduler=scheduler,
                             progress=progress, normaliser=normaliser)
                group.result.workers, group.result.use_gpu = workers, use_gpu
                if group.result.cancelled:
                    break
        timings["tiles_sec"] = time.perf_counter() - t_tiles
        if normaliser is not None:  # overlapped with the tiles: its own time, within tiles_sec
            timings["normalise_sec"] = sum(normaliser.seconds.values())
        result = _merge(out, groups)
        result.workers, result.use_gpu = workers, use_gpu
        result.timings = timings
        if result.cancelled or (cancel is not None and cancel.is_set()):
            result.cancelled = True
            progress.message("[GRID] cancelled: %d tile(s) finished and kept for a resume",
                             result.tiles_processed, gui_level=logging.WARNING)
            return _finalise(result, out, cfg, t0)
        progress.set_phase(3)
        t_assembly = time.perf_counter()
        # The assembly reads tiles, not frames: what the tiles made in this process
        # cached and freed goes back to the system before it allocates its canvas.
        FRAMES.clear()
        release_free_heap()
        for group in groups:
            # The worker processes are done: their cores go to the assembly's threads.
            _assemble(group, cfg, progress, threads=workers)
        timings["assembly_sec"] = time.perf_counter() - t_assembly
        progress.message("[GRID] timings: setup %.1f s, frame normalisation %.1f s%s, tiles %.1f s, assembly %.1f s",
                         timings["setup_sec"], timings["normalise_sec"],
                         " (during the tiles)" if normaliser is not None else "", timings["tiles_sec"],
                         timings["assembly_sec"])
        if result.failed_tiles:
            progress.message("[GRID] finished with %d failed tile(s): %s", len(result.failed_tiles),
                             ", ".join(f"{k}: {v}" for k, v in sorted(result.failed_tiles.items())),
                             level=logging.WARNING)
        progress.finish()
        return _finalise(result, out, cfg, t0)
    finally:
        if normaliser is not None:
            normaliser.stop()
            normaliser.join()
            normaliser.cleanup()
        FRAMES.clear()  # frames cached by tiles made in this process
        release_worker_caches(executor, warn=warn)  # and by a cluster's workers, which outlive the run
        if server:
            stop_server()
        if telemetry is not None:
            telemetry.close()
        lock.release()


def _workers(grid_workers: int | None, cfg: GridConfig, use_gpu: bool, executor: Executor | None,
             progress: GridProgress, n_tiles: int) -> tuple[int, str]:
    local = executor is None and not use_gpu  # else the count is not that of a local pool
    workers, how = resolve_workers(grid_workers, cfg, n_tiles=n_tiles,
                                   emit=progress.message if local else lambda *a, **k: None)
    if executor is not None:
        return executor_slots(executor, workers, warn=_warner(progress)), describe_executor(executor)
    if use_gpu and workers > 1:
        progress.message("[GRID] GPU tiles run in this process, one at a time (one CUDA context per "
                         "device); %d worker(s) requested", workers)
        return 1, "GPU in this process"
    if workers > 1 and cfg.worker_kind == "thread":
        return workers, f"{how}, threads"
    return workers, how


def _warner(progress: GridProgress) -> Callable[..., Any]:
    """``warn(fmt, *args)``: a ``[GRID]`` warning logged and sent to the callback as ``WARN``."""
    return lambda message, *args: progress.message(message, *args, level=logging.WARNING)


def _finalise(result: GridResult, out: Path, cfg: GridConfig, t0: float) -> GridResult:
    csv_path = out / DEFAULT_CSV_NAME
    result.telemetry_csv = csv_path if cfg.telemetry_enabled and cfg.telemetry_log_to_csv and csv_path.exists() \
        else None
    result.elapsed_sec = time.perf_counter() - t0
    if result.groups:
        for sub in result.groups.values():
            sub.elapsed_sec = result.elapsed_sec
    return result
