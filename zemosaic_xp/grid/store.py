"""Where a tile's reprojected patches wait while the tile is stacked band by band.

Each frame of a tile is reprojected once onto its patch box and kept here; row bands
``(h, W, C, N)`` of the whole tile are then assembled from the patches, so every
band sees *every* frame of the tile and rejection works on the full stack, whatever
the band size. Patches stay in RAM up to the budget and otherwise go to one
memory-mapped scratch file in the output folder, removed when the tile is done.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["PatchStore", "patch_store_bytes"]

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


def patch_store_bytes(boxes: Sequence[Box], channels: int) -> int:
    """Bytes the patches of ``boxes`` take: C float32 values + 1 float32 weight per pixel."""
    return sum((b[1] - b[0]) * (b[3] - b[2]) for b in boxes) * (channels + 1) * 4


class PatchStore:
    """Reprojected patches of one tile, in RAM or in a memory-mapped scratch file.

    Parameters
    ----------
    boxes : sequence of (py0, py1, px0, px1)
        Patch box of each frame, in tile pixels.
    tile_shape : (H, W)
    channels : int
    budget_bytes : int
        Past this many bytes of patches, they spill to disk.
    scratch_dir : path
        Where the scratch file goes (a private sub-directory is made and removed).

    Notes
    -----
    Use as a context manager, or call :meth:`close`; the scratch file is deleted
    either way, also when the tile fails.
    """

    def __init__(self, boxes: Sequence[Box], tile_shape: tuple[int, int], channels: int, *,
                 budget_bytes: int, scratch_dir: str | os.PathLike) -> None:
        self.boxes = [tuple(int(v) for v in b) for b in boxes]
        self.tile_shape = tuple(int(v) for v in tile_shape)
        self.channels = int(channels)
        self.nbytes = patch_store_bytes(self.boxes, self.channels)
        self.spilled = self.nbytes > budget_bytes
        self._dir: Path | None = None
        self._file: np.memmap | None = None
        self._patches: list[np.ndarray | None] = [None] * len(self.boxes)
        self._weights: list[np.ndarray | None] = [None] * len(self.boxes)
        self._offsets: list[int] = []
        if self.spilled:
            self._open_scratch(scratch_dir)

    def _open_scratch(self, scratch_dir: str | os.PathLike) -> None:
        Path(scratch_dir).mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=".patches_", dir=scratch_dir))
        offset = 0
        for box in self.boxes:
            self._offsets.append(offset)
            offset += (box[1] - box[0]) * (box[3] - box[2]) * (self.channels + 1)
        self._file = np.memmap(self._dir / "patches.f32", dtype=np.float32, mode="w+", shape=(max(offset, 1),))
        logger.debug("[GRID] patches spill to %s (%.1f MB)", self._dir, self.nbytes / 2**20)

    def __enter__(self) -> PatchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the patches and delete the scratch file; idempotent."""
        self._patches = [None] * len(self.boxes)
        self._weights = [None] * len(self.boxes)
        # Dropping the last references unmaps the file (CPython refcounting), which
        # Windows needs before the file can be deleted.
        self._file = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def put(self, k: int, patch: np.ndarray, weight: np.ndarray) -> None:
        """Keep frame ``k``'s patch ``(h, w, C)`` and weight ``(h, w)`` (shapes of its box)."""
        py0, py1, px0, px1 = self.boxes[k]
        h, w = py1 - py0, px1 - px0
        if patch.shape != (h, w, self.channels) or weight.shape != (h, w):
            msg = (f"patch {k} has shape {patch.shape} / weight {weight.shape}; expected "
                   f"{(h, w, self.channels)} / {(h, w)}")
            raise ValueError(msg)
        if self._file is None:
            self._patches[k] = np.ascontiguousarray(patch, dtype=np.float32)
            self._weights[k] = np.ascontiguousarray(weight, dtype=np.float32)
            return
        start = self._offsets[k]
        n = h * w * self.channels
        self._file[start:start + n] = patch.reshape(-1)
        self._file[start + n:start + n + h * w] = weight.reshape(-1)
        self._patches[k] = self._file[start:start + n].reshape(h, w, self.channels)
        self._weights[k] = self._file[start + n:start + n + h * w].reshape(h, w)

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``k``'s patch and weight (views into the scratch file when spilled)."""
        patch, weight = self._patches[k], self._weights[k]
        if patch is None or weight is None:
            msg = f"patch {k} was never stored"
            raise KeyError(msg)
        return patch, weight

    def band(self, r0: int, r1: int, frames: Sequence[int], c0: int = 0,
             c1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[r0, r1)`` and columns ``[c0, c1)`` of the tile for ``frames``, frames last.

        Returns
        -------
        values : ndarray, shape (r1 - r0, c1 - c0, C, N), float32
            NaN where a frame has no data.
        weights : ndarray, shape (r1 - r0, c1 - c0, 1, N), float32
            Footprint × ALPHA; 0 where a frame has no data.
        """
        c1 = self.tile_shape[1] if c1 is None else c1
        n = len(frames)
        values = np.full((r1 - r0, c1 - c0, self.channels, n), np.nan, dtype=np.float32)
        weights = np.zeros((r1 - r0, c1 - c0, 1, n), dtype=np.float32)
        for j, k in enumerate(frames):
            py0, py1, px0, px1 = self.boxes[k]
            a, b = max(r0, py0), min(r1, py1)
            x0, x1 = max(c0, px0), min(c1, px1)
            if a >= b or x0 >= x1:
                continue
            patch, weight = self.get(k)
            values[a - r0:b - r0, x0 - c0:x1 - c0, :, j] = patch[a - py0:b - py0, x0 - px0:x1 - px0]
            weights[a - r0:b - r0, x0 - c0:x1 - c0, 0, j] = weight[a - py0:b - py0, x0 - px0:x1 - px0]
        return values, weights

    def has_data(self, k: int) -> bool:
        """True when frame ``k`` contributes at least one pixel with weight > 0."""
        _, weight = self.get(k)
        return bool(np.any(weight > 0))
