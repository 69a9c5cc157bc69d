"""Where a tile's reprojected patches wait while the tile is stacked band by band.

Each frame of a tile is reprojected once onto its patch box and kept here; row bands
``(h, W, C, N)`` of the whole tile are then assembled from the patches, so every
band sees *every* frame of the tile and rejection works on the full stack, whatever
the band size. Patches stay in RAM up to the budget and otherwise go to one scratch
file in the output folder, removed when the tile is done.

The scratch file is written and read with plain positioned reads and writes (a band
reads only its rows of each patch; threads may read at once), not memory-mapped: pages
of a mapped file count in the process's resident memory as long as they are mapped, so
a 1 GB spill would show as 1 GB more RSS; read and written through the page cache, it
costs the process nothing beyond one band. :class:`PatchSource` serves the store to the
core's band driver.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.band_driver import Block

__all__ = ["PatchStore", "PatchSource"]

logger = logging.getLogger(__name__)

_PREADV = hasattr(os, "preadv")

Box = tuple[int, int, int, int]


def _patch_store_bytes(boxes: Sequence[Box], channels: int, weight_planes: int = 1) -> int:
    """Bytes the patches of ``boxes`` take: C float32 values + 1 (or C) float32 weights per pixel."""
    return sum((b[1] - b[0]) * (b[3] - b[2]) for b in boxes) * (channels + weight_planes) * 4


class PatchStore:
    """Reprojected patches of one tile, in RAM or in a scratch file.

    Parameters
    ----------
    boxes : sequence of (py0, py1, px0, px1)
        Patch box of each frame, in tile pixels: rows ``[py0, py1)``, columns
        ``[px0, px1)``.
    tile_shape : (H, W)
        Size of the tile in pixels.
    channels : int
        C of every patch.
    budget_bytes : int
        Past this many bytes of patches (C float32 values and ``weight_planes``
        float32 weights per pixel), they spill to disk.
    scratch_dir : str or os.PathLike
        Where the scratch file goes (a private sub-directory is made and removed).
    weight_planes : int
        Weights per pixel: 1 (one for every channel, the default) or C (one per
        channel: inverse variances, ``weighting="uncertainty"``).

    Attributes
    ----------
    nbytes : int
        Bytes of all patches and weights.
    weight_planes : int
        Weights per pixel (1, or C: one per channel).
    spilled : bool
        The patches live in the scratch file rather than in RAM.

    Notes
    -----
    Use as a context manager, or call :meth:`close`; the scratch file is deleted
    either way, also when the tile fails.
    """

    def __init__(self, boxes: Sequence[Box], tile_shape: tuple[int, int], channels: int, *,
                 budget_bytes: int, scratch_dir: str | os.PathLike, weight_planes: int = 1) -> None:
        self.boxes = [tuple(int(v) for v in b) for b in boxes]
        self.tile_shape = tuple(int(v) for v in tile_shape)
        self.channels = int(channels)
        if weight_planes not in (1, self.channels):
            msg = f"`weight_planes` must be 1 or the channel count {self.channels}, got {weight_planes!r}"
            raise ValueError(msg)
        self.weight_planes = int(weight_planes)
        self.nbytes = _patch_store_bytes(self.boxes, self.channels, self.weight_planes)
        self.spilled = self.nbytes > budget_bytes
        self._dir: Path | None = None
        self._fh: Any = None  # the scratch file, opened "w+b"
        self._patches: list[np.ndarray | None] = [None] * len(self.boxes)
        self._weights: list[np.ndarray | None] = [None] * len(self.boxes)
        self._stored = [False] * len(self.boxes)
        self._has_data = [False] * len(self.boxes)
        self._offsets: list[int] = []
        self._seek_lock = threading.Lock()
        if self.spilled:
            self._open_scratch(scratch_dir)

    def _open_scratch(self, scratch_dir: str | os.PathLike) -> None:
        Path(scratch_dir).mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=".patches_", dir=scratch_dir))
        offset = 0
        for box in self.boxes:
            self._offsets.append(offset)
            offset += (box[1] - box[0]) * (box[3] - box[2]) * (self.channels + self.weight_planes)
        # Unbuffered: each patch goes to the OS as one write, and the reads below (from
        # several threads at once) see it without a flush.
        self._fh = open(self._dir / "patches.f32", "w+b", buffering=0)  # noqa: SIM115 - closed in close()
        logger.debug("[GRID] patches spill to %s (%.1f MB)", self._dir, self.nbytes / 2**20)

    def __enter__(self) -> PatchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the patches and delete the scratch file; idempotent."""
        self._patches = [None] * len(self.boxes)
        self._weights = [None] * len(self.boxes)
        self._stored = [False] * len(self.boxes)
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()  # before the removal (Windows)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def put(self, k: int, patch: np.ndarray, weight: np.ndarray) -> None:
        """Store frame ``k``'s reprojected patch and its weight.

        Parameters
        ----------
        k : int
            Index of the frame in ``boxes``.
        patch : ndarray, shape (h, w, C), float
            Values on the host, ``(h, w)`` the size of box ``k``; NaN = no data.
            Stored as float32.
        weight : ndarray, shape (h, w) or (h, w, weight_planes), float
            Footprint × ALPHA weights (per channel with ``weight_planes`` = C), 0
            where the frame has no data.

        Raises
        ------
        ValueError
            A shape does not match box ``k``.
        """
        py0, py1, px0, px1 = self.boxes[k]
        h, w = py1 - py0, px1 - px0
        if weight.shape == (h, w):
            weight = weight[..., None]
        if patch.shape != (h, w, self.channels) or weight.shape != (h, w, self.weight_planes):
            msg = (f"patch {k} has shape {patch.shape} / weight {weight.shape}; expected "
                   f"{(h, w, self.channels)} / {(h, w, self.weight_planes)}")
            raise ValueError(msg)
        patch = np.ascontiguousarray(patch, dtype=np.float32)
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        self._has_data[k] = bool(np.any(weight > 0))
        self._stored[k] = True
        if self._fh is None:
            self._patches[k], self._weights[k] = patch, weight
            return
        self._fh.seek(self._offsets[k] * 4)
        self._fh.write(memoryview(patch).cast("B"))
        self._fh.write(memoryview(weight).cast("B"))

    def _read(self, k: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[a, b)`` (patch-relative) of frame ``k``'s patch and weight."""
        if not self._stored[k]:
            msg = f"patch {k} was never stored"
            raise KeyError(msg)
        if self._fh is None:
            return self._patches[k][a:b], self._weights[k][a:b]  # type: ignore[index]
        py0, py1, px0, px1 = self.boxes[k]
        w, c, wp = px1 - px0, self.channels, self.weight_planes
        base = self._offsets[k] * 4
        patch = self._read_f32(base + a * w * c * 4, (b - a) * w * c).reshape(b - a, w, c)
        weight = self._read_f32(base + (py1 - py0) * w * c * 4 + a * w * wp * 4, (b - a) * w * wp)
        return patch, weight.reshape(b - a, w, wp)

    def band(self, r0: int, r1: int, frames: Sequence[int], c0: int = 0,
             c1: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Assemble rows ``[r0, r1)`` and columns ``[c0, c1)`` of the tile for ``frames``.

        Parameters
        ----------
        r0, r1 : int
            Row range in tile pixels.
        frames : sequence of int
            Indices in ``boxes`` of the N frames to read, in output order.
        c0 : int
            First column.
        c1 : int, optional
            End column (exclusive); default the tile width.

        Returns
        -------
        values : ndarray, shape (r1 - r0, c1 - c0, C, N), float32
            NaN where a frame has no data.
        weights : ndarray, shape (r1 - r0, c1 - c0, weight_planes, N), float32
            Footprint × ALPHA (per channel with ``weight_planes`` = C); 0 where a
            frame has no data.

        Raises
        ------
        KeyError
            A frame whose patch overlaps the block was never stored.
        """
        c1 = self.tile_shape[1] if c1 is None else c1
        n = len(frames)
        values = np.full((r1 - r0, c1 - c0, self.channels, n), np.nan, dtype=np.float32)
        weights = np.zeros((r1 - r0, c1 - c0, self.weight_planes, n), dtype=np.float32)
        for j, k in enumerate(frames):
            py0, py1, px0, px1 = self.boxes[k]
            a, b = max(r0, py0), min(r1, py1)
            x0, x1 = max(c0, px0), min(c1, px1)
            if a >= b or x0 >= x1:
                continue
            patch, weight = self._read(k, a - py0, b - py0)
            values[a - r0:b - r0, x0 - c0:x1 - c0, :, j] = patch[:, x0 - px0:x1 - px0]
            weights[a - r0:b - r0, x0 - c0:x1 - c0, :, j] = weight[:, x0 - px0:x1 - px0]
        return values, weights

    def has_data(self, k: int) -> bool:
        """Tell whether frame ``k`` contributes at least one pixel with weight > 0.

        Parameters
        ----------
        k : int
            Index of the frame in ``boxes``.

        Returns
        -------
        bool
            True when the stored weight is positive somewhere.

        Raises
        ------
        KeyError
            Frame ``k`` was never stored.
        """
        if not self._stored[k]:
            msg = f"patch {k} was never stored"
            raise KeyError(msg)
        return self._has_data[k]

    def _read_f32(self, offset: int, count: int) -> np.ndarray:
        """``count`` float32 from byte ``offset`` of the scratch file: positioned reads, safe from threads."""
        out = np.empty(count, dtype=np.float32)
        view = memoryview(out).cast("B")
        done = 0
        while done < out.nbytes:
            if _PREADV:
                got = os.preadv(self._fh.fileno(), [view[done:]], offset + done)
            else:  # no positioned reads (Windows): one reader at a time
                with self._seek_lock:
                    self._fh.seek(offset + done)
                    got = self._fh.readinto(view[done:])
            if not got:
                msg = "patch scratch file is shorter than expected (disk full or file removed?)"
                raise OSError(msg)
            done += got
        return out


class PatchSource:
    """A tile's :class:`PatchStore` as the core's band source.

    Parameters
    ----------
    store : PatchStore
        The tile's reprojected patches.
    active : sequence of int
        Store slots of the frames with data, in plan order; a block's ``frames`` are
        positions in this list.
    channels : int
        C of the patches.
    holes : dict of int to ndarray, optional
        Store slot → flat tile indices ``y·W + x`` (int) where that frame's samples are
        no data: its cosmic-ray hits (:mod:`.cosmic`), blanked at every read.
    """

    def __init__(self, store: PatchStore, active: Sequence[int], channels: int, *,
                 holes: dict[int, np.ndarray] | None = None) -> None:
        self.store, self.active = store, list(active)
        self.height, self.width = store.tile_shape
        self.channels = channels
        self.holes = {k: np.divmod(np.asarray(flat), self.width) for k, flat in (holes or {}).items()}

    def read(self, block: Block) -> tuple[np.ndarray, np.ndarray]:
        """Assemble one block of the tile from the stored patches.

        Parameters
        ----------
        block : Block
            Rows ``[r0, r1)``, columns ``[c0, c1)`` and the frames (positions in
            ``active``; None = all) to read.

        Returns
        -------
        values : ndarray, shape (h, w, C, n), float32
            On the host, frames last; NaN where a frame has no data.
        weights : ndarray, shape (h, w, 1, n) or (h, w, C, n), float32
            Footprint × ALPHA weights (per channel when the store holds inverse
            variances, ``PatchStore.weight_planes``); 0 where a frame has no data.
        """
        frames = range(len(self.active)) if block.frames is None else block.frames
        slots = [self.active[j] for j in frames]
        values, weights = self.store.band(block.r0, block.r1, slots, block.c0, block.c1)
        c1 = self.width if block.c1 is None else block.c1
        for j, k in enumerate(slots):
            if k in self.holes:
                ys, xs = self.holes[k]
                inside = (ys >= block.r0) & (ys < block.r1) & (xs >= block.c0) & (xs < c1)
                if inside.any():
                    values[ys[inside] - block.r0, xs[inside] - block.c0, :, j] = np.nan
                    weights[ys[inside] - block.r0, xs[inside] - block.c0, :, j] = 0.0
        return values, weights
