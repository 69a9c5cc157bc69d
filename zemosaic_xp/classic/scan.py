"""Pass 1 of a master tile: read every frame once, validate it, sample it.

Before any band is stacked, :func:`scan_frames` reads each frame once (whole when it
fits a quarter of the budget, else in blocks of rows) to

- skip frames with no finite pixel (a warning names the file);
- take the frame's statistics sub-sample with :meth:`FrameStack.samples
  <zemosaic_xp.core.frames.FrameStack.samples>` — the very sub-sample ``stack()``
  uses, so FITS streaming plans normalisation and weights exactly as the in-memory
  stack does;
- note whether any frame has an ALPHA extension and whether the inputs hold any
  (non-zero) data, which the GPU result check needs.

The sub-samples of all frames, ``(N, C, M)`` float32, can exceed the memory budget
(2 000 frames × 65 536 samples = 512 MiB). They are then spilled to an anonymous
temporary file, and :class:`ChunkedFrameSamples` computes each per-frame statistic
over chunks of frames that fit the budget. Every statistic of
:class:`~zemosaic_xp.core.framestats.FrameSamples` is per frame (a row of its
``(N·C, M)`` working array), so the chunked values are bit-identical to the
in-memory ones.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends.numpy_xp import numpy_namespace
from ..core.frames import FrameStack
from ..core.framestats import FrameSamples
from ..core.pipeline import FramePlan, plan_frames
from ..io.bands import ArraySource, FitsSource

__all__ = ["FrameScan", "scan_frames", "plan_scan", "ChunkedFrameSamples", "STATS_MEMORY_FACTOR"]

logger = logging.getLogger(__name__)

#: The host namespace of the frame statistics (array-api-compat's NumPy).
np_xp = numpy_namespace()

#: Positioned reads (not on Windows: there reads of the spill file take turns).
_PREADV = hasattr(os, "preadv")

#: Peak memory of FrameSamples statistics in multiples of the samples' float32 bytes
#: (sorted copy, float64 prefix sums and masks of the clipped σ).
STATS_MEMORY_FACTOR = 16


class _SampleStore:
    """Per-frame sub-samples ``(C, M)``: in memory, or spilled to a temporary file."""

    def __init__(self, n_frames: int, budget_bytes: int) -> None:
        self._expected_frames = n_frames
        self._budget_bytes = budget_bytes
        self.channels = self.size = self.frame_bytes = 0
        self.spilled = False
        self._parts: list[np.ndarray] = []
        self._file: Any = None
        self._unflushed = False  # the file's buffer holds writes preadv would not see
        self._lock = threading.Lock()
        self.n_frames = 0

    def append(self, samples: np.ndarray) -> None:
        """Add one frame's sub-sample, shape ``(1, C, M)`` or ``(C, M)``."""
        samples = np.asarray(samples, dtype=np.float32)
        if self.n_frames == 0:  # the layout and the spill decision come with the first frame
            self.channels, self.size = int(samples.shape[-2]), int(samples.shape[-1])
            self.frame_bytes = self.channels * self.size * 4
            need = self._expected_frames * self.frame_bytes * STATS_MEMORY_FACTOR
            self.spilled = need > self._budget_bytes
            if self.spilled:
                self._file = tempfile.TemporaryFile(prefix="zemosaic_xp_samples_")
        samples = np.ascontiguousarray(samples).reshape(self.channels, self.size)
        if self._file is None:
            self._parts.append(samples)
        else:
            self._file.write(samples.tobytes())
            self._unflushed = True
        self.n_frames += 1

    def read(self, i0: int, i1: int) -> np.ndarray:
        """Frames ``[i0, i1)`` as ``(i1 - i0, C, M)`` float32."""
        if self._file is None:
            return np.stack(self._parts[i0:i1], axis=0)
        out = np.empty((i1 - i0, self.channels, self.size), dtype=np.float32)
        view, offset, done = memoryview(out).cast("B"), i0 * self.frame_bytes, 0
        while done < out.nbytes:  # chunks are read from several threads (ChunkedFrameSamples)
            if _PREADV:
                if self._unflushed:
                    with self._lock:
                        if self._unflushed:
                            self._file.flush()
                            self._unflushed = False
                got = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            else:  # no positioned reads (Windows): one reader at a time; seek() flushes the writes
                with self._lock:
                    self._file.seek(offset + done)
                    got = self._file.readinto(view[done:])
            if not got:
                msg = f"temporary frame-statistics file is short ({done} of {out.nbytes} bytes)"
                raise OSError(msg)
            done += got
        return out

    def close(self) -> None:
        self._parts = []
        if self._file is not None:
            self._file.close()
            self._file = None


