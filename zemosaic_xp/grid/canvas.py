"""The canvas guard: refuse a mosaic whose assembly cannot fit, before any tile is stacked.

The tile-count guard of :mod:`.geometry` bounds the work, not the canvas: nine small
frames scattered over 8° pass it with a few dozen tiles, and the assembly then asks
for a 200-megapixel canvas and dies with "Unable to allocate 1.36 GiB" after every
tile was stacked. :func:`check_canvas` estimates the assembly's peak memory
(:func:`zemosaic_xp.mosaic.assemble.assembly_memory_bytes`) as soon as the grid is
built and compares it with ``GridConfig.max_canvas_gb``, or by default with
:func:`memory_limit`: 90 % of the least of the available RAM, the process's own limits
(``RLIMIT_AS``, ``RLIMIT_DATA``, minus what it already uses) and its cgroup's limit.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .config import GridConfig
from .geometry import GlobalGrid

__all__ = ["CanvasTooLargeError", "check_canvas", "memory_limit"]

logger = logging.getLogger(__name__)

_GIB = 2.0**30
# Headroom for what the estimate does not count (the interpreter, libraries, page cache).
_LIMIT_FRACTION = 0.9
_CGROUP_ROOT = Path("/sys/fs/cgroup")


class CanvasTooLargeError(ValueError):
    """The mosaic's canvas would not fit in memory; the message says why and how to proceed."""


def _gib(n: float) -> str:
    return f"{n / _GIB:.1f} GiB"


def _proc_status_kib(key: str) -> int | None:
    """A ``/proc/self/status`` field in bytes (Linux), else None."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _available_ram() -> int | None:
    from ..backends.memory import host_memory_info

    host = host_memory_info()
    return None if host is None else host[0]


def _rlimit_room(name: str, used_key: str) -> int | None:
    """What the soft limit ``RLIMIT_<name>`` leaves, given the status field ``used_key``; None: no limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft = resource.getrlimit(getattr(resource, f"RLIMIT_{name}"))[0]
    if soft == resource.RLIM_INFINITY:
        return None
    return max(0, int(soft) - (_proc_status_kib(used_key) or 0))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_limit(folders: list[Path], limit_name: str, usage_name: str) -> int | None:
    """What the first folder holding ``limit_name`` leaves: limit − usage; None: no limit there."""
    for folder in folders:
        limit = _read_int(folder / limit_name)
        if limit is None:
            continue
        if limit >= 2**60:  # cgroup v1 spells "no limit" as a huge number
            return None
        return max(0, limit - (_read_int(folder / usage_name) or 0))
    return None


def _cgroup_room() -> int | None:
    """What this process's cgroup memory limit leaves (v2, else v1); None: no limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        # In a container the cgroup's own folder is often mounted as the root.
        if controllers == "":  # cgroup v2 ("max" reads as no limit)
            room = _cgroup_limit([_CGROUP_ROOT / rel, _CGROUP_ROOT], "memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            room = _cgroup_limit([_CGROUP_ROOT / "memory" / rel, _CGROUP_ROOT / "memory"],
                                 "memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        if room is not None:
            return room
    return None


def memory_limit() -> tuple[int | None, str]:
    """How much memory a run may plan for, and where that figure comes from.

    Returns
    -------
    limit_bytes : int or None
        90 % of the least of: the available RAM (psutil, else ``/proc/meminfo``),
        what ``RLIMIT_AS`` and ``RLIMIT_DATA`` leave beyond the process's current
        virtual and data size, and what its cgroup's memory limit leaves. None when
        none of them can be read.
    how : str
        The figures, in words, for messages (``"90 % of the least of: available
        RAM 6.2 GiB, RLIMIT_AS leaves 3.0 GiB"``).
    """
    sources = {"available RAM": _available_ram(), "RLIMIT_AS leaves": _rlimit_room("AS", "VmSize"),
               "RLIMIT_DATA leaves": _rlimit_room("DATA", "VmData"), "the cgroup memory limit leaves": _cgroup_room()}
    known = {k: v for k, v in sources.items() if v is not None}
    if not known:
        return None, "no memory figure could be read"
    limit = int(_LIMIT_FRACTION * min(known.values()))
    how = ", ".join(f"{k} {_gib(v)}" for k, v in known.items())
    return limit, f"{_LIMIT_FRACTION:.0%} of the least of: {how}"


def _span_deg(grid: GlobalGrid) -> tuple[float, float]:
    height, width = grid.shape
    return width * grid.pixel_scale_deg, height * grid.pixel_scale_deg


def check_canvas(grid: GlobalGrid, config: GridConfig, *, label: str | None = None) -> int:
    """Refuse a grid whose assembly would need more memory than the run may use.

    Parameters
    ----------
    grid : GlobalGrid
        The group's grid, as built (no tile stacked yet).
    config : GridConfig
        ``max_canvas_gb``: None = :func:`memory_limit`, 0 = no check, else the limit
        in GiB.
    label : str, optional
        The mount group (``"EQ"``), named in the message.

    Returns
    -------
    int
        The estimated peak memory of the assembly, in bytes.

    Raises
    ------
    CanvasTooLargeError
        The estimate exceeds the limit. The message gives the frames' span in
        degrees, the canvas in px and channels, the estimate and the limit with its
        origin, and how to proceed (split the plan, or raise ``max_canvas_gb``).
    """
    from ..mosaic.assemble import assembly_memory_bytes  # the assembly's imports only when a run needs them

    height, width = grid.shape
    sizes = [(t.y1 - t.y0) * (t.x1 - t.x0) for t in grid.tiles]
    # The run's assembly reads its tiles by rows from their files (grid.tile.read_tile).
    need = assembly_memory_bytes(grid.shape, grid.channels, sum(sizes), largest_tile_pixels=max(sizes, default=0))
    if config.max_canvas_gb == 0:
        return need
    if config.max_canvas_gb is None:
        limit, how = memory_limit()
        if limit is None:
            logger.debug("[GRID] canvas guard skipped: %s", how)
            return need
    else:
        limit, how = int(config.max_canvas_gb * _GIB), "max_canvas_gb"
    if need <= limit:
        return need
    span_x, span_y = _span_deg(grid)
    frames_px = sum(f.shape[0] * f.shape[1] * (f.pixel_scale_deg / grid.pixel_scale_deg) ** 2 for f in grid.frames)
    covered = min(1.0, frames_px / (height * width))
    group = f"[{label}] " if label else ""
    msg = (f"{group}the frames span {span_x:.1f}° × {span_y:.1f}° and the mosaic would be {width} × {height} px × "
           f"{grid.channels} channel(s), needing about {_gib(need)} to assemble; this run may use {_gib(limit)} "
           f"({how}). The {len(grid.frames)} frames cover at most {covered:.2%} of that canvas: split "
           f"stack_plan.csv into groups of neighbouring frames and make one mosaic of each, or, if the machine "
           f"has the memory, raise the limit with max_canvas_gb (ZeMosaic key grid_max_canvas_gb; 0 = no limit)")
    raise CanvasTooLargeError(msg)
