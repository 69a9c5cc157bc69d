"""How many workers a grid run starts: the request, capped by tiles, CPU cores and RAM.

``grid_workers`` (or ``--workers``) is 1 (tiles in the calling process), 0 (auto) or a
count. A count above 1 starts that many worker processes (or threads), each of which
costs a Python interpreter with its libraries and the memory of the tile it makes, so
:func:`resolve_workers` caps it — also when it was given explicitly, with a ``[GRID]``
warning that says to what and why:

- by the tiles of the run (more workers would start idle processes);
- by the CPU cores this process may run on (its affinity); auto keeps two of them
  free, an explicit count may use them all;
- by the RAM a worker may need, within ``target_ram_fraction`` of the available RAM
  (when psutil is installed);
- auto also by ``max_cpu_workers``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from .config import GridConfig

__all__ = ["resolve_workers", "most_workers", "point_threads"]

logger = logging.getLogger(__name__)

# What one worker process may need, for the RAM cap of the worker count: the interpreter
# and its libraries (220 MB measured, tiny tiles), the frame cache (a quarter of the budget,
# at most 256 MB) and the tile's patches (up to the budget), plus one band (the budget).
# Measured peak RSS on the demo survey (40 RGB frames of 384 px, 6 tiles): 350-380 MB per
# worker (docs/grid.md, "Parallelism").
_BASE_WORKER_MB = 512.0


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _available_ram_mb() -> float | None:
    from ..backends.memory import host_memory_info

    host = host_memory_info()
    return None if host is None else host[0] / 2**20


def _log_emit(message: str, *args: Any, level: int = logging.INFO) -> None:
    logger.log(level, message, *args)


def _worker_caps(config: GridConfig, n_tiles: int | None, auto: bool) -> list[tuple[int, str]]:
    """Upper bounds of the worker count, each with the reason a warning gives."""
    cpus = _cpu_count()
    caps = [(max(1, cpus - 2), f"auto: {cpus} CPU core(s) - 2") if auto
            else (cpus, f"{cpus} CPU core(s) available to this process")]
    per_worker_mb = _BASE_WORKER_MB + 2.0 * config.stack_chunk_budget_mb
    available_mb = _available_ram_mb()
    if available_mb is not None:
        fits = max(1, int(available_mb * config.target_ram_fraction // per_worker_mb))
        caps.append((fits, f"{available_mb / 1024:.1f} GB of RAM available x {config.target_ram_fraction:g} "
                           f"holds {fits} worker(s) of ~{per_worker_mb / 1024:.1f} GB (512 MB + 2 x "
                           f"stack_chunk_budget_mb)"))
    if auto and config.max_cpu_workers > 0:
        caps.append((config.max_cpu_workers, f"parallel_max_cpu_workers = {config.max_cpu_workers}"))
    if n_tiles is not None:
        caps.append((max(1, n_tiles), f"the run has {n_tiles} tile(s)"))
    return caps


def resolve_workers(requested: int | None, config: GridConfig, *, n_tiles: int | None = None,
                    emit: Callable[..., None] | None = None) -> tuple[int, str]:
    """Choose the number of workers of a run.

    Parameters
    ----------
    requested : int or None
        The ``grid_workers`` argument of :func:`run_grid_mode`; wins over
        ``config.workers``. Neither set → 1 (the safe library default).
        0 = auto: max(1, cpu_count − 2), capped by ``max_cpu_workers``. N > 0 may use
        every core. Either way the count is capped by the CPU cores of this process
        (its affinity), by the RAM a worker may need (``512 MB + 2 ×
        stack_chunk_budget_mb``: libraries, frame cache, patches and one band) within
        ``target_ram_fraction`` of the available RAM (when psutil is installed), and by
        ``n_tiles``.
    config : GridConfig
        The run's settings (``workers``, ``stack_chunk_budget_mb``,
        ``target_ram_fraction``, ``max_cpu_workers``).
    n_tiles : int, optional
        Tiles of the run: more workers than tiles would only start idle processes.
    emit : callable, optional
        ``emit(message, *args, level=...)`` for the ``[GRID]`` warning of a capped
        explicit count (default: this module's logger).

    Returns
    -------
    workers : int
        At least 1.
    how : {"default", "requested", "auto", "requested, capped"}
        How the count was chosen, for the log.

    Raises
    ------
    ValueError
        The count is not an integer >= 0.
    """
    emit = emit or _log_emit
    value = requested if requested is not None else config.workers
    if value is None:
        return 1, "default"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"`grid_workers` must be an integer >= 0 (0 = auto), got {value!r}"
        raise ValueError(msg)
    if value == 1:
        return 1, "requested"
    caps = _worker_caps(config, n_tiles, auto=value == 0)
    if value == 0:
        workers = min(cap for cap, _ in caps)
        logger.info("[GRID] auto workers: %d (%s)", workers, "; ".join(f"{why} -> {cap}" for cap, why in caps))
        return workers, "auto"
    workers = min([value] + [cap for cap, _ in caps])
    if workers == value:
        return value, "requested"
    emit("[GRID] %d workers requested, capped to %d: %s", value, workers,
         "; ".join(why for cap, why in caps if cap == workers), level=logging.WARNING)
    return workers, "requested, capped"


def most_workers(requested: int | None, config: GridConfig) -> int:
    """The most workers :func:`resolve_workers` can choose before the tile count is known.

    Quiet (nothing logged). The runner starts the fork server of worker processes
    early only when this exceeds 1.

    Parameters
    ----------
    requested : int or None
        As for :func:`resolve_workers`.
    config : GridConfig
        As for :func:`resolve_workers`.

    Returns
    -------
    int
        At least 1; 1 also for an invalid count (:func:`resolve_workers` raises later).
    """
    value = requested if requested is not None else config.workers
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 0 or value == 1:
        return 1
    caps = [cap for cap, _ in _worker_caps(config, None, auto=value == 0)]
    return min(caps if value == 0 else [value] + caps)


#: Most threads a tile's per-pixel work uses (:mod:`.point_threads`); more gain little on
#: the small patches of a tile and would crowd a shared machine.
_MAX_POINT_THREADS = 8


def point_threads(workers: int, *, external: bool = False) -> int:
    """Return the threads for the per-pixel work of each tile (transforms and samples, :mod:`.point_threads`).

    Parameters
    ----------
    workers : int
        The run's workers (:func:`resolve_workers`): 1 = the tiles run in this process.
    external : bool
        Tiles go to a caller's executor (a dask cluster): its workers' cores are not
        known here, so 1.

    Returns
    -------
    int
        The CPU cores of this process shared between the workers, at least 1 and at
        most 8: a run with one worker gives its tiles every core, N workers on N cores
        one each. Results do not depend on it.
    """
    if external:
        return 1
    return max(1, min(_MAX_POINT_THREADS, _cpu_count() // max(1, int(workers))))
