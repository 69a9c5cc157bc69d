"""Stack a tile cell by cell: each cell with only the frames that reach it.

A tile is cut into a fixed grid of cells (``CELL_ROWS × CELL_COLS`` pixels). A cell is
stacked with the frames whose patch box reaches it, not with every frame of the tile:
the samples the core sorts and clips per pixel drop from "frames in the tile" to about
the local depth, and a band no longer carries columns that are NaN everywhere in it.

The cell grid and each cell's frame list depend only on the tile's geometry. The
memory budget only changes how many rows of a cell go through the core at once, and
the core works per pixel. So the result stays bit-identical for any budget or band
size, and every frame that has data at a pixel is in that pixel's stack.

Row bands for :func:`~zemosaic_xp.core.stack.assemble` are built by placing the cells
of a band side by side.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.config import StackConfig
from ..core.stack import BandResult, rows_per_band
from .store import PatchStore

__all__ = ["CELL_ROWS", "CELL_COLS", "stack_cells"]

#: Cell size in tile pixels (rows, columns). About 1 MB of samples at 3 channels and
#: 16 frames: cache-sized for the CPU passes of a rejection.
CELL_ROWS = 32
CELL_COLS = 128
_CPU_BAND_BYTES = 2 * 1024 * 1024


def _cell_frames(store: PatchStore, active: Sequence[int], y0: int, y1: int, x0: int, x1: int) -> tuple[int, ...]:
    """Positions (in ``active``) of the frames whose patch box reaches the cell."""
    out = []
    for j, k in enumerate(active):
        py0, py1, px0, px1 = store.boxes[k]
        if py0 < y1 and py1 > y0 and px0 < x1 and px1 > x0:
            out.append(j)
    return tuple(out)


def _empty(h: int, w: int, c: int) -> BandResult:
    zeros = np.zeros((h, w, c), dtype=np.float32)
    counts = np.zeros((h, w, c), dtype=np.int32)
    return BandResult(np.full((h, w, c), np.nan, dtype=np.float32), zeros, counts, counts.copy(), counts.copy(),
                      0, 0, 0, 0)


def _hconcat(parts: list[BandResult]) -> BandResult:
    """Cells of one band, left to right, as one band result."""
    def cat(name: str) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(p, name)) for p in parts], axis=1)

    return BandResult(cat("image"), cat("weight_sum"), cat("coverage"), cat("rejected_low"), cat("rejected_high"),
                      max(p.iterations for p in parts), sum(p.n_valid for p in parts), sum(p.n_low for p in parts),
                      sum(p.n_high for p in parts))


def _rows(frame_lists: list[tuple[int, ...]], widths: list[int], channels: int, budget: int,
          config: StackConfig, cell_rows: int, gpu: bool) -> int:
    """Rows per call for one row of cells: within the budget (and ~2 MiB on the CPU) for every cell."""
    rows = cell_rows
    for frames, width in zip(frame_lists, widths):
        n = max(1, len(frames))
        rows = min(rows, rows_per_band(n, width, channels, budget, config, height=cell_rows))
        if not gpu:
            rows = min(rows, max(1, _CPU_BAND_BYTES // (n * width * channels * 4)))
    return max(1, rows)


def stack_cells(store: PatchStore, active: Sequence[int], stacker: Any, *, budget: int, config: StackConfig,
                height: int, width: int, channels: int, gpu: bool) -> tuple[list[BandResult], int]:
    """Stack a tile cell by cell; return its row bands (for ``assemble``) and the largest band height.

    Parameters
    ----------
    store : PatchStore
        The tile's patches.
    active : sequence of int
        Store slots of the frames with data, in plan order.
    stacker : BandStacker
        Stacks one ``(h, w, C, n)`` block given the plan positions of its ``n`` frames.
    budget : int
        Bytes one call may use.
    gpu : bool
        Whether the stacker starts on the GPU (no ~2 MiB cap on the calls then).
    """
    bands: list[BandResult] = []
    largest = 0
    shrink = 1  # doubles at each GPU out-of-memory error, for the rest of the tile
    for cy0 in range(0, height, CELL_ROWS):
        cy1 = min(height, cy0 + CELL_ROWS)
        cols = [(cx0, min(width, cx0 + CELL_COLS)) for cx0 in range(0, width, CELL_COLS)]
        frame_lists = [_cell_frames(store, active, cy0, cy1, c0, c1) for c0, c1 in cols]
        rows = _rows(frame_lists, [c1 - c0 for c0, c1 in cols], channels, budget, config, cy1 - cy0, gpu)
        rows = max(1, rows // shrink)
        r0 = cy0
        while r0 < cy1:
            r1 = min(cy1, r0 + rows)
            parts = []
            for (c0, c1), frames in zip(cols, frame_lists):
                if not frames:
                    parts.append(_empty(r1 - r0, c1 - c0, channels))
                    continue
                values, weights = store.band(r0, r1, [active[j] for j in frames], c0, c1)
                parts.append(stacker.stack(values, weights, frames))
            bands.append(_hconcat(parts))
            largest = max(largest, r1 - r0)
            r0 = r1
            if stacker.oom:
                # Out of GPU memory: smaller calls for the rest of the tile (the failed call was
                # redone on the CPU; results are per pixel, so nothing changes).
                shrink *= 2
                rows = max(1, rows // 2)
                stacker.oom = False
    return bands, largest
