"""The output folder of a grid run: its lock, and what killed runs left in it.

A run holds the folder's lock (:class:`~zemosaic_xp.io.runlock.FolderLock`) from start
to end, so it is the only live writer there. That is what makes it safe to delete, at
its start, everything a killed run left behind: the hidden temporary files of
atomic writes (``.mosaic_grid.fits.*.tmp``, as large as the mosaic, and
``tiles/.tile_NNNN.fits.*.tmp``), published normalisation maps
(``tiles/.maps_*``), patch spill folders (``tiles/.patches_*``) and running-markers
(``tiles/.running/``). At the end of the tile stage the spill folders, the markers and
the ``.running`` folder itself are removed again.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, Callable

from ..io.atomic import remove_temp_files
from ..io.runlock import FolderLock
from .worker import RUNNING_DIR

__all__ = ["lock_output_folder", "remove_leftovers", "remove_scratch"]

# The files of the assembly (zemosaic_xp.mosaic.assemble.MOSAIC_OUTPUT_NAMES, a test
# checks), repeated here so that the start of a run does not import the assembly.
_OUTPUT_NAMES = ("mosaic_grid.fits", "mosaic_grid_coverage.fits", "mosaic_grid_preview.png")


def lock_output_folder(out: Path) -> FolderLock:
    """Take the run lock of a grid run's output folder.

    Parameters
    ----------
    out : Path
        The output folder (it exists).

    Returns
    -------
    FolderLock
        Held; the caller releases it in ``finally``. A lock left by a run that is gone
        is taken over with a ``[GRID]`` warning.

    Raises
    ------
    zemosaic_xp.io.runlock.FolderLockedError
        Another live run holds the folder; the message names it (pid, host, start).
    """
    return FolderLock(out, what="grid run", tag="[GRID]").acquire()


def remove_scratch(tiles_dir: Path) -> None:
    """Delete patch spill folders, running-markers and the ``.running`` folder.

    Parameters
    ----------
    tiles_dir : Path
        A ``tiles/`` folder of a run that holds the output folder's lock.
    """
    for path in tiles_dir.glob(".patches_*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in (tiles_dir / RUNNING_DIR).glob("*"):
        with contextlib.suppress(OSError):
            path.unlink()
    with contextlib.suppress(OSError):
        (tiles_dir / RUNNING_DIR).rmdir()


def remove_leftovers(out: Path, emit: Callable[..., Any]) -> int:
    """Delete what killed runs left in an output folder (see the module docstring).

    Parameters
    ----------
    out : Path
        The output folder; its ``grid_*`` group folders are cleaned too. The caller
        holds its lock: no live run writes there.
    emit : callable
        ``emit(message, *args)`` for the ``[GRID]`` line that counts what was removed.

    Returns
    -------
    int
        Files and folders removed.
    """
    removed = 0
    for folder in (out, *sorted(p for p in out.glob("grid_*") if p.is_dir())):
        removed += sum(len(remove_temp_files(folder, name)) for name in _OUTPUT_NAMES)
        tiles_dir = folder / "tiles"
        if not tiles_dir.is_dir():
            continue
        removed += len(remove_temp_files(tiles_dir))  # tiles, manifest, maps
        for path in tiles_dir.glob(".maps_*"):
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
        removed += sum(1 for _ in tiles_dir.glob(".patches_*"))
        removed += sum(1 for _ in (tiles_dir / RUNNING_DIR).glob("*"))
        remove_scratch(tiles_dir)
    if removed:
        emit("[GRID] removed %d temporary file(s) left in '%s' by an interrupted run", removed, out)
    return removed