class ChunkedFrameSamples:
    """:class:`FrameSamples` of many frames, computed over chunks of frames.

    Any public method of ``FrameSamples`` (``quantile``, ``clipped_std``,
    ``luminance_quantile``, ...) is available: it runs on each chunk of
    ``frames_per_chunk`` frames and the per-frame results are concatenated along
    axis 0, then cached for the run. ``samples`` is a zero-memory NaN placeholder of
    the right shape, dtype and device (the core reads only its device); the values
    live in the store.

    Parameters
    ----------
    store : _SampleStore
        The per-frame sub-samples ``(C, M)`` float32 of every frame, usually spilled
        to a temporary file; read one chunk at a time.
    frames_per_chunk : int
        Frames per chunk (at least 1), sized so that ``workers`` chunks' statistics
        fit the budget together.
    workers : int
        Chunks computed at once, on threads (NumPy's sorts and reductions release
        the GIL); the values do not depend on it.

    Attributes
    ----------
    n_frames, channels, size : int
        N, C and M of the sub-samples.
    samples : ndarray, shape (N, C, M), float32
        Read-only NaN placeholder (a broadcast scalar, no memory).
    """

    def __init__(self, store: _SampleStore, *, frames_per_chunk: int, workers: int = 1) -> None:
        self.xp = np_xp
        self.workers = max(1, int(workers))
        self.n_frames, self.channels, self.size = store.n_frames, store.channels, store.size
        self.samples = np.broadcast_to(np.float32(np.nan), (self.n_frames, self.channels, self.size))
        self.frames_per_chunk = max(1, int(frames_per_chunk))
        self._store = store
        self._cache: dict[tuple, Any] = {}
        self._recording: list[tuple] | None = None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(FrameSamples, name, None)
        if name.startswith("_") or not callable(method):
            msg = f"ChunkedFrameSamples has no per-frame statistic {name!r}"
            raise AttributeError(msg)

        def per_frame(*args: Any, **kwargs: Any) -> Any:
            key = (name, args, tuple(sorted(kwargs.items())))
            if key not in self._cache:
                if self._recording is not None:
                    self._recording.append(key)
                    return self._placeholder(key)
                self._cache.update(self._compute([key]))
            return self._cache[key]

        return per_frame

    def paired_fit(self, reference: int, start_gain: Any, start_offset: Any) -> tuple[Any, Any, Any]:
        """:meth:`FrameSamples.paired_fit`, chunk by chunk against the reference's samples.

        Each chunk is fitted with the reference frame's samples appended as its last
        frame; every row is fitted on its own, so the values are bit-identical to the
        in-memory ones. NaN placeholders while a dry run records.

        Parameters
        ----------
        reference : int
            Index of the reference frame.
        start_gain, start_offset : array, shape (N, C)
            Where each fit starts (see :func:`zemosaic_xp.core.pairfit.paired_fit`).

        Returns
        -------
        gain, offset : ndarray, shape (N, C), float64
            The fit, or the start where it was not used.
        ok : ndarray, shape (N, C), bool
            The paired fit was used.
        """
        shape = (self.n_frames, self.channels)
        if self._recording is not None:
            nan = np.full(shape, np.nan)
            return nan, nan, np.zeros(shape, dtype=bool)
        start_gain, start_offset = np.asarray(start_gain), np.asarray(start_offset)
        ref = self._store.read(reference, reference + 1)
        parts: list[tuple] = []
        for i0 in range(0, self.n_frames, self.frames_per_chunk):
            i1 = min(self.n_frames, i0 + self.frames_per_chunk)
            chunk = FrameSamples(np.concatenate([self._store.read(i0, i1), ref]), xp=np_xp)
            pad = np.ones((1, self.channels))
            g0 = np.concatenate([start_gain[i0:i1], pad])
            o0 = np.concatenate([start_offset[i0:i1], 0 * pad])
            parts.append(tuple(v[:-1] for v in chunk.paired_fit(i1 - i0, g0, o0)))
            del chunk
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    def _record(self, run: Callable[[], Any]) -> None:
        """Run ``run()`` once to learn which statistics it asks for, then compute them all.

        During the dry run every statistic returns a NaN placeholder of its real shape
        and dtype (errors and warnings of the dry run are ignored); the statistics it
        asked for are then computed together in **one** pass over the chunks, so the
        real run finds them cached. Statistics it skipped are still computed on demand.
        """
        self._recording = []
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                run()
        except Exception:  # noqa: BLE001 - the dry run only collects names; the real run reports
            pass
        finally:
            keys, self._recording = list(dict.fromkeys(self._recording)), None
        if keys:
            self._cache.update(self._compute(keys))

    def _placeholder(self, key: tuple) -> Any:
        name, args, kwargs = key
        one = getattr(FrameSamples(self._store.read(0, 1), xp=np_xp), name)(*args, **dict(kwargs))
        return np.full((self.n_frames, *one.shape[1:]), np.nan, dtype=one.dtype)

    def _compute(self, keys: list[tuple]) -> dict[tuple, Any]:
        def chunk_values(bounds: tuple[int, int]) -> list[Any]:
            i0, i1 = bounds
            chunk = FrameSamples(self._store.read(i0, i1), xp=np_xp)
            values = []
            for name, args, kwargs in keys:
                value = getattr(chunk, name)(*args, **dict(kwargs))
                if getattr(value, "shape", ())[:1] != (i1 - i0,):
                    msg = f"FrameSamples.{name} is not a per-frame statistic; it cannot be chunked"
                    raise TypeError(msg)
                values.append(value)
            return values

        chunks = [(i0, min(self.n_frames, i0 + self.frames_per_chunk))
                  for i0 in range(0, self.n_frames, self.frames_per_chunk)]
        if self.workers > 1 and len(chunks) > 1:
            # map() keeps the order; at most `workers` chunks are in memory at once.
            with ThreadPoolExecutor(min(self.workers, len(chunks))) as pool:
                per_chunk = list(pool.map(chunk_values, chunks))
        else:
            per_chunk = [chunk_values(bounds) for bounds in chunks]
        return {key: np_xp.concat([values[k] for values in per_chunk], axis=0) for k, key in enumerate(keys)}


