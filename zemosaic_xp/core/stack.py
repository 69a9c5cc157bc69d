"""The stack pipeline: validate → normalise → weight → reject → combine, band by band.

:func:`stack_frames` stacks an in-memory stack; adapters that stream frames from
disk (classic master tiles, grid tiles) use the same three steps themselves:

1. :func:`plan_frames` — frame-global gains, offsets and quality weights from a
   sub-sample of every frame (:class:`~.framestats.FrameSamples`);
2. :func:`stack_band` — one band of rows, frames on the last axis ``(h, W, C, N)``;
3. :func:`assemble` — concatenate band results into a :class:`StackResult`.

Everything is per pixel, so the output does not depend on the band size.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from array_api_compat import device as _device

from .combine import combine
from .config import StackConfig
from .framestats import FrameSamples
from .frames import FrameStack
from .normalize import normalization
from .ops import ArrayOps, ops_for
from .reject import reject
from .rgb import poststack_rgb_equalization
from .samples import Samples
from .weights import quality_weights, radial_weight_map, user_weight_kind

__all__ = [
    "StackResult",
    "FramePlan",
    "BandResult",
    "plan_frames",
    "stack_band",
    "assemble",
    "stack_frames",
    "rows_per_band",
    "memory_factor",
]

Array = Any
ProgressCallback = Callable[..., Any]

# Working memory of one band, in multiples of the band's float32 bytes (N·h·W·C·4):
# the band itself, its sorted copy, masks and the float64 temporaries of each step.
_MEMORY_FACTOR = {"none": 6.0, "kappa_sigma": 14.0, "winsorized_sigma_clip": 20.0}
# Catalogue rejections: int64 ranks (two argsorts) and float64 prefix sums / fits.
_MEMORY_FACTOR.update({"percentile": 8.0, "mad": 10.0, "minmax": 16.0, "gesd": 16.0,
                       "winsorized_quantile": 16.0, "linear_fit_clip": 30.0})
_DEFAULT_MEMORY_FACTOR = 16.0
# Smallest band worth its per-band overheads (when the stack itself is small).
_MIN_BAND_BYTES = 256 * 1024


@dataclass
class StackResult:
    """Result of a stack.

    Attributes
    ----------
    image : array, shape (H, W) or (H, W, C), float32
        Combined image; NaN where no sample survived.
    weight_sum : array, same shape, float32
        Σ weights of the surviving samples (their count when unweighted); 0 where none.
    coverage : array, same shape, int32
        Number of surviving samples per pixel.
    rejected_low, rejected_high : array, same shape, int32
        Samples rejected below / above the pixel's bounds (rejection maps).
    stats : dict
        JSON-able: method names, iterations, rejected fractions, normalisation gains and
        offsets, weights, backend, band rows, timings.
    """

    image: Array
    weight_sum: Array
    coverage: Array
    rejected_low: Array
    rejected_high: Array
    stats: dict = field(default_factory=dict)


@dataclass
class FramePlan:
    """Frame-global parameters of one stack, shared by all its bands.

    Attributes
    ----------
    gain, offset : array, shape (N, C), float32
        Normalisation ``x' = gain·x + offset``.
    weights : array, shape (N, C), float32, or None
        Quality weights × user frame weights; None = all equal.
    identity : bool
        Every gain is 1 and every offset 0: bands skip the normalisation pass.
    """

    gain: Array
    offset: Array
    weights: Array | None
    stats: dict = field(default_factory=dict)
    identity: bool = False


@dataclass
class BandResult:
    """Outputs of one band, each ``(h, W, C)``, plus its counters."""

    image: Array
    weight_sum: Array
    coverage: Array
    rejected_low: Array
    rejected_high: Array
    iterations: int
    n_valid: int
    n_low: int
    n_high: int


def memory_factor(config: StackConfig) -> float:
    """Peak working memory of a band in multiples of its float32 bytes."""
    return _MEMORY_FACTOR.get(config.reject, _DEFAULT_MEMORY_FACTOR)


def rows_per_band(n_frames: int, width: int, channels: int, budget_bytes: int,
                  config: StackConfig, height: int | None = None) -> int:
    """Rows per band so that one band's working memory fits ``budget_bytes``.

    At least 1 row; at most ``height`` when given.
    """
    row_bytes = max(1, n_frames * width * channels * 4) * memory_factor(config)
    rows = max(1, int(budget_bytes // row_bytes))
    return min(rows, height) if height is not None else rows


def _to_list(x: Array, xp: Any) -> list:
    return [float(v) for v in xp.reshape(xp.astype(x, xp.float64), (-1,))]


def plan_frames(stats: FrameSamples, config: StackConfig, *,
                frame_weights: Array | None = None) -> FramePlan:
    """Gains, offsets and weights of every frame from its sub-sample.

    Parameters
    ----------
    stats : FrameSamples
        Sub-samples of all N frames, ``(N, C, M)``.
    config : StackConfig
    frame_weights : array, shape (N,) or (N, C), optional
        User weights per frame (or frame and channel), multiplied into the quality
        weights.

    Raises
    ------
    ValueError
        ``config.reference_frame`` is not a frame index.
    """
    xp = stats.xp
    if config.reference_frame >= stats.n_frames:
        msg = (f"`reference_frame` is {config.reference_frame} but only {stats.n_frames} frames "
               f"were given; choose an index below {stats.n_frames}")
        raise ValueError(msg)
    gain, offset = normalization(stats, config)
    weights = quality_weights(stats, gain, config)
    if frame_weights is not None:
        fw = xp.astype(frame_weights, xp.float32)
        fw = fw[:, None] if fw.ndim == 1 else fw
        fw = xp.broadcast_to(fw, gain.shape)
        weights = fw if weights is None else weights * fw
    info = {
        "normalize": config.normalize,
        "gains": [_to_list(gain[i, :], xp) for i in range(gain.shape[0])],
        "offsets": [_to_list(offset[i, :], xp) for i in range(offset.shape[0])],
        "weighting": config.weighting,
    }
    if weights is not None:
        info["weights"] = [_to_list(weights[i, :], xp) for i in range(weights.shape[0])]
        info["weight_min"] = float(xp.min(weights))
        info["weight_max"] = float(xp.max(weights))
    identity = bool(xp.all(gain == 1.0) and xp.all(offset == 0.0))
    return FramePlan(gain, offset, weights, info, identity=identity)


def stack_band(band: Array, *, config: StackConfig, plan: FramePlan,
               pixel_weights: Array | None = None, xp: Any, row_start: int = 0,
               full_height: int | None = None, ops: ArrayOps | None = None) -> BandResult:
    """Stack one band of rows.

    Parameters
    ----------
    band : array, shape (h, W, C, N), float32
        Rows of every frame, frames on the last axis; NaN = no data.
    config : StackConfig
    plan : FramePlan
        From :func:`plan_frames` on the same N frames.
    pixel_weights : array, shape (h, W, C, N) or (h, W, 1, N), optional
        Per-pixel weights of these rows (e.g. reprojection footprint × ALPHA).
    row_start, full_height : int
        Where these rows sit in the frame (``full_height`` defaults to h); the radial
        weight map (``config.radial_weight``) is computed from the global row index.
    ops : ArrayOps, optional
        Native fast paths (default: those registered for the band's namespace).

    Returns
    -------
    BandResult
        Arrays of shape ``(h, W, C)`` on the band's device.
    """
    h, w, c, n = (int(v) for v in band.shape)
    if plan.identity:
        x = band
    else:
        x = band * xp.permute_dims(plan.gain, (1, 0)) + xp.permute_dims(plan.offset, (1, 0))
    weights = None
    if plan.weights is not None:
        weights = xp.permute_dims(plan.weights, (1, 0))[None, None, ...]
    if pixel_weights is not None:
        weights = pixel_weights if weights is None else weights * pixel_weights
    if config.radial_weight:
        radial = radial_weight_map(h, w, row_start=row_start, full_height=full_height,
                                   feather_fraction=config.radial_feather_fraction,
                                   shape_power=config.radial_shape_power, floor=config.radial_floor,
                                   xp=xp, device=_device(band))[:, :, None, None]
        weights = radial if weights is None else weights * radial
    p = h * w * c
    x = xp.reshape(x, (p, n))
    if weights is not None:
        weights = xp.reshape(xp.broadcast_to(weights, (h, w, c, n)), (p, n))
    samples = Samples(x, weights, xp=xp, ops=ops)
    rej = reject(samples, config)
    image, weight_sum, coverage = combine(samples, rej, config)
    n_low = xp.astype(rej.n_low, xp.int32)
    n_high = xp.astype(rej.n_high, xp.int32)
    counters = xp.stack([xp.max(rej.iterations) if p else xp.asarray(0, device=_device(x)),
                         xp.sum(samples.n_valid), xp.sum(rej.n_low), xp.sum(rej.n_high)])
    iterations, n_valid, low_total, high_total = (int(v) for v in counters)
    shape = (h, w, c)
    return BandResult(xp.reshape(image, shape), xp.reshape(weight_sum, shape),
                      xp.reshape(coverage, shape), xp.reshape(n_low, shape),
                      xp.reshape(n_high, shape), iterations, n_valid, low_total, high_total)


_RESULT_NAMES = ("image", "weight_sum", "coverage", "rejected_low", "rejected_high")


def assemble(bands: Sequence[BandResult], *, mono: bool, config: StackConfig, plan: FramePlan,
             xp: Any, extra_stats: dict | None = None,
             whole: tuple[Array, ...] | None = None) -> StackResult:
    """Concatenate band results (in row order) into a :class:`StackResult`.

    ``whole``, when given, holds the five result arrays ``(H, W, C)`` that the bands
    were written into (a native band stacker): they are used as they are. Then
    applies the optional post-stack RGB equalisation (``config.rgb_equalize``), whose
    decision goes to ``stats["rgb_equalization"]``.
    """
    def cat(name: str) -> Array:
        if whole is not None:
            out = whole[_RESULT_NAMES.index(name)]
        else:
            out = xp.concat([getattr(b, name) for b in bands], axis=0)
        return out[..., 0] if mono else out

    n_valid = sum(b.n_valid for b in bands)
    n_low = sum(b.n_low for b in bands)
    n_high = sum(b.n_high for b in bands)
    denom = max(n_valid, 1)
    stats = {
        "reject": config.reject,
        "combine": config.combine,
        "kappa_low": config.kappa_low,
        "kappa_high": config.kappa_high,
        "iterations": max((b.iterations for b in bands), default=0),
        "max_iters": config.effective_max_iters(),
        "valid_samples": n_valid,
        "rejected_low_count": n_low,
        "rejected_high_count": n_high,
        "rejected_low_fraction": n_low / denom,
        "rejected_high_fraction": n_high / denom,
        "rejected_pct": 100.0 * (n_low + n_high) / denom,
        "n_bands": len(bands),
    }
    stats.update(plan.stats)
    if extra_stats:
        stats.update(extra_stats)
    image, stats["rgb_equalization"] = poststack_rgb_equalization(cat("image"), config, mono=mono)
    return StackResult(image, cat("weight_sum"), cat("coverage"), cat("rejected_low"),
                       cat("rejected_high"), stats)


def _stack_delegated(frames: Any, weights: Any, delegate: tuple, **kwargs: Any) -> StackResult:
    """Run :func:`stack_frames` in the delegate namespace, on the same memory."""
    ops, to, back = delegate
    frames = [to(f) for f in frames] if isinstance(frames, (list, tuple)) else to(frames)
    if weights is not None and not isinstance(weights, (list, tuple)):
        weights = to(weights)
    result = stack_frames(frames, weights=weights, ops=ops, **kwargs)
    for name in ("image", "weight_sum", "coverage", "rejected_low", "rejected_high"):
        setattr(result, name, back(getattr(result, name)))
    result.stats["ops"] = f"{ops.name} (delegated)"
    return result


class _Serial:
    """A stand-in for an executor that runs ``map`` in the calling thread."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @staticmethod
    def map(fn: Callable[[int], BandResult], items: range) -> Any:
        return map(fn, items)


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


def stack_frames(frames: Array | Sequence[Array], /, *, config: StackConfig | None = None,
                 weights: Array | None = None, band_rows: int | None = None,
                 memory_budget_bytes: int | None = None,
                 progress_callback: ProgressCallback | None = None,
                 ops: ArrayOps | None = None) -> StackResult:
    """Stack in-memory frames on their own backend; see ``zemosaic_xp.stack``.

    Parameters
    ----------
    frames : array (N, H, W[, C]) or sequence of (H, W[, C]) arrays
    config : StackConfig, optional
    weights : array, shape (N,), (N, C), (N, H, W) or (N, H, W, C), optional
    band_rows : int, optional
        Rows per band; default from ``memory_budget_bytes`` (default 256 MiB).
    progress_callback : callable, optional
        Receives ``("STAGE_PROGRESS", "stack", bands_done, total=n_bands)``.
    ops : ArrayOps, optional
        Fast paths and strategy (default: those registered for the frames' namespace
        and device); bands run on ``ops.band_workers`` threads, each at most
        ``ops.band_bytes`` of float32 when that is set. Without per-pixel weights,
        ``ops.band_stacker`` may stack every band natively into the results.

    Returns
    -------
    StackResult, on the device of ``frames``.
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
                                progress_callback=progress_callback)
    frame_weights, pixel_weights = _split_user_weights(weights, stack)
    # The identity normalisation and equal weights read no statistic: one sample each.
    n_stats = config.frame_stats_samples
    if config.normalize == "none" and config.weighting == "none":
        n_stats = 1
    stats = FrameSamples(stack.samples(n_stats, ops=ops), xp=xp)
    plan = plan_frames(stats, config, frame_weights=frame_weights)
    del stats
    t_plan = time.perf_counter() - t0
    workers = max(1, int(ops.band_workers))
    if band_rows is None:
        budget = 256 * 1024**2 if memory_budget_bytes is None else int(memory_budget_bytes)
        # The budget covers every band in flight: one per worker thread.
        band_rows = rows_per_band(stack.n_frames, stack.width, stack.channels, budget // workers,
                                  config, height=stack.height)
        if ops.band_bytes:
            # Cache-sized bands (CPU), and small beside the stack itself: the bands in
            # flight need about memory_factor × their bytes together.
            row_bytes = stack.n_frames * stack.width * stack.channels * 4
            small = (row_bytes * stack.height) // (workers * int(memory_factor(config)))
            target = min(ops.band_bytes, max(_MIN_BAND_BYTES, small))
            band_rows = min(band_rows, max(1, target // row_bytes))
    if isinstance(band_rows, bool) or not isinstance(band_rows, int) or band_rows < 1:
        msg = f"`band_rows` must be a positive integer, got {band_rows!r}"
        raise ValueError(msg)
    n_bands = math.ceil(stack.height / band_rows)

    # A backend may stack whole bands natively (NumPy + numba) straight into the
    # results; it is offered only configurations it implements, and must then match
    # stack_band exactly.
    stacker = ops.band_stacker(config, plan) if pixel_weights is None else None
    whole = None
    if stacker is not None:
        shape = (stack.height, stack.width, stack.channels)
        dev = stack.device
        whole = (xp.empty(shape, dtype=xp.float32, device=dev), xp.empty(shape, dtype=xp.float32, device=dev),
                 *(xp.empty(shape, dtype=xp.int32, device=dev) for _ in range(3)))

    def run(i: int) -> BandResult:
        r0, r1 = i * band_rows, min(stack.height, (i + 1) * band_rows)
        if stacker is not None:
            out = tuple(a[r0:r1, ...] for a in whole)
            return BandResult(*out, *stacker(*stack.band_source(r0, r1), out))
        pw = None
        if pixel_weights is not None:
            pw = pixel_weights.band(r0, r1, ops=ops)
            pw = xp.where(xp.isnan(pw), xp.zeros_like(pw), pw)
        return stack_band(stack.band(r0, r1, ops=ops), config=config, plan=plan, pixel_weights=pw,
                          xp=xp, row_start=r0, full_height=stack.height, ops=ops)

    workers = min(workers, n_bands)
    bands = []
    # Threads, not processes: NumPy releases the GIL in sorts and ufunc loops. map()
    # yields in row order, and a band's memory exists only while a worker runs it.
    with ThreadPoolExecutor(workers) if workers > 1 else _Serial() as pool:
        for i, result in enumerate(pool.map(run, range(n_bands))):
            bands.append(result)
            if progress_callback is not None:
                progress_callback("STAGE_PROGRESS", "stack", i + 1, total=n_bands)
    extra = {
        "band_rows": band_rows,
        "n_frames": stack.n_frames,
        "namespace": getattr(xp, "__name__", str(xp)),
        "ops": ops.name,
        "band_workers": workers,
        "time_plan_sec": t_plan,
        "time_total_sec": time.perf_counter() - t0,
    }
    return assemble(bands, mono=stack.mono, config=config, plan=plan, xp=xp, extra_stats=extra,
                    whole=whole)
