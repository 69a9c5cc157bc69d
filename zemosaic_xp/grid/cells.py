"""Cut a tile into blocks of cells: each cell with only the frames that reach it.

A tile is cut into a fixed grid of cells (``CELL_ROWS × CELL_COLS`` pixels). A cell is
stacked with the frames whose patch box reaches it, not with every frame of the tile:
the samples the core sorts and clips per pixel drop from "frames in the tile" to about
the local depth, and a block no longer carries columns that are NaN everywhere in it.

The cell grid and each cell's frame list depend only on the tile's geometry. The
memory budget only changes how many rows of a cell go through the core at once, and
the core works per pixel. So the result stays bit-identical for any budget or block
size, and every frame that has data at a pixel is in that pixel's stack.
:func:`cell_blocks` yields the blocks lazily to the core's band driver
(:func:`~zemosaic_xp.core.band_driver.stack_bands`), which reads them through
:class:`~zemosaic_xp.io.patch_store.PatchSource`.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from ..core.band_driver import Block
from ..core.config import StackConfig
from ..core.pipeline import rows_per_band
from ..io.patch_store import PatchStore

__all__ = ["CELL_ROWS", "CELL_COLS", "cell_blocks"]

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


def cell_blocks(store: PatchStore, active: Sequence[int], *, budget: int, config: StackConfig, height: int,
                width: int, channels: int, gpu: bool, policy: Any = None) -> Iterator[Block]:
    """Yield the blocks of a tile, cell row by cell row, each with the frames that reach it.

    Parameters
    ----------
    store : PatchStore
        The tile's patches (their boxes decide which frames reach a cell).
    active : sequence of int
        Store slots of the frames with data, in plan order.
    budget : int
        Bytes one block may use.
    config : StackConfig
        The stack settings; their memory factor sizes the rows of a block.
    height, width : int
        Tile size in pixels.
    channels : int
        Channels of every frame.
    gpu : bool
        Whether blocks start on the GPU (no ~2 MiB cap per block then).
    policy : GpuPolicy, optional
        The run's GPU policy: each halving of its ``budget_scale`` (an out-of-memory
        error) halves the rows of the following blocks.

    Yields
    ------
    Block
        Rows ``[r0, r1)`` × columns ``[c0, c1)`` of one cell, inside one cell row
        (at most ``CELL_ROWS`` × ``CELL_COLS`` px), with ``frames`` the positions in
        ``active`` of the frames whose patch box reaches the cell (``()``: none, the
        block is written as no data). The blocks cover the tile exactly once.
    """
    def _scale() -> float:
        return 1.0 if policy is None else policy.budget_scale

    for cy0 in range(0, height, CELL_ROWS):
        cy1 = min(height, cy0 + CELL_ROWS)
        cols = [(cx0, min(width, cx0 + CELL_COLS)) for cx0 in range(0, width, CELL_COLS)]
        frame_lists = [_cell_frames(store, active, cy0, cy1, c0, c1) for c0, c1 in cols]
        rows_full = _rows(frame_lists, [c1 - c0 for c0, c1 in cols], channels, budget, config, cy1 - cy0, gpu)
        r0 = cy0
        while r0 < cy1:
            # Read the scale for every block row: an out-of-memory error on the GPU halves
            # it, and the following blocks shrink with it (the failed block was redone on
            # the CPU; results are per pixel, so nothing changes).
            r1 = min(cy1, r0 + max(1, int(rows_full * _scale())))
            for (c0, c1), frames in zip(cols, frame_lists):
                yield Block(r0, r1, c0, c1, frames)
            r0 = r1
