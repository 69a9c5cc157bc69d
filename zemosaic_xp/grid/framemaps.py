"""Hand the survey normalisation to tiles that are already running.

With worker processes the tiles are submitted before the survey normalisation is
solved (:mod:`.runner`): a worker reads and reprojects its tile's frames meanwhile,
and only the stack needs the frames' gains and offsets. The runner then publishes
them in ``tiles/.maps_<run>_<group>.npz`` (written atomically), and a waiting tile
reads them there (:func:`await_frame_maps`). If the normalisation fails, the runner
writes ``….failed`` with the error instead, and waiting tiles fail at once.

A file, not a pipe, because the tile may run on any executor whose tasks can write
``tiles/`` (a ``distributed`` cluster on a shared file system, say), and because a
retried or resubmitted tile finds the maps there whenever it starts.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["maps_path", "publish_frame_maps", "publish_failure", "await_frame_maps", "MAPS_TIMEOUT_SEC"]

logger = logging.getLogger(__name__)

#: Longest a tile waits for the survey normalisation (the runner always publishes the
#: maps or a failure; this only guards against a runner that vanished).
MAPS_TIMEOUT_SEC = 6 * 3600.0
_POLL_MIN_SEC = 0.002
_POLL_MAX_SEC = 0.05


def maps_path(tiles_dir: str | os.PathLike, run_id: str, group: str | None) -> Path:
    """Return the file where the maps of one run and plan group are published.

    Parameters
    ----------
    tiles_dir : str or path-like
        The group's ``tiles/`` folder.
    run_id : str
        Identifier of the run (a stale file of another run is never read).
    group : str or None
        Mount group label (``"EQ"``, ``"ALTZ"``); None for an unsplit run.

    Returns
    -------
    Path
        ``<tiles_dir>/.maps_<run_id>_<group or "all">.npz``; the failure marker is
        the same path with the suffix ``.failed``.
    """
    return Path(tiles_dir) / f".maps_{run_id}_{group or 'all'}.npz"


def _failed_path(path: Path) -> Path:
    return path.with_suffix(".failed")


def publish_frame_maps(path: str | os.PathLike, gains: np.ndarray, offsets: np.ndarray) -> None:
    """Write the gains and offsets of every frame atomically.

    Parameters
    ----------
    path : str or path-like
        :func:`maps_path` of the run and group. A temporary file beside it is
        renamed over it, so a reader sees the whole file or none.
    gains, offsets : ndarray, shape (N, C)
        The survey normalisation ``x' = gain·x + offset`` of every frame and channel,
        row = frame index; stored as float64, so the tiles read exactly the values
        the runner holds.
    """
    path = Path(path)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, gains=np.asarray(gains, dtype=np.float64), offsets=np.asarray(offsets, dtype=np.float64))
    os.replace(tmp, path)


def publish_failure(path: str | os.PathLike, error: BaseException) -> None:
    """Tell waiting tiles that the normalisation failed (best effort).

    Parameters
    ----------
    path : str or path-like
        :func:`maps_path` of the run and group; ``<path>.failed`` is written with
        ``"<Type>: <message>"`` of ``error``.
    error : BaseException
        What the normalisation raised; waiting tiles fail with its text.

    Notes
    -----
    A file that cannot be written is logged as a warning, not raised: the tiles then
    wait until ``MAPS_TIMEOUT_SEC`` or until they see the runner is gone.
    """
    failed = _failed_path(Path(path))
    try:
        failed.write_text(f"{type(error).__name__}: {error}", encoding="utf-8")
    except OSError as exc:  # pragma: no cover - the tiles then time out
        logger.warning("[GRID] could not publish the normalisation failure (%s)", exc)


def _parent_gone(parent_pid: int, watch: bool) -> bool:
    return watch and os.getppid() != parent_pid


def await_frame_maps(path: str | os.PathLike, frames: Sequence, *, parent_pid: int = 0,
                     timeout: float = MAPS_TIMEOUT_SEC) -> list:
    """Wait for the survey's gains and offsets and return the tile's frames with them.

    Parameters
    ----------
    path : path
        :func:`maps_path` of the run and group.
    frames : sequence of FrameRef
        The tile's frames; ``index`` is the frame's row in the maps.
    parent_pid : int
        The runner's process: when it is this process's parent (a worker of the
        runner's own pool), the wait ends if the runner dies. 0 (default): not watched.
    timeout : float
        Seconds to wait at most (default ``MAPS_TIMEOUT_SEC``, 6 h).

    Returns
    -------
    list of FrameRef
        ``gain`` / ``offset`` as tuples of Python floats, exactly as the runner builds
        them when the maps are known before the tile is submitted.

    Raises
    ------
    RuntimeError
        The normalisation failed, or the runner is gone.
    TimeoutError
        Nothing was published within ``timeout``.
    """
    path = Path(path)
    failed = _failed_path(path)
    watch = parent_pid > 0 and os.getppid() == parent_pid
    deadline = time.monotonic() + timeout
    delay = _POLL_MIN_SEC
    t0 = time.perf_counter()
    while not path.exists():
        if failed.exists():
            msg = f"survey normalisation failed ({failed.read_text(encoding='utf-8', errors='replace')})"
            raise RuntimeError(msg)
        if _parent_gone(parent_pid, watch):
            msg = "the grid runner is gone while this tile waited for the survey normalisation"
            raise RuntimeError(msg)
        if time.monotonic() > deadline:
            msg = f"no survey normalisation after {timeout:.0f} s ({path.name})"
            raise TimeoutError(msg)
        time.sleep(delay)
        delay = min(2.0 * delay, _POLL_MAX_SEC)
    waited = time.perf_counter() - t0
    if waited > 0.01:
        logger.debug("[GRID] waited %.2f s for the survey normalisation", waited)
    with np.load(path) as data:
        gains, offsets = data["gains"], data["offsets"]
    return [replace(f, gain=tuple(float(v) for v in gains[f.index]),
                    offset=tuple(float(v) for v in offsets[f.index])) for f in frames]
