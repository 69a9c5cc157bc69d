"""What a grid run reports: :class:`GridResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GridResult"]


@dataclass
class GridResult:
    """Outcome of :func:`~.runner.run_grid_mode`.

    Attributes
    ----------
    output_folder : Path
        Where the run wrote its outputs.
    mosaic_path, coverage_path, preview_path : Path or None
        ``mosaic_grid.fits``, ``mosaic_grid_coverage.fits``, ``mosaic_grid_preview.png``
        (None when cancelled, or for a run split by mount: see ``groups``).
    telemetry_csv : Path or None
        ``resource_telemetry.csv`` when telemetry was logged to CSV, else None.
    tiles_total, tiles_processed, tiles_skipped : int
        Tiles of the run; stacked now; reused from a previous run (resume).
    failed_tiles : dict of int to str
        Tiles that failed on every attempt, with their error.
    retried_tiles : list of int
        Tiles that ran a second time (after an error or a worker crash).
    worker_crashes : int
        Worker processes that died (each time the pool was rebuilt).
    n_frames : int
        Frames of the plan with a usable WCS.
    workers : int
        Tiles run at once (worker processes, threads or executor slots).
    use_gpu : bool
        Whether the tiles were stacked with a GPU policy.
    gpu_fallbacks : int
        Bands that fell back from the GPU to the CPU.
    cancelled : bool
        The run was cancelled; finished tiles are kept for a resume.
    elapsed_sec : float
        Wall time of the whole run, in seconds.
    rejected_pct : float or None
        Rejected samples over all tiles, percent.
    mosaic_shape : (H, W) or None
        Canvas size in px (None when not assembled, or for a run split by mount).
    assembly : dict
        ``MosaicResult.info`` of the assembly.
    timings : dict
        Wall seconds of ``setup_sec``, ``normalise_sec``, ``tiles_sec``, ``assembly_sec``.
        With several workers the normalisation runs while the tiles reproject
        (:mod:`.pipeline`): ``normalise_sec`` is then its own time, inside ``tiles_sec``.
    groups : dict of str to GridResult
        Per-mount results of a split run (``"EQ"``, ``"ALTZ"``); empty otherwise.
    """

    output_folder: Path
    mosaic_path: Path | None = None
    coverage_path: Path | None = None
    preview_path: Path | None = None
    telemetry_csv: Path | None = None
    tiles_total: int = 0
    tiles_processed: int = 0
    tiles_skipped: int = 0
    failed_tiles: dict[int, str] = field(default_factory=dict)
    retried_tiles: list[int] = field(default_factory=list)
    worker_crashes: int = 0
    n_frames: int = 0
    workers: int = 1
    use_gpu: bool = False
    gpu_fallbacks: int = 0
    cancelled: bool = False
    elapsed_sec: float = 0.0
    rejected_pct: float | None = None
    mosaic_shape: tuple[int, int] | None = None
    assembly: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    groups: dict[str, GridResult] = field(default_factory=dict)
