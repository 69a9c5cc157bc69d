"""Master tiles: stack a group of aligned frames, streaming row bands, GPU mode C.

:func:`stack_master_tile` is the classic pipeline's Phase 3 on top of the array-API
core (:mod:`zemosaic_xp.core.pipeline`):

1. open every input (FITS path or array) and check shapes (:mod:`zemosaic_xp.io.bands`);
2. pass 1 reads each frame once: all-NaN frames are skipped, statistics sub-samples
   are taken exactly as ``stack()`` takes them, and the frame plan (gains, offsets,
   quality weights) is computed on the host (:mod:`.scan`);
3. pass 2 streams row bands ``(h, W, C, N)`` from the files through the core's band
   driver (:func:`~zemosaic_xp.core.band_driver.stack_bands`) on the backend chosen by
   the run's :class:`~zemosaic_xp.gpu.GpuPolicy` (mode C: GPU, retry once, CPU
   fallback), downloading each band's image and coverage into host arrays.

Peak memory is about the band budget plus the output image, whatever N is. Because
every step is per pixel and the plan comes from the same sub-samples, the image
equals ``stack()`` of the same frames in memory (bit for bit on NumPy).
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..backends import Backend, default_memory_budget
from ..backends.numpy_xp import numpy_namespace
from ..backends.ops_numpy import cpu_workers
from ..core.band_driver import Block, band_blocks, stack_bands
from ..core.config import StackConfig
from ..core.pipeline import FramePlan, finish_stack, rows_per_band
from ..gpu.policy import GpuPolicy
from ..gpu.session import DeviceSession, GpuResultError, garbage_reason
from ..io.atomic import remove_temp_files
from ..io.bands import BandReader, open_sources, read_frames_first
from ..io.cosmic import masked_sources
from ..io.fits import FitsReadError
from ..io.fits_cards import Cards
from ..io.fits_write import uncertainty_extension, write_fits
from ..io.open_files import files_kept_open
from ..io.runlock import write_lock
from ..io.stored_bands import read_stored_frames_first, stored_scalings
from ..nddata import master_tile_inputs
from .scan import FrameScan, plan_scan, scan_frames

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io import fits

__all__ = ["MasterTileResult", "stack_master_tile", "write_master_tile", "provenance_header"]

ProgressCallback = Callable[..., Any]

# How :func:`write_master_tile` names itself in the output folder's lock file.
_WRITE_LOCK_WHAT = "master tile write"

# Frames-first read buffer of one block of the native path (per worker thread).
_READ_BLOCK_BYTES = 16 * 1024**2
# ... but at least this many rows when the budget allows: with thousands of frames a row
# of all of them is already megabytes, and each block reads every file once.
_MIN_BLOCK_ROWS = 8
# ... and rows enough that each file's read gives at least this many float32 bytes: a read
# has a fixed cost (~20-30 µs of Python and a system call per file), which at hundreds of
# narrow frames outweighs its bytes (500 × 512²: 16-row blocks read 16 KiB per file;
# 64-row blocks, in-process and interleaved on the 2-core VM: median 1.29-1.81 → 1.17-1.64 s).
_MIN_READ_BYTES = 128 * 1024
# The band driver's results a master tile keeps.
_OUTPUTS = ("image", "coverage", "uncertainty")

#: The host namespace results are gathered in (array-api-compat's NumPy).
np_xp = numpy_namespace()


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


@dataclass
class MasterTileResult:
    """A stacked master tile, on the host.

    Attributes
    ----------
    image : ndarray, shape (H, W) for mono frames or (H, W, C), float32
        The stack; NaN where no sample survived (no data).
    alpha : ndarray, shape (H, W), uint8
        255 where any channel has coverage > 0, else 0 (ZeMosaic's ALPHA).
    stats : dict
        JSON-able: the core's stack stats (methods, κ, rejected fractions, gains,
        offsets, weights) plus ``backend``, ``used_gpu``, ``n_frames``,
        ``n_frames_input``, ``skipped_frames``, ``band_rows``, ``n_bands``,
        ``memory_budget_bytes``, ``gpu_attempts`` (this tile), ``gpu_policy`` (the
        run's state after this tile), ``phase3_gpu_chunk_summary`` (timings) and
        ``exposure_total_sec``.
    used_gpu : bool
        The image came from a GPU attempt.
    coverage : ndarray, same shape as ``image``, int32
        Samples kept per pixel.
    uncertainty : ndarray, same shape as ``image``, float32
        Standard error of each pixel (``StackResult.uncertainty``); NaN where fewer
        than two samples survived.
    unit : str or None
        The unit the frames shared (``CCDData.unit``, FITS ``BUNIT``); written as
        ``BUNIT``.
    """

    image: np.ndarray
    alpha: np.ndarray
    stats: dict
    used_gpu: bool
    coverage: np.ndarray | None = field(default=None, repr=False)
    uncertainty: np.ndarray | None = field(default=None, repr=False)
    unit: str | None = None


class _TimedReader:
    """The FITS band reader as a :class:`~zemosaic_xp.core.band_driver.BandSource`, timing its reads."""

    def __init__(self, reader: BandReader, session: DeviceSession, shape: tuple[int, int, int]) -> None:
        self.reader, self.session = reader, session
        self.height, self.width, self.channels = shape

    def read(self, block: Block) -> tuple[np.ndarray, np.ndarray | None]:
        with self.session.timed("read"):
            return self.reader.band(block.r0, block.r1)


class _Shape:
    """The output shape of a native stack (its blocks are read by the native callable)."""

    def __init__(self, height: int, width: int, channels: int) -> None:
        self.height, self.width, self.channels = height, width, channels

    def read(self, block: Block) -> tuple[np.ndarray, None]:  # pragma: no cover - never called
        raise NotImplementedError


class _Tile:
    """Pass 2 of one tile: everything the band driver needs, for any device session."""

    def __init__(self, scan: FrameScan, plan: FramePlan, config: StackConfig,
                 progress_callback: ProgressCallback, *, read_bytes: int) -> None:
        self.scan, self.plan, self.config = scan, plan, config
        self.read_bytes = read_bytes
        first = scan.sources[0]
        self.n, self.h, self.w, self.c = len(scan.sources), first.height, first.width, first.channels
        self.mono = first.mono
        self.cb = progress_callback
        self.scaling: np.ndarray | None = None  # (N, 2) BSCALE, BZERO: blocks read as stored

    def band_rows(self, session: DeviceSession) -> int:
        if session.rows is None:
            # On the CPU the read-ahead block shares the budget with the band's working set.
            budget = session.budget_bytes
            if not session.backend.is_gpu:
                budget = max(1, budget - self.read_bytes)
            session.rows = rows_per_band(self.n, self.w, self.c, budget, self.config, height=self.h)
        return session.rows

    def stack_on(self, session: DeviceSession) -> tuple[dict[str, np.ndarray], dict]:
        """Stream every band through ``session``'s backend; image, coverage and stats on the host.

        Parameters
        ----------
        session : DeviceSession
            The attempt's backend, band budget (or imposed rows) and timers.

        Returns
        -------
        outputs : dict of str to ndarray
            ``image``, ``uncertainty`` (float32) and ``coverage`` (int32), each
            ``(H, W, C)`` on the host.
        stats : dict
            The core's stack statistics plus ``read_blocks`` / ``native_bands`` (and
            ``stored_bands``: 16-bit files read as stored).
        """
        t0 = time.perf_counter()
        native = self._native(session)
        with files_kept_open(self.scan.sources):  # every file is read once per band
            if native is not None:
                outputs, stats = self._stack_native(session, native)
            else:
                reader = BandReader(self.scan.sources, alpha=self.scan.has_alpha, block_bytes=self.read_bytes,
                                    frames_first=session.backend.is_gpu)
                source = _TimedReader(reader, session, (self.h, self.w, self.c))
                outputs, stats = stack_bands(source, band_blocks(self.h, self.band_rows(session)),
                                             config=self.config, plan=self.plan, device=session, out_xp=np_xp,
                                             out_device="cpu", outputs=_OUTPUTS,
                                             progress_callback=self.cb)
                stats["read_blocks"] = reader.reads
        moved = sum(v for k, v in session.seconds.items() if k != "compute")
        session.seconds["compute"] = max(0.0, time.perf_counter() - t0 - moved)
        return outputs, stats

    def _native(self, session: DeviceSession) -> Any:
        """The backend's whole-band stacker for this tile, or None (the core's band path)."""
        if (session.backend.library != "numpy" or session.backend.is_gpu or self.scan.has_alpha
                or session.rows is not None):  # is_gpu: a fault injector's NumPy "GPU" runs the core
            return None
        if any(getattr(s, "ivar", None) is not None for s in self.scan.sources):
            return None  # per-pixel inverse variances: the core's weighted band path
        # 16-bit files go to the kernels as stored when they can decode them.
        self.scaling = stored_scalings(self.scan.sources)
        if self.scaling is not None:
            stacker = session.ops.band_stacker(self.config, self.plan, stored=True)
            if stacker is not None:
                return functools.partial(stacker, scaling=self.scaling)
            self.scaling = None
        return session.ops.band_stacker(self.config, self.plan)

    def _stack_native(self, session: DeviceSession, stacker: Any) -> tuple[dict[str, np.ndarray], dict]:
        """Frames-first blocks read straight from the files into a native band stacker.

        Each block of rows is converted from the FITS bytes into a frames-first buffer
        (no transposing copy, one pass for integer data) — or, for 16-bit files the
        kernels decode (``self.scaling``), read as stored: half the bytes, no
        conversion pass — and stacked by the backend's
        kernel in cache-sized sub-bands (``ops.band_bytes``). Blocks run on
        ``ops.band_workers`` threads, so one thread reads while another stacks; the
        blocks in flight share the memory budget.
        """
        ops = session.ops
        row_bytes = self.n * self.w * self.c * 4
        workers = max(1, int(ops.band_workers))
        # A block buffer per worker plus the kernel's per-sub-band copies: half the budget
        # each, and _READ_BLOCK_BYTES per buffer unless reads of _MIN_BLOCK_ROWS rows or of
        # _MIN_READ_BYTES per file need more (bigger blocks only add memory once each
        # file's read is large beside its fixed cost).
        min_rows = max(_MIN_BLOCK_ROWS, -(-_MIN_READ_BYTES // (self.w * self.c * 4)))
        block_bytes = min(max(_READ_BLOCK_BYTES, min_rows * row_bytes), session.budget_bytes // (2 * workers))
        block_rows = int(max(1, min(self.h, block_bytes // row_bytes)))
        sub_rows = max(1, int(ops.band_bytes) // row_bytes) if ops.band_bytes else block_rows
        session.rows = block_rows
        lock = threading.Lock()

        def native(block: Block, views: tuple) -> tuple[int, int, int, int]:
            t_read = time.perf_counter()
            if self.scaling is not None:
                band = read_stored_frames_first(self.scan.sources, block.r0, block.r1)
            else:
                band = read_frames_first(self.scan.sources, block.r0, block.r1)
            with lock:
                session.seconds["read"] += time.perf_counter() - t_read
            totals = [0, 0, 0, 0]
            for a in range(0, block.r1 - block.r0, sub_rows):
                b = min(block.r1 - block.r0, a + sub_rows)
                counts = stacker(band, a, b, tuple(v[a:b] for v in views), row_start=block.r0 + a,
                                 full_height=self.h)
                totals = [max(totals[0], counts[0])] + [t + c for t, c in zip(totals[1:], counts[1:])]
            return tuple(totals)

        blocks = band_blocks(self.h, block_rows)
        outputs, stats = stack_bands(_Shape(self.h, self.w, self.c), blocks, config=self.config, plan=self.plan,
                                     device=session, out_xp=np_xp, out_device="cpu", outputs=_OUTPUTS,
                                     native=native, workers=min(workers, len(blocks)), progress_callback=self.cb)
        stats["native_bands"] = True
        stats["stored_bands"] = self.scaling is not None
        return outputs, stats

    def check(self, value: tuple[dict[str, np.ndarray], dict]) -> None:
        """Reject garbage GPU output: all-NaN or all-zero where the inputs have data."""
        reason = garbage_reason(value[0]["image"], has_data=self.scan.has_data,
                                has_nonzero=self.scan.has_nonzero)
        if reason is not None:
            raise GpuResultError(reason)


def _check_args(config: Any, memory_budget_bytes: Any, backend: Any, gpu_policy: Any) -> tuple:
    config = StackConfig() if config is None else config
    if not isinstance(config, StackConfig):
        msg = f"`config` must be a StackConfig, got {type(config).__name__}"
        raise TypeError(msg)
    if memory_budget_bytes is not None and (isinstance(memory_budget_bytes, bool)
                                            or not isinstance(memory_budget_bytes, int)
                                            or memory_budget_bytes <= 0):
        msg = f"`memory_budget_bytes` must be a positive integer, got {memory_budget_bytes!r}"
        raise ValueError(msg)
    if gpu_policy is None:
        return config, GpuPolicy.for_backend(backend)
    if not isinstance(gpu_policy, GpuPolicy):
        msg = f"`gpu_policy` must be a GpuPolicy, got {type(gpu_policy).__name__}"
        raise TypeError(msg)
    if backend is not None and not (isinstance(backend, str) and backend == "auto"):
        msg = (f"pass either `backend=` ({backend!r}) or `gpu_policy=`, not both: the policy "
               f"chooses the backend of every tile of its run")
        raise ValueError(msg)
    return config, gpu_policy


def stack_master_tile(inputs: Any, config: StackConfig | None = None, *,
                      backend: str | Backend | None = "auto", gpu_policy: GpuPolicy | None = None,
                      memory_budget_bytes: int | None = None,
                      progress_callback: ProgressCallback | None = None,
                      tile_id: Any = None) -> MasterTileResult:
    """Stack aligned frames into a master tile, streaming row bands from disk.

    Parameters
    ----------
    inputs : sequence of (str | PathLike | array | NDData), or one (N, H, W[, C]) array
        FITS paths (2-D mono, 3-D CHW or HWC; any BITPIX, BZERO/BSCALE applied,
        big-endian handled; an ``ALPHA`` extension weights its frame's pixels; a
        ``MASK`` extension, as ``CCDData.write`` makes, marks "no data" and loads that
        file into memory) and/or ``(H, W[, C])`` arrays and/or astropy ``NDData`` /
        ``CCDData`` (mask = no data). NaN and ±inf mean "no data". All frames must
        share one shape and one unit (``BUNIT`` / ``unit``; the tile keeps it).
    config : StackConfig, optional
        Methods and parameters (default: ZeMosaic's). ``weighting="uncertainty"``
        weights each pixel by ``1/σ²`` of its frame's uncertainty, streamed by rows
        like the data: a ``CCDData``'s ``uncertainty`` or a file's ``UNCERT``
        extension (``UTYPE`` ``StdDevUncertainty`` — the default —,
        ``VarianceUncertainty`` or ``InverseVariance``); every frame needs one, and
        the tile equals ``stack()`` of the same ``CCDData`` frames.
    backend : {"auto", "numpy", "torch", "torch:cpu", "cupy", "torch:cuda"} or Backend
        Without ``gpu_policy``: ``auto`` tries a healthy GPU with mode C and falls
        back to NumPy; a GPU name requires that GPU (mode ``gpu``); a CPU name stacks
        there. Must stay ``"auto"`` when ``gpu_policy`` is given.
    gpu_policy : GpuPolicy, optional
        The run's policy: pass the same object to every tile of a run so that a
        hard-disabled GPU stays disabled. Default: a new policy for this tile only.
    memory_budget_bytes : int, optional
        Working memory of one band on the device (default 25 % of its free memory,
        at most 256 MiB on CPU, 4 GiB on GPU); also bounds the host memory of the
        frame statistics. Peak memory ≈ this budget + the output, independent of N.
        The result does not depend on it.
    progress_callback : callable, optional
        ZeMosaic protocol ``cb(key, progress, level, **kw)``: ``STAGE_PROGRESS``
        (stages ``scan`` then ``stack``) and, once per tile,
        ``("phase3_gpu_chunk_summary", None, "INFO_DETAIL", **summary)``.
    tile_id : object, optional
        Name of the tile in log lines and stats (default: its number in the run).

    Returns
    -------
    MasterTileResult
        On the host (NumPy), whatever backend computed it.

    Raises
    ------
    FileNotFoundError, FitsReadError
        A missing or unreadable FITS file (the message names it).
    ValueError
        No input, frames of different shapes (names both), every frame all-NaN, bad
        arguments.
    BackendUnavailable
        A GPU was required (mode ``gpu``) and none is usable.

    Notes
    -----
    Frames with no finite pixel are skipped with a warning naming them. The image
    equals ``stack()`` of the kept frames in memory (bit for bit on NumPy; a GPU
    differs by float rounding only).
    """
    t0 = time.perf_counter()
    config, policy = _check_args(config, memory_budget_bytes, backend, gpu_policy)
    cb = progress_callback if progress_callback is not None else _noop
    inputs, unit, ivar = master_tile_inputs(inputs, uncertainty=config.weighting == "uncertainty")
    sources, cosmic_info = masked_sources(open_sources(inputs, weights=ivar), mode=config.cosmic,
                                          min_depth=config.cosmic_min_depth, method=config.cosmic_method)
    cpu_budget = memory_budget_bytes or default_memory_budget(policy.cpu_backend())
    # The identity normalisation and equal weights read no statistic (as stack() does).
    need_samples = not (config.normalize == "none" and config.weighting == "none")
    scan = scan_frames(sources, stats_samples=config.frame_stats_samples if need_samples else 1,
                       budget_bytes=cpu_budget, progress_callback=cb, need_samples=need_samples,
                       workers=cpu_workers())
    try:
        plan = plan_scan(scan, config)
        t_scan = time.perf_counter() - t0
        # A quarter of the host budget reads several rows per frame at once (thin bands
        # at large N would otherwise pay one open/seek/convert per frame per band).
        tile = _Tile(scan, plan, config, cb, read_bytes=cpu_budget // 4)
        label = f"tile {tile_id if tile_id is not None else policy.units_gpu + policy.units_cpu + 1}"
        run = policy.run(tile.stack_on, check=tile.check, label=label,
                         budget_bytes=lambda b: memory_budget_bytes or default_memory_budget(b),
                         fatal=(FitsReadError, FileNotFoundError, PermissionError))
    finally:
        scan.close()
    outputs, stats = run.value
    session = run.session
    summary = {
        "tile_id": tile_id, "used_gpu": run.used_gpu, "backend": session.backend.name,
        "rows_per_chunk": session.rows, "total_rows": tile.h, "n_bands": stats["n_bands"],
        "n_frames": tile.n, "algo": config.reject, **session.timings_ms(),
        "duration_s": round(time.perf_counter() - t0, 3),
    }
    stats.update({
        "backend": session.backend.name, "used_gpu": run.used_gpu, "n_frames": tile.n,
        "n_frames_input": len(sources), "skipped_frames": list(scan.skipped),
        "band_rows": session.rows, "memory_budget_bytes": session.budget_bytes,
        "frame_stats_spilled": scan.spilled, **cosmic_info, "exposure_total_sec": scan.exposure_total_sec,
        "gpu_attempts": run.attempts, "gpu_policy": policy.state(),
        "phase3_gpu_chunk_summary": summary, "time_scan_sec": t_scan,
        "time_total_sec": time.perf_counter() - t0, "tile_id": tile_id, "config": config.to_dict(),
    })
    cb("phase3_gpu_chunk_summary", None, "INFO_DETAIL", **summary)
    alpha = np.where(np.any(outputs["coverage"] > 0, axis=-1), np.uint8(255), np.uint8(0))
    result = finish_stack(outputs, stats, config=config, mono=tile.mono)
    return MasterTileResult(result.image, alpha, result.stats, run.used_gpu, result.coverage, result.uncertainty,
                            unit)


def _card_key(key: str) -> str:
    key = str(key)
    if len(key) > 8 and not key.upper().startswith("HIERARCH "):
        return f"HIERARCH {key}"  # explicit HIERARCH: no astropy VerifyWarning
    return key


def provenance_header(result: MasterTileResult) -> fits.Header:
    """Build ZeMosaic's master-tile provenance cards for a stacked tile.

    Parameters
    ----------
    result : MasterTileResult
        The tile; its ``stats`` and ``used_gpu`` fill the cards.

    Returns
    -------
    astropy.io.fits.Header
        ``ZMT_TYPE``, ``ZMT_ID`` (when the tile has an id), ``NCOMBINE``,
        ``ZMT_NSKP``, ``ZMT_NORM``, ``ZMT_WGHT``, ``ZMT_REJ``, ``ZMT_COMB``,
        ``ZMT_KAPLO`` / ``ZMT_KAPHI`` and ``ZMT_WINLO`` / ``ZMT_WINHI`` (HIERARCH
        cards, read back as ``header["ZMT_KAPLO"]``), ``ZMT_REJP`` (rejected %),
        ``ZMT_BACK`` (backend), ``ZMT_GPU`` (used_gpu), ``ZMT_VERS`` / ``CREATOR``
        (software version), ``ALPHAEXT``, ``EXPTOTAL`` (seconds, when known) and
        ``DATE`` (UTC).
    """
    return _provenance_cards(result).to_astropy()


def _provenance_cards(result: MasterTileResult) -> Cards:
    """The cards of :func:`provenance_header`, without astropy."""
    s = result.stats
    hdr = Cards()
    hdr["ZMT_TYPE"] = ("Master Tile", "zemosaic_xp master tile")
    if s.get("tile_id") is not None:
        hdr["ZMT_ID"] = (str(s["tile_id"]), "tile id")
    hdr["NCOMBINE"] = (int(s.get("n_frames", 0)), "frames stacked")
    hdr["ZMT_NSKP"] = (len(s.get("skipped_frames", [])), "frames skipped (no finite pixel)")
    hdr["ZMT_NORM"] = (str(s.get("normalize", "")), "normalisation method")
    hdr["ZMT_WGHT"] = (str(s.get("weighting", "")), "weighting method")
    hdr["ZMT_REJ"] = (str(s.get("reject", "")), "rejection algorithm")
    hdr["ZMT_COMB"] = (str(s.get("combine", "")), "final combine")
    hdr["HIERARCH ZMT_KAPLO"] = (float(s.get("kappa_low", 0.0)), "kappa low")
    hdr["HIERARCH ZMT_KAPHI"] = (float(s.get("kappa_high", 0.0)), "kappa high")
    limits = s.get("config", {}).get("winsor_limits")
    if limits:
        hdr["HIERARCH ZMT_WINLO"] = (float(limits[0]), "winsor low fraction")
        hdr["HIERARCH ZMT_WINHI"] = (float(limits[1]), "winsor high fraction")
    hdr["ZMT_REJP"] = (round(float(s.get("rejected_pct", 0.0)), 4), "rejected samples [%]")
    hdr["ZMT_BACK"] = (str(s.get("backend", "")), "array backend")
    hdr["ZMT_GPU"] = (bool(result.used_gpu), "stacked on a GPU")
    hdr["ZMT_VERS"] = (__version__, "zemosaic_xp version")
    hdr["CREATOR"] = (f"zemosaic_xp {__version__}", "software")
    hdr["ALPHAEXT"] = (1, "ALPHA extension: 255 = data, 0 = none")
    if s.get("exposure_total_sec") is not None:
        hdr["EXPTOTAL"] = (float(s["exposure_total_sec"]), "[s] total exposure")
    hdr["DATE"] = (_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), "UTC file date")
    return hdr


def write_master_tile(result: MasterTileResult, path: str | os.PathLike, wcs: Any = None,
                      header: Any = None) -> Path:
    """Write a master tile atomically: float32 CHW, ``ALPHA`` uint8, provenance keys.

    The write holds the folder's run lock (:func:`zemosaic_xp.io.runlock.write_lock`):
    it waits for another process's master-tile write into the folder, passes when
    this process already holds the lock (``zemosaic-xp stack``), and stops at once
    when another run (a grid run, another ``zemosaic-xp stack``) holds it. Under the
    lock, the temporary files of this name that a killed writer left are removed.

    Parameters
    ----------
    result : MasterTileResult
        The tile from :func:`stack_master_tile`.
    path : str or os.PathLike
        Written to a temporary name in the same folder, then renamed.
    wcs : astropy.wcs.WCS, optional
        Its ``to_header(relax=True)`` cards are added.
    header : astropy Header or dict, optional
        Extra cards (keys longer than 8 characters become HIERARCH cards). Provenance
        keys win over them.

    Returns
    -------
    pathlib.Path
        The written file. NaN pixels are written as NaN (no data); ALPHA marks
        coverage; an ``UNCERT`` HDU (``UTYPE = StdDevUncertainty``, the image's axis
        order) holds ``result.uncertainty`` when it is set, so that
        ``CCDData.read(path, unit=...)`` returns it as the uncertainty.

    Raises
    ------
    zemosaic_xp.io.runlock.FolderLockedError
        Another run holds the folder (the message names it: pid, host, start).
    zemosaic_xp.io.atomic.FileWriteError
        The file could not be written for lack of room (disk full, quota, file-size
        limit); the message names it and the cause, and nothing is left under its name.
    """
    hdr = Cards()
    if header is not None:
        items = header.items() if hasattr(header, "items") else header
        for key, value in items:
            if key not in ("", "COMMENT", "HISTORY"):
                hdr[_card_key(key)] = value
    if wcs is not None:
        for card in wcs.to_header(relax=True).cards:
            hdr.set(card.keyword if len(card.keyword) <= 8 else f"HIERARCH {card.keyword}", card.value,
                    card.comment)
    for key, value, comment in _provenance_cards(result).cards():
        hdr.set(key, value, comment)
    if result.unit is not None:
        hdr["BUNIT"] = (str(result.unit), "unit of the frames")
    path = Path(path)
    with write_lock(path.parent, what=_WRITE_LOCK_WHAT):
        remove_temp_files(path.parent, path.name)  # left by a killed writer of this file
        extra = [] if result.uncertainty is None else [uncertainty_extension(result.uncertainty,
                                                                             unit=hdr.get("BUNIT"))]
        return write_fits(path, result.image, header=hdr, alpha=result.alpha, extra_hdus=extra)