@dataclass
class FrameScan:
    """What pass 1 learned about the frames of one master tile.

    Attributes
    ----------
    sources : list
        Frames kept, in input order.
    skipped : list of str
        Names of frames skipped because no pixel is finite.
    stats : FrameSamples or ChunkedFrameSamples
        Sub-samples ``(N, C, M)`` of the kept frames, on the host (NumPy).
    has_alpha : bool
        At least one kept frame has an ALPHA extension.
    has_data, has_nonzero : bool
        Some finite sample with a non-zero ALPHA weight exists / is non-zero.
    exposure_total_sec : float or None
        Sum of EXPTIME/EXPOSURE when every kept frame has one.
    spilled : bool
        The sub-samples were spilled to a temporary file.
    """

    sources: list
    skipped: list[str]
    stats: Any
    has_alpha: bool
    has_data: bool
    has_nonzero: bool
    exposure_total_sec: float | None
    spilled: bool
    _store: Any = field(default=None, repr=False)

    def close(self) -> None:
        """Release the sub-samples (and their temporary file)."""
        if self._store is not None:
            self._store.close()
            self._store = None


def _frame_flags(frame: np.ndarray, alpha: np.ndarray | None) -> tuple[bool, bool, bool]:
    """(any finite pixel, any finite sample with weight > 0, ... that is non-zero)."""
    finite = np.isfinite(frame)
    usable = finite & (alpha > 0)[..., None] if alpha is not None else finite
    return bool(finite.any()), bool(usable.any()), bool(np.any(usable & (frame != 0)))


def _sample_step(hw: int, stats_samples: int) -> int:
    # FrameStack.samples' documented stride: every ceil(H·W / max_samples)-th pixel.
    return 1 if stats_samples <= 0 else max(1, math.ceil(hw / stats_samples))


