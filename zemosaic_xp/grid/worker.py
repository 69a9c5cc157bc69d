"""The tile task: what crosses the process boundary, and the function a worker runs.

A task carries only small things — the tile geometry, the canvas WCS as a header
string, the frames' paths and exposures, the settings — and the worker reads the
FITS files itself, so no image ever goes through a pipe. It returns a
:class:`TileOutcome` (never raises for a tile error), with the log records the tile
produced when it ran in another process, for the parent to replay.

Test-only hooks (documented in ``docs/grid.md``), read from the environment of the
worker so that they reach spawned processes:

- ``ZEMOSAIC_XP_TEST_FAIL_TILE=<id>[,<id>...]``: the tile raises ``RuntimeError``.
- ``ZEMOSAIC_XP_TEST_KILL_TILE=<id>[,<id>...]``: on its first attempt the tile's
  process kills itself with SIGKILL (a marker file in the tiles folder remembers it).
- ``ZEMOSAIC_XP_TEST_HOLD_TILE=<id>[,<id>...]``: the tile, once started (its running
  marker written), waits until ``tiles/.test_release`` exists (at most 120 s), so
  that a test can signal a run while its tiles are surely running.

The worker processes themselves (SIGINT, parent death, start-up) are :mod:`.processes`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astropy.io import fits
from astropy.wcs import WCS

from ..io.framecache import FRAMES
from .config import GridConfig
from .geometry import TileSpec
from .tile import FrameRef, stack_tile, tile_filename, write_tile

__all__ = ["TileTask", "TileOutcome", "run_tile_task", "warm_up", "RUNNING_DIR", "TEST_FAIL_ENV",
           "TEST_KILL_ENV", "TEST_HOLD_ENV", "TEST_RELEASE_FILE"]

TEST_FAIL_ENV = "ZEMOSAIC_XP_TEST_FAIL_TILE"
TEST_KILL_ENV = "ZEMOSAIC_XP_TEST_KILL_TILE"
TEST_HOLD_ENV = "ZEMOSAIC_XP_TEST_HOLD_TILE"
#: The file in ``tiles/`` that releases the tiles held by :data:`TEST_HOLD_ENV`.
TEST_RELEASE_FILE = ".test_release"
#: Sub-folder of ``tiles/`` where each running task leaves a marker (crash forensics).
RUNNING_DIR = ".running"
_HOLD_MAX_SEC = 120.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileTask:
    """Everything a worker needs to make one tile.

    Attributes
    ----------
    tile : TileSpec
        The tile's box and its frames' patch boxes.
    grid_header : str
        The canvas WCS (``WCS.to_header_string``).
    frames : tuple of FrameRef
        In the order of ``tile.frames``.
    channels : int
        Channels of every frame.
    config : GridConfig
        The run's settings.
    tiles_dir : str
        The ``tiles/`` folder: the tile file, its running-marker and patch spills go there.
    run_id : str
        Identifies the run (scratch files, logs).
    use_gpu : bool
        Stack on the GPU: with the runner's :class:`~zemosaic_xp.gpu.GpuPolicy` when the
        task runs in its process, else with a policy of the task's own.
    attempt : int
        1 for the first try, 2 for the retry.
    parent_pid : int
        The runner's process; a task running elsewhere collects its log records.
    log_level : int
        Level of the runner's ``zemosaic_xp`` logger, applied in other processes.
    maps_file : str, optional
        Set when the task is submitted before the survey normalisation is known: the
        ``frames`` then carry no gains/offsets, and the tile waits for them in this
        file once its frames are reprojected (:mod:`.framemaps`).
    noise_samples : int, optional
        Noise samples per frame for the weights, the same for every tile of a run.
    threads : int, optional
        Threads for the reprojection's per-pixel work (:mod:`.point_threads`): the
        cores a tile made in the runner's process may use. The tile does not depend on it.
    """

    tile: TileSpec
    grid_header: str
    frames: tuple[FrameRef, ...]
    channels: int
    config: GridConfig
    tiles_dir: str
    run_id: str
    use_gpu: bool = False
    attempt: int = 1
    parent_pid: int = 0
    log_level: int = logging.INFO
    maps_file: str | None = None
    noise_samples: int | None = None
    threads: int = 1

    @property
    def tile_id(self) -> int:
        """Return the id of the task's tile.

        Returns
        -------
        int
            ``tile.tile_id``.
        """
        return self.tile.tile_id


@dataclass
class TileOutcome:
    """What a tile task reports back.

    Attributes
    ----------
    tile_id : int
        The tile.
    ok : bool
        The tile was made and written.
    file : str or None
        File name of the tile inside ``tiles/`` when ``ok``.
    pid : int
        Process that ran it.
    attempt : int
        1 for the first try, 2 for the retry.
    elapsed_sec : float
        Wall time of the task, in seconds.
    stats : dict
        Stack statistics of the tile (JSON-able).
    error : str or None
        ``"<Type>: <message>"`` when not ``ok``.
    details : str or None
        The traceback when not ``ok`` (logged at DEBUG level by the scheduler).
    log_records : list of logging.LogRecord
        Records logged while the task ran in another process.
    """

    tile_id: int
    ok: bool
    file: str | None
    pid: int
    attempt: int
    elapsed_sec: float
    stats: dict = field(default_factory=dict)
    error: str | None = None
    details: str | None = None
    log_records: list = field(default_factory=list)


def warm_up(stack_config: Any = None) -> int:
    """First task of a fresh worker: load what tiles need while the runner sets up.

    That is this module's imports (astropy, the core), scipy.ndimage for the
    interpolation and the core's numba kernels when numba is installed — not reproject
    (:mod:`.reproject_tile` does without it) nor the runner, the assembly or
    scipy.sparse, which only the runner uses. With ``stack_config``, a few pixels of
    five frames also go through the tile's plan and stack, so that the kernels that
    configuration uses (and the ~70 numba modules their cache needs) are loaded now
    rather than inside the first tile, after the survey normalisation is known.
    Never raises: a failed warm-up only leaves the loading to the first tile.

    Parameters
    ----------
    stack_config : StackConfig, optional
        The run's stack settings; None loads the imports and kernels only.

    Returns
    -------
    int
        The worker's process id.
    """
    import scipy.ndimage  # noqa: F401

    from ..backends.numba import numba_kernels

    numba_kernels()
    if stack_config is not None:
        try:
            _warm_stack(stack_config)
        except Exception as exc:  # noqa: BLE001 - warm-up is an optimisation only
            logger.debug("[GRID] worker warm-up stack failed: %s", exc)
    return os.getpid()


def _warm_stack(stack_config: Any) -> None:
    import numpy as np

    from ..backends import select_backend
    from ..core.band_driver import BandDevice, band_blocks, stack_bands
    from .tile_plan import plan_tile_frames

    xp = select_backend("numpy").xp
    n, channels = 5, 1
    rng = np.random.default_rng(0)
    noise = [rng.standard_normal((channels, 64)).astype(np.float32) for _ in range(n)]
    plan = plan_tile_frames(np.ones((n, channels)), np.zeros((n, channels)), noise, np.ones(n, np.float32),
                            stack_config, xp=xp)
    values = (100.0 + rng.standard_normal((2, 8, channels, n))).astype(np.float32)
    values[0, 0, 0, 0] = np.nan
    weights = np.ones((2, 8, 1, n), dtype=np.float32)

    class _Warm:
        height, width = values.shape[:2]
        channels = values.shape[2]

        @staticmethod
        def read(block: Any) -> tuple[Any, Any]:
            return values, weights

    stack_bands(_Warm(), band_blocks(2, 2), config=stack_config, plan=plan, device=BandDevice(xp))


def _ids(env_name: str) -> set[int]:
    raw = os.environ.get(env_name, "")
    return {int(v) for v in raw.replace(";", ",").split(",") if v.strip().lstrip("-").isdigit()}


def _test_hooks(task: TileTask) -> None:
    if task.tile_id in _ids(TEST_HOLD_ENV):
        release = Path(task.tiles_dir) / TEST_RELEASE_FILE
        deadline = time.monotonic() + _HOLD_MAX_SEC
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    if task.tile_id in _ids(TEST_KILL_ENV):
        marker = Path(task.tiles_dir) / f".test_killed_{task.tile_id:04d}"
        if not marker.exists():
            marker.write_text(str(os.getpid()), encoding="utf-8")
            os.kill(os.getpid(), signal.SIGKILL)
    if task.tile_id in _ids(TEST_FAIL_ENV):
        msg = f"injected failure for tile {task.tile_id} ({TEST_FAIL_ENV})"
        raise RuntimeError(msg)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Make the record picklable: format its message, drop args and tracebacks.
        record.msg = record.getMessage()
        record.args = None
        record.exc_info = None
        record.exc_text = None
        self.records.append(record)


class _CollectLogs:
    """Capture ``zemosaic_xp`` records while a task runs in a worker process."""

    def __init__(self, active: bool, level: int) -> None:
        self.active = active
        self.level = level
        self.handler = _Collector()
        self._saved: tuple[int, bool] | None = None

    def __enter__(self) -> _CollectLogs:
        if self.active:
            root = logging.getLogger("zemosaic_xp")
            self._saved = (root.level, root.propagate)
            root.setLevel(self.level)
            root.propagate = False
            root.addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active and self._saved is not None:
            root = logging.getLogger("zemosaic_xp")
            root.removeHandler(self.handler)
            root.setLevel(self._saved[0])
            root.propagate = self._saved[1]


def _gpu_policy(task: TileTask, policy: Any) -> Any:
    """The run's policy when the task runs in the runner's process; else one of its own."""
    if not task.use_gpu:
        return None
    if policy is not None:
        return policy
    from ..gpu.policy import GpuPolicy

    return GpuPolicy.for_grid("auto")


def _make_tile(task: TileTask, gpu_policy: Any = None) -> tuple[str, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FITSFixedWarning on header round trips
        grid_wcs = WCS(fits.Header.fromstring(task.grid_header))
    tiles_dir = Path(task.tiles_dir)
    resolve = None
    if task.maps_file is not None:
        from .framemaps import await_frame_maps

        def resolve(frames: Any) -> Any:
            return await_frame_maps(task.maps_file, frames, parent_pid=task.parent_pid)

    product = stack_tile(task.tile, grid_wcs, task.frames, task.config, scratch_dir=tiles_dir,
                         channels=task.channels, gpu_policy=_gpu_policy(task, gpu_policy), resolve_frames=resolve,
                         noise_samples=task.noise_samples, threads=task.threads)
    name = tile_filename(task.tile_id)
    write_tile(tiles_dir / name, task.tile, grid_wcs, product, task.config)
    return name, product.stats


def _summary(stats: dict) -> dict:
    keys = ("n_frames", "rejected_pct", "rejected_low_fraction", "rejected_high_fraction", "valid_samples",
            "iterations", "n_bands", "band_rows", "spilled", "patch_store_mb", "gpu_bands", "cpu_bands",
            "gpu_fallbacks", "time_reproject_sec", "time_wait_maps_sec", "time_total_sec", "cpu_sec")
    return {k: stats[k] for k in keys if k in stats}


def run_tile_task(task: TileTask, gpu_policy: Any = None) -> TileOutcome:
    """Make one tile and write it; errors are reported in the outcome, not raised.

    Runs in a worker process (spawned) or in the runner's process, where the run's
    ``gpu_policy`` (a :class:`~zemosaic_xp.gpu.GpuPolicy`) is passed for GPU tasks. A running-marker
    file ``tiles/.running/tile_NNNN`` exists while the task runs, so that after a
    worker crash the runner knows which tiles were in progress.

    Parameters
    ----------
    task : TileTask
        The tile to make.
    gpu_policy : GpuPolicy, optional
        The run's GPU policy, used when ``task.use_gpu`` and the task runs in the
        runner's process; without it a GPU task makes a policy of its own.

    Returns
    -------
    TileOutcome
        ``ok`` with the file name and the tile's stack statistics, or the error and
        its traceback; with the log records of the task when it ran in another
        process than the runner.
    """
    t0 = time.perf_counter()
    pid = os.getpid()
    marker = Path(task.tiles_dir) / RUNNING_DIR / f"tile_{task.tile_id:04d}"
    with _CollectLogs(pid != task.parent_pid, task.log_level) as logs:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{pid} {task.attempt}", encoding="utf-8")
            _test_hooks(task)
            FRAMES.fit_budget(int(task.config.stack_chunk_budget_mb * 2**20))
            name, stats = _make_tile(task, gpu_policy)
            outcome = TileOutcome(task.tile_id, True, name, pid, task.attempt, time.perf_counter() - t0,
                                  _summary(stats))
        except Exception as exc:  # noqa: BLE001 - a tile error must not stop the run
            outcome = TileOutcome(task.tile_id, False, None, pid, task.attempt, time.perf_counter() - t0,
                                  error=f"{type(exc).__name__}: {exc}", details=traceback.format_exc())
        finally:
            marker.unlink(missing_ok=True)
    outcome.log_records = logs.handler.records
    return outcome
