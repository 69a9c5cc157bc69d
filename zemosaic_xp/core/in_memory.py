"""Stacks held in memory, on their own backend, through the one band driver.

:func:`stack_frames` is what ``zemosaic_xp.stack`` runs once the frames are on the
chosen backend: it plans the frames from sub-samples (:func:`~.pipeline.plan_frames`),
sizes row bands from the memory budget, and streams them through
:func:`~.band_driver.stack_bands` from an :class:`ArrayBandSource`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

from .band_driver import BandDevice, Block, band_blocks, stack_bands
from .config import StackConfig
from .frames import FrameStack
from .framestats import FrameSamples
from .ops import ArrayOps, ops_for
from .pipeline import RESULT_NAMES, StackResult, finish_stack, memory_factor, plan_frames, rows_per_band
from .weights import user_weight_kind

__all__ = ["ArrayBandSource", "stack_frames"]

Array = Any
ProgressCallback = Callable[..., Any]

# Smallest band worth its per-band overheads (when the stack itself is small).
_MIN_BAND_BYTES = 256 * 1024
_DEFAULT_BUDGET_BYTES = 256 * 1024**2


class ArrayBandSource:
    """A :class:`~.band_driver.BandSource` over in-memory frames (and per-pixel weights).

    Parameters
    ----------
    stack : FrameStack
        The frames, ``(N, H, W[, C])`` on one device.
    pixel_weights : FrameStack, optional
        Per-pixel weights of the same shape (or ``(N, H, W)`` for every channel);
        NaN weights count as 0.
    ops : ArrayOps
        Fast paths used for the band layout change.
    """

    def __init__(self, stack: FrameStack, pixel_weights: FrameStack | None, ops: ArrayOps) -> None:
        self.stack, self.pixel_weights, self.ops = stack, pixel_weights, ops
        self.height, self.width, self.channels = stack.height, stack.width, stack.channels

    def read(self, block: Block) -> tuple[Array, Array | None]:
        """Read the rows of one block from every frame, with their per-pixel weights.

        Parameters
        ----------
        block : Block
            A full-width band; its ``r0`` and ``r1`` are used (every frame).

        Returns
        -------
        values : array, shape (h, W, C, N), float32
            A new array on the stack's device; NaN = no data.
        weights : array, shape (h, W, C, N) or (h, W, 1, N), float32, or None
            The per-pixel weights of those rows, NaN replaced by 0; None without
            ``pixel_weights``.
        """
        values = self.stack.band(block.r0, block.r1, ops=self.ops)
        weights = None
        if self.pixel_weights is not None:
            xp = self.stack.xp
            weights = self.pixel_weights.band(block.r0, block.r1, ops=self.ops)
            weights = xp.where(xp.isnan(weights), xp.zeros_like(weights), weights)
        return values, weights


def _stack_delegated(frames: Any, weights: Any, delegate: tuple, **kwargs: Any) -> StackResult:
    """Run :func:`stack_frames` in the delegate namespace, on the same memory."""
    ops, to, back = delegate
    frames = [to(f) for f in frames] if isinstance(frames, (list, tuple)) else to(frames)
    if weights is not None and not isinstance(weights, (list, tuple)):
        weights = to(weights)
    result = stack_frames(frames, weights=weights, ops=ops, **kwargs)
    for name in RESULT_NAMES:
        value = getattr(result, name)
        setattr(result, name, None if value is None else back(value))
    result.stats["ops"] = f"{ops.name} (delegated)"
    return result


def _split_user_weights(weights: Array | None, stack: FrameStack) -> tuple[Array | None, FrameStack | None]:
    """User weights as (frame-level (N,)/(N, C) array, per-pixel FrameStack) — one is None."""
    if weights is None:
        return None, None
    xp = stack.xp
    if isinstance(weights, (list, tuple)):
        try:
            weights = xp.asarray(weights, dtype=xp.float32, device=stack.device)
        except Exception as exc:  # noqa: BLE001 - any conversion failure is a bad argument
            msg = f"`weights` could not be read as an array of numbers: {exc}"
            raise ValueError(msg) from exc
    kind = user_weight_kind(weights, stack.n_frames, stack.height, stack.width, stack.channels,
                            stack.mono)
    if kind in ("frame", "channel"):
        return weights, None
    if weights.ndim == 4 and stack.mono:
        weights = weights[..., 0]
    return None, FrameStack(weights, name="weights")


def _band_rows(stack: FrameStack, config: StackConfig, ops: ArrayOps, workers: int,
               memory_budget_bytes: int | None) -> int:
    budget = _DEFAULT_BUDGET_BYTES if memory_budget_bytes is None else int(memory_budget_bytes)
    # The budget covers every band in flight: one per worker thread.
    band_rows = rows_per_band(stack.n_frames, stack.width, stack.channels, budget // workers, config,
                              height=stack.height)
    if ops.band_bytes:
        # Cache-sized bands (CPU), and small beside the stack itself: the bands in
        # flight need about memory_factor × their bytes together.
        row_bytes = stack.n_frames * stack.width * stack.channels * 4
        small = (row_bytes * stack.height) // (workers * int(memory_factor(config)))
        target = min(ops.band_bytes, max(_MIN_BAND_BYTES, small))
        band_rows = min(band_rows, max(1, target // row_bytes))
    return band_rows


def stack_frames(frames: Array | Sequence[Array], /, *, config: StackConfig | None = None,
                 weights: Array | None = None, band_rows: int | None = None,
                 memory_budget_bytes: int | None = None,
                 progress_callback: ProgressCallback | None = None,
                 ops: ArrayOps | None = None, uncertainty: bool = True) -> StackResult:
    """Stack in-memory frames on their own backend; see ``zemosaic_xp.stack``.

    Parameters
    ----------
    frames : array, shape (N, H, W[, C]); or sequence of (H, W[, C]) arrays
        Aligned frames of one library and device, float or integer (converted to
        float32 band by band); NaN and ±inf mean "no data".
    config : StackConfig, optional
        Methods and parameters; default ``StackConfig()`` (ZeMosaic's).
    weights : array, shape (N,), (N, C), (N, H, W) or (N, H, W, C), optional
        User weights per frame, frame and channel, or pixel, on the frames' device;
        multiplied with the quality weights. A weight of 0 (or NaN, per pixel)
        excludes the sample.
    band_rows : int, optional
        Rows per band; default from ``memory_budget_bytes``.
    memory_budget_bytes : int, optional
        Working memory of the bands in flight together (default 256 MiB); ignored
        when ``band_rows`` is given. The result does not depend on it.
    progress_callback : callable, optional
        Receives ``("STAGE_PROGRESS", "stack", bands_done, total=n_bands)``.
    ops : ArrayOps, optional
        Fast paths and strategy (default: the backend's, from
        :func:`~.ops.ops_for`); bands run on ``ops.band_workers`` threads, each at
        most ``ops.band_bytes`` of float32 when that is set; ``ops.band_stacker``
        may stack every band natively.
    uncertainty : bool
        Compute ``StackResult.uncertainty``, the standard error map (default True);
        False leaves it None.

    Returns
    -------
    StackResult
        Arrays of shape (H, W) or (H, W, C) in the namespace and on the device of
        ``frames`` (image NaN where no sample survived), and the stack's ``stats``.

    Raises
    ------
    TypeError
        ``config`` is not a :class:`StackConfig`, or the frames are not numeric arrays
        of one library.
    ValueError
        Empty input, mismatched frame shapes, bad weights or ``band_rows``, or an
        invalid ``reference_frame``.
    """
    config = StackConfig() if config is None else config
    if not isinstance(config, StackConfig):
        msg = f"`config` must be a StackConfig, got {type(config).__name__}"
        raise TypeError(msg)
    t0 = time.perf_counter()
    stack = FrameStack(frames)
    xp = stack.xp
    ops = ops_for(xp, stack.device) if ops is None else ops
    delegate = ops.host_delegate()
    if delegate is not None:
        return _stack_delegated(frames, weights, delegate, config=config, band_rows=band_rows,
                                memory_budget_bytes=memory_budget_bytes,
                                progress_callback=progress_callback, uncertainty=uncertainty)
    frame_weights, pixel_weights = _split_user_weights(weights, stack)
    # The identity normalisation and equal weights read no statistic: one sample each.
    n_stats = config.frame_stats_samples
    if config.normalize == "none" and config.weighting == "none":
        n_stats = 1
    plan = plan_frames(FrameSamples(stack.samples(n_stats, ops=ops), xp=xp), config,
                       frame_weights=frame_weights)
    t_plan = time.perf_counter() - t0
    workers = max(1, int(ops.band_workers))
    if band_rows is None:
        band_rows = _band_rows(stack, config, ops, workers, memory_budget_bytes)
    if isinstance(band_rows, bool) or not isinstance(band_rows, int) or band_rows < 1:
        msg = f"`band_rows` must be a positive integer, got {band_rows!r}"
        raise ValueError(msg)
    blocks = band_blocks(stack.height, band_rows)
    # A backend may stack whole bands natively (NumPy + numba) straight into the
    # results; it is offered only configurations it implements, and must then match
    # stack_band exactly.
    stacker = ops.band_stacker(config, plan, pixel_weights=pixel_weights is not None)
    native = None
    if stacker is not None:
        def native(block: Block, views: tuple) -> tuple[int, int, int, int]:
            pw = None
            if pixel_weights is not None:
                src, a, b = pixel_weights.band_source(block.r0, block.r1)
                pw = src[:, a:b]
            return stacker(*stack.band_source(block.r0, block.r1), views, row_start=block.r0,
                           full_height=stack.height, pixel_weights=pw)
    workers = min(workers, math.ceil(stack.height / band_rows))
    outputs, stats = stack_bands(ArrayBandSource(stack, pixel_weights, ops), blocks, config=config, plan=plan,
                                 device=BandDevice(xp, ops=ops, device=stack.device), native=native,
                                 outputs=RESULT_NAMES if uncertainty else RESULT_NAMES[:5],
                                 workers=workers, progress_callback=progress_callback)
    stats.update({
        "band_rows": band_rows,
        "n_frames": stack.n_frames,
        "namespace": getattr(xp, "__name__", str(xp)),
        "ops": ops.name,
        "band_workers": workers,
        "time_plan_sec": t_plan,
        "time_total_sec": time.perf_counter() - t0,
    })
    return finish_stack(outputs, stats, config=config, mono=stack.mono)