def _read_frame_once(source: FitsSource | ArraySource, *, stats_samples: int,
                     block_bytes: int) -> tuple[np.ndarray, bool, bool, bool, bool]:
    """Sub-sample ``(C, M)`` and flags (finite, data, nonzero, alpha) of one frame.

    A frame that fits ``block_bytes`` is read whole and sampled by ``FrameStack``
    itself; a larger one is read in blocks of rows and sampled with the same stride
    (flat pixel index ``k·step``), so the values are identical either way.
    """
    h, w, c = source.height, source.width, source.channels
    rows = max(1, int(block_bytes) // (w * c * 4))
    flags = [False, False, False]
    if rows >= h:
        frame = source.read_rows(0, h)
        alpha = source.read_alpha_rows(0, h) if source.has_alpha else None
        samples = FrameStack([frame]).samples(stats_samples)[0]
        return samples, *_frame_flags(frame, alpha), alpha is not None
    step, picks, has_alpha = _sample_step(h * w, stats_samples), [], False
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        block = source.read_rows(r0, r1)
        alpha = source.read_alpha_rows(r0, r1) if source.has_alpha else None
        has_alpha = has_alpha or alpha is not None
        flags = [a or b for a, b in zip(flags, _frame_flags(block, alpha))]
        picks.append(block.reshape(-1, c)[(-r0 * w) % step::step])
    return np.ascontiguousarray(np.concatenate(picks).T), *flags, has_alpha


def _needs_no_read(source: FitsSource | ArraySource, need_samples: bool) -> bool:
    """An integer FITS frame without ALPHA is finite everywhere: nothing to learn by reading it."""
    return not need_samples and not source.has_alpha and bool(getattr(source, "is_integer", False))


def scan_frames(sources: Sequence[FitsSource | ArraySource], *, stats_samples: int,
                budget_bytes: int, progress_callback: Callable[..., Any],
                need_samples: bool = True, workers: int = 1) -> FrameScan:
    """Pass 1: validate, sub-sample and flag every frame; see the module docstring.

    Parameters
    ----------
    sources : sequence of FitsSource or ArraySource
        The tile's frames, all of one shape (see
        :func:`~zemosaic_xp.io.bands.open_sources`).
    stats_samples : int
        ``StackConfig.frame_stats_samples``.
    budget_bytes : int
        Host memory for the sub-samples' statistics (beyond it they are spilled to a
        temporary file and processed in chunks); a frame larger than a quarter of it
        is read in blocks of rows.
    progress_callback : callable
        Receives ``("STAGE_PROGRESS", "scan", done, total=N)``.
    need_samples : bool
        False when the plan reads no statistic (``normalize="none"`` and
        ``weighting="none"``): integer FITS frames without ALPHA are then not read at
        all (they cannot be all-NaN), and ``has_nonzero`` stays unknown (False) for
        them.
    workers : int
        Threads that compute the statistics of spilled sub-samples, a chunk each
        (the chunks shrink so that together they keep to the budget).

    Returns
    -------
    FrameScan
        The kept frames and their sub-samples, on the host. Call its
        :meth:`~FrameScan.close` when done (it may hold a temporary file).

    Raises
    ------
    ValueError
        Every frame is all-NaN (the message names them).
    """
    store = _SampleStore(len(sources), budget_bytes)
    kept, skipped = [], []
    has_alpha = has_data = has_nonzero = False
    exposures: list[float | None] = []
    try:
        for i, source in enumerate(sources):
            if _needs_no_read(source, need_samples):
                samples = np.zeros((source.channels, 1), dtype=np.float32)  # never read: the plan is the identity
                finite, data, nonzero, alpha = True, True, False, False
            else:
                samples, finite, data, nonzero, alpha = _read_frame_once(
                    source, stats_samples=stats_samples, block_bytes=budget_bytes // 4)
            if not finite:
                logger.warning("[P3] skipping '%s': no finite pixel (all NaN/inf), nothing to stack",
                               source.name)
                skipped.append(source.name)
            else:
                has_data, has_nonzero = has_data or data, has_nonzero or nonzero
                has_alpha = has_alpha or alpha
                store.append(samples)
                kept.append(source)
                exposures.append(source.exposure_sec)
            del samples
            progress_callback("STAGE_PROGRESS", "scan", i + 1, total=len(sources))
    except BaseException:
        store.close()
        raise
    if not kept:
        store.close()
        names = ", ".join(f"'{s}'" for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        msg = f"no usable frame: all {len(skipped)} frames have no finite pixel ({names})"
        raise ValueError(msg)
    if store.spilled:
        workers = max(1, int(workers))
        per_chunk = budget_bytes // (store.frame_bytes * STATS_MEMORY_FACTOR * workers)
        stats: Any = ChunkedFrameSamples(store, frames_per_chunk=per_chunk, workers=workers)
    else:
        stats = FrameSamples(store.read(0, store.n_frames), xp=np_xp)
    exposure = sum(exposures) if all(e is not None for e in exposures) else None
    return FrameScan(kept, skipped, stats, has_alpha, has_data, has_nonzero, exposure,
                     store.spilled, store)


def plan_scan(scan: FrameScan, config: Any) -> FramePlan:
    """Plan normalisation and weights from the scanned sub-samples.

    Runs :func:`~zemosaic_xp.core.pipeline.plan_frames` on ``scan.stats``; spilled
    sub-samples are read in one pass over their chunks.

    Parameters
    ----------
    scan : FrameScan
        Result of :func:`scan_frames`.
    config : StackConfig
        Methods and parameters of the stack.

    Returns
    -------
    FramePlan
        Gains, offsets and weights of the kept frames, as host NumPy arrays.
    """
    if isinstance(scan.stats, ChunkedFrameSamples):
        scan.stats._record(lambda: plan_frames(scan.stats, config))
    return plan_frames(scan.stats, config)
