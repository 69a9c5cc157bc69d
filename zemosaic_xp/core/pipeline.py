"""The stack pipeline: validate → normalise → weight → reject → combine, band by band.

Every stack of this package — ``stack()`` of in-memory frames, classic master tiles
streamed from FITS files, grid tiles cell by cell, on any backend — goes through
:func:`stack_bands`, the one band driver:

1. :func:`plan_frames` — frame-global gains, offsets and quality weights from a
   sub-sample of every frame (:class:`~.framestats.FrameSamples`);
2. :func:`stack_bands` — reads each :class:`Block` (rows × columns × frames) from a
   :class:`BandSource`, stacks it with :func:`stack_band` on a :class:`BandDevice`
   and writes the results into whole-image arrays;
3. :func:`summary_stats` — the stack's statistics from the blocks' counters.

Everything is per pixel, so the output does not depend on the band size, the block
layout or the device a block ran on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

from array_api_compat import device as _device

from .combine import combine
from .config import StackConfig
from .framestats import FrameSamples
from .normalize import normalization
from .ops import ArrayOps, ops_for
from .reject import reject
from .rgb import poststack_rgb_equalization
from .samples import Samples
from .weights import quality_weights, radial_weight_map

__all__ = [
    "StackResult",
    "FramePlan",
    "BandResult",
    "Block",
    "BandDevice",
    "BandSource",
    "RESULT_NAMES",
    "plan_frames",
    "stack_band",
    "band_blocks",
    "stack_bands",
    "summary_stats",
    "finish_stack",
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
    stats : dict
        JSON-able record of the plan (methods, gains, offsets, weights), merged into
        ``StackResult.stats``.
    identity : bool
        Every gain is 1 and every offset 0: bands skip the normalisation pass.
    """

    gain: Array
    offset: Array
    weights: Array | None
    stats: dict = field(default_factory=dict)
    identity: bool = False

    def take(self, frames: Sequence[int] | None, xp: Any) -> FramePlan:
        """Restrict the plan to some of its frames.

        Parameters
        ----------
        frames : sequence of int or None
            Positions of the frames to keep, in this plan's frame order; None keeps
            every frame.
        xp : namespace
            The array namespace of this plan's arrays.

        Returns
        -------
        FramePlan
            ``self`` when ``frames`` is None; else a plan whose ``gain``, ``offset``
            and ``weights`` have one row per entry of ``frames``, on the device of
            ``gain``, sharing ``stats`` and ``identity``.
        """
        if frames is None:
            return self
        idx = xp.asarray(list(frames), dtype=xp.int64, device=_device(self.gain))
        weights = None if self.weights is None else xp.take(self.weights, idx, axis=0)
        return FramePlan(xp.take(self.gain, idx, axis=0), xp.take(self.offset, idx, axis=0), weights,
                         self.stats, identity=self.identity)


@dataclass
class BandResult:
    """Outputs of one band (as in :class:`StackResult`), plus its counters.

    Attributes
    ----------
    image, weight_sum : array, shape (h, W, C), float32
        Combined value (NaN where no sample survived) and Σ weights of the survivors.
    coverage, rejected_low, rejected_high : array, shape (h, W, C), integer
        Survivors, and samples rejected below / above, per pixel.
    iterations : int
        Most rejection iterations any pixel of the band ran.
    n_valid, n_low, n_high : int
        Valid samples, and samples rejected low / high, summed over the band.
    """

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
    """Estimate the peak working memory of one band, in multiples of its float32 bytes.

    Parameters
    ----------
    config : StackConfig
        Its ``reject`` sets the factor (sorted copies, masks, rank arrays and float64
        temporaries differ between algorithms).

    Returns
    -------
    float
        Bytes of working memory per byte of the band's ``N·h·W·C`` float32 samples.
    """
    return _MEMORY_FACTOR.get(config.reject, _DEFAULT_MEMORY_FACTOR)


def rows_per_band(n_frames: int, width: int, channels: int, budget_bytes: int,
                  config: StackConfig, height: int | None = None) -> int:
    """Choose the rows per band so that one band's working memory fits ``budget_bytes``.

    Parameters
    ----------
    n_frames, width, channels : int
        Frames in the stack, and the width and channel count of each frame.
    budget_bytes : int
        Working memory one band may use, in bytes.
    config : StackConfig
        Its rejection sets the working memory per sample (:func:`memory_factor`).
    height : int, optional
        Frame height, the most rows a band can have.

    Returns
    -------
    int
        At least 1, even when one row alone is over budget; at most ``height`` when
        given.
    """
    row_bytes = max(1, n_frames * width * channels * 4) * memory_factor(config)
    rows = max(1, int(budget_bytes // row_bytes))
    return min(rows, height) if height is not None else rows


def _to_list(x: Array, xp: Any) -> list:
    return [float(v) for v in xp.reshape(xp.astype(x, xp.float64), (-1,))]


def plan_frames(stats: FrameSamples, config: StackConfig, *,
                frame_weights: Array | None = None) -> FramePlan:
    """Compute the gains, offsets and weights of every frame from its sub-sample.

    Parameters
    ----------
    stats : FrameSamples
        Sub-samples of all N frames, ``(N, C, M)``.
    config : StackConfig
        Its ``normalize``, ``weighting`` and ``reference_frame``.
    frame_weights : array, shape (N,) or (N, C), float, optional
        User weights per frame (or frame and channel), multiplied into the quality
        weights.

    Returns
    -------
    FramePlan
        ``(N, C)`` float32 gains, offsets and weights (None when every weight is
        equal) in the namespace and on the device of ``stats``, and their JSON-able
        record in ``stats``.

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
        Rejection, combine and radial-weight settings.
    plan : FramePlan
        From :func:`plan_frames` on the same N frames.
    pixel_weights : array, shape (h, W, C, N) or (h, W, 1, N), optional
        Per-pixel weights of these rows (e.g. reprojection footprint × ALPHA).
    xp : namespace
        The array namespace of ``band``, ``plan`` and ``pixel_weights``.
    row_start, full_height : int
        Where these rows sit in the frame (``full_height`` defaults to h); the radial
        weight map (``config.radial_weight``) is computed from the global row index.
    ops : ArrayOps, optional
        Native fast paths (default: those registered for the band's namespace).

    Returns
    -------
    BandResult
        Arrays of shape ``(h, W, C)`` on the band's device (image NaN where no
        sample survived), and the band's counters as Python ints.
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




#: Names of the five per-pixel results, in :class:`StackResult` / :class:`BandResult` order.
RESULT_NAMES = ("image", "weight_sum", "coverage", "rejected_low", "rejected_high")


def summary_stats(counters: Sequence[tuple[int, int, int, int]], *, config: StackConfig,
                  plan: FramePlan) -> dict[str, Any]:
    """Summarise a stack from its blocks' counters.

    Parameters
    ----------
    counters : sequence of (int, int, int, int)
        ``(iterations, n_valid, n_low, n_high)`` of every block.
    config : StackConfig
        The stack's configuration; its methods and κ are recorded.
    plan : FramePlan
        Its ``stats`` (gains, offsets, weights) are merged in.

    Returns
    -------
    dict
        The JSON-able ``StackResult.stats``: methods, κ, iterations used (the most
        of any block) and allowed, valid and rejected sample counts and fractions
        (``rejected_pct``), plus the plan's own stats. Fractions are 0 when no
        sample was valid.
    """
    n_valid = sum(c[1] for c in counters)
    n_low = sum(c[2] for c in counters)
    n_high = sum(c[3] for c in counters)
    denom = max(n_valid, 1)
    stats = {
        "reject": config.reject,
        "combine": config.combine,
        "kappa_low": config.kappa_low,
        "kappa_high": config.kappa_high,
        "iterations": max((c[0] for c in counters), default=0),
        "max_iters": config.effective_max_iters(),
        "valid_samples": n_valid,
        "rejected_low_count": n_low,
        "rejected_high_count": n_high,
        "rejected_low_fraction": n_low / denom,
        "rejected_high_fraction": n_high / denom,
        "rejected_pct": 100.0 * (n_low + n_high) / denom,
    }
    stats.update(plan.stats)
    return stats


@dataclass(frozen=True)
class Block:
    """One unit of work of :func:`stack_bands`: rows ``[r0, r1)`` × columns ``[c0, c1)``.

    Attributes
    ----------
    r0, r1 : int
        Rows ``[r0, r1)`` of the output image.
    c0 : int
        First column (default 0).
    c1 : int or None
        End of the columns, exclusive; None = the image width.
    frames : tuple of int or None
        Positions (in the plan) of the frames that reach the block; None = every
        frame, ``()`` = none (the block is written as "no data").
    """

    r0: int
    r1: int
    c0: int = 0
    c1: int | None = None
    frames: tuple[int, ...] | None = None


def band_blocks(height: int, band_rows: int) -> list[Block]:
    """Cut ``height`` rows into full-width bands of ``band_rows`` rows, every frame.

    Parameters
    ----------
    height : int
        Rows of the image.
    band_rows : int
        Rows per band, >= 1; the last band may be shorter.

    Returns
    -------
    list of Block
        ``ceil(height / band_rows)`` blocks, top to bottom.
    """
    return [Block(r0, min(height, r0 + band_rows)) for r0 in range(0, height, band_rows)]


class BandSource(Protocol):
    """Where :func:`stack_bands` reads blocks from (in-memory frames, FITS files, a tile's patches).

    Attributes
    ----------
    height, width, channels : int
        The output shape ``(H, W, C)``.
    """

    height: int
    width: int
    channels: int

    def read(self, block: Block) -> tuple[Array, Array | None]:
        """Read the samples of one block.

        Parameters
        ----------
        block : Block
            The rows, columns and frames to read.

        Returns
        -------
        values : array, shape (h, w, C, n), float32
            Samples with the frames last (``n`` = the block's frames, ``h`` and ``w``
            its rows and columns); NaN = no data. In the source's namespace:
            :meth:`BandDevice.upload` moves it.
        weights : array, shape (h, w, C, n) or (h, w, 1, n), float32, or None
            Per-pixel weights of the samples; None = all equal.
        """


class BandDevice:
    """Where blocks are stacked: a namespace and its ops, and the transfers in and out.

    This base class computes in ``xp`` on arrays that are already there (in-memory
    stacks). Adapters that read on the host and compute on a GPU subclass it
    (:class:`zemosaic_xp.gpu.policy.DeviceSession`) and override :meth:`upload` and
    :meth:`download`.

    Parameters
    ----------
    xp : namespace
        Array-API namespace of the computation.
    ops : ArrayOps, optional
        Native fast paths (default: those of ``xp`` on ``device``).
    device : object, optional
        Device of the computation.
    """

    def __init__(self, xp: Any, *, ops: ArrayOps | None = None, device: Any = None) -> None:
        self.xp = xp
        self.device = device
        self._ops = ops
        self._plans: dict[tuple[int, ...] | None, FramePlan] = {}

    @property
    def ops(self) -> ArrayOps:
        """Fast paths used on this device, looked up on first use.

        Returns
        -------
        ArrayOps
            The ``ops`` given to the constructor, else :func:`~.ops.ops_for` of
            ``xp`` and ``device``.
        """
        if self._ops is None:
            self._ops = ops_for(self.xp, self.device)
        return self._ops

    def upload(self, array: Array | None) -> Array | None:
        """Bring a source array (or None) to this device; identity here.

        Parameters
        ----------
        array : array or None
            Samples, weights or plan arrays, where the source or the plan holds them.

        Returns
        -------
        array or None
            ``array`` itself; a subclass returns it in ``xp`` on ``device``. None
            stays None.
        """
        return array

    def download(self, array: Array) -> Array:
        """Bring a result array to where the outputs live; identity here.

        Parameters
        ----------
        array : array
            One array of a block's :class:`BandResult`, on this device.

        Returns
        -------
        array
            ``array`` itself; a subclass returns it in the outputs' namespace (the
            host, for a GPU session).
        """
        return array

    def plan(self, plan: FramePlan, frames: tuple[int, ...] | None, source_xp: Any) -> FramePlan:
        """Restrict ``plan`` to ``frames`` and bring it to this device.

        Parameters
        ----------
        plan : FramePlan
            Plan of all the source's frames, in ``source_xp``.
        frames : tuple of int or None
            Positions of a block's frames in ``plan`` (``Block.frames``); None = all.
        source_xp : namespace
            The array namespace of ``plan``.

        Returns
        -------
        FramePlan
            The restricted plan, its arrays uploaded to this device. Cached by
            ``frames`` alone (one device serves one plan): later calls with the same
            frames return the same object.
        """
        hit = self._plans.get(frames)
        if hit is None:
            sub = plan.take(frames, source_xp)
            weights = None if sub.weights is None else self.upload(sub.weights)
            hit = FramePlan(self.upload(sub.gain), self.upload(sub.offset), weights, sub.stats,
                            identity=sub.identity)
            self._plans[frames] = hit
        return hit


BlockWork = Callable[[BandDevice], BandResult]


def _run_here(device: BandDevice) -> Callable[[BlockWork], BandResult]:
    def run(work: BlockWork) -> BandResult:
        return work(device)
    return run


def stack_bands(source: BandSource, blocks: Iterable[Block], *, config: StackConfig, plan: FramePlan,
                device: BandDevice, out_xp: Any = None, out_device: Any = None,
                outputs: Sequence[str] = RESULT_NAMES, run_block: Callable[[BlockWork], BandResult] | None = None,
                native: Callable[[Block, tuple[Array, ...]], tuple[int, int, int, int]] | None = None,
                workers: int = 1, total: int | None = None,
                progress_callback: ProgressCallback | None = None) -> tuple[dict[str, Array], dict[str, Any]]:
    """Stack every block of ``source`` into whole-image results (the one band driver).

    Parameters
    ----------
    source : BandSource
        Output shape ``(H, W, C)`` and the blocks' samples.
    blocks : iterable of Block
        Disjoint blocks covering the image, consumed lazily (a caller may size the
        next block from what happened to the previous ones).
    config : StackConfig
        Methods and parameters of the stack.
    plan : FramePlan
        Plan of all the source's frames, in the source's namespace.
    device : BandDevice
        Where blocks are stacked (and how their arrays travel).
    out_xp : namespace, optional
        Namespace of the outputs (default: ``device.xp``).
    out_device : object, optional
        Device of the outputs (default: ``device.device`` when ``out_xp`` is
        ``device.xp``, else the namespace's default device).
    outputs : sequence of str
        Which of :data:`RESULT_NAMES` to keep (others are neither downloaded nor stored).
    run_block : callable, optional
        ``run_block(work)`` runs ``work(device) -> BandResult`` (outputs already in the
        output namespace) for one block; a GPU policy passes its own to choose the
        device per block and fall back on failure. Default: ``work(device)``.
    native : callable, optional
        ``native(block, views)`` stacks a block natively straight into ``views`` (the
        block's slices of the five outputs, all kept) and returns its counters; must
        equal :func:`stack_band` (``ArrayOps.band_stacker``).
    workers : int
        Blocks stacked concurrently (threads; NumPy releases the GIL in its loops).
    total : int, optional
        Number of blocks, for ``STAGE_PROGRESS`` (default ``len(blocks)`` if it has one).
    progress_callback : callable, optional
        Receives ``("STAGE_PROGRESS", "stack", blocks_done, total=total)``.

    Returns
    -------
    outputs : dict of str to array, each ``(H, W, C)``
        Image and weight_sum float32 (image NaN, weight_sum 0 where no sample
        survived), coverage, rejected_low and rejected_high int32; in ``out_xp`` on
        ``out_device``. With ``native``, all five.
    stats : dict
        :func:`summary_stats` plus ``n_bands`` (distinct row ranges) and
        ``band_rows`` (the tallest block).
    """
    xp = device.xp
    out_xp = xp if out_xp is None else out_xp
    out_device = device.device if out_xp is xp and out_device is None else out_device
    if native is not None:
        outputs = RESULT_NAMES
    if total is None and hasattr(blocks, "__len__"):
        total = len(blocks)  # type: ignore[arg-type]
    shape = (source.height, source.width, source.channels)
    out = {name: out_xp.empty(shape, dtype=out_xp.float32 if i < 2 else out_xp.int32, device=out_device)
           for i, name in enumerate(RESULT_NAMES) if name in outputs}
    runner = _run_here(device) if run_block is None else run_block

    def _work_for(block: Block) -> BlockWork:
        def _work(dev: BandDevice) -> BandResult:
            values, weights = source.read(block)
            res = stack_band(dev.upload(values), config=config, plan=dev.plan(plan, block.frames, xp), xp=dev.xp,
                             pixel_weights=dev.upload(weights), row_start=block.r0,
                             full_height=source.height, ops=dev.ops)
            arrays = [dev.download(getattr(res, n)) if n in out else None for n in RESULT_NAMES]
            return BandResult(*arrays, res.iterations, res.n_valid, res.n_low, res.n_high)
        return _work

    def _run(block: Block) -> tuple[int, int, int, int]:
        c1 = source.width if block.c1 is None else block.c1
        views = {n: a[block.r0:block.r1, block.c0:c1, ...] for n, a in out.items()}
        if block.frames == ():
            for n, view in views.items():
                view[...] = float("nan") if n == "image" else 0
            return 0, 0, 0, 0
        if native is not None:
            return native(block, tuple(views[n] for n in RESULT_NAMES))
        res = runner(_work_for(block))
        for n, view in views.items():
            value = getattr(res, n)
            # Counts may arrive as the default integer (a sum of int32 is int64): store int32.
            view[...] = value if value.dtype == view.dtype else out_xp.astype(value, view.dtype)
        return res.iterations, res.n_valid, res.n_low, res.n_high

    counters, rows, tallest = [], set(), 0

    def _record(block: Block, counts: tuple[int, int, int, int]) -> None:
        nonlocal tallest
        counters.append(counts)
        rows.add(block.r0)
        tallest = max(tallest, block.r1 - block.r0)
        if progress_callback is not None:
            progress_callback("STAGE_PROGRESS", "stack", len(counters), total=total or len(counters))

    if workers > 1:
        blocks = list(blocks)
        # Threads, not processes: NumPy releases the GIL in sorts and ufunc loops. map()
        # yields in order, and a block's memory exists only while a worker runs it.
        with ThreadPoolExecutor(min(workers, max(1, len(blocks)))) as pool:
            for block, counts in zip(blocks, pool.map(_run, blocks)):
                _record(block, counts)
    else:
        for block in blocks:  # lazily: the next block may depend on this one
            _record(block, _run(block))
    stats = summary_stats(counters, config=config, plan=plan)
    stats.update({"n_bands": len(rows), "band_rows": tallest})
    return out, stats


def finish_stack(outputs: dict[str, Array], stats: dict[str, Any], *, config: StackConfig,
                 mono: bool) -> StackResult:
    """Package :func:`stack_bands` outputs as a :class:`StackResult`.

    Applies the optional post-stack RGB equalisation (``config.rgb_equalize``) and
    drops the channel axis of mono stacks.

    Parameters
    ----------
    outputs : dict of str to array
        The ``(H, W, C)`` arrays of :func:`stack_bands`, by name.
    stats : dict
        Its statistics; ``stats["rgb_equalization"]`` receives the equalisation's
        decision and gains (the dict is updated in place).
    config : StackConfig
        Its ``rgb_equalize*`` fields.
    mono : bool
        The frames had no channel axis (C is 1): results become ``(H, W)``.

    Returns
    -------
    StackResult
        The arrays in the namespace and on the device of ``outputs``; None for
        outputs that were not kept.
    """
    def _get(name: str) -> Array | None:
        out = outputs.get(name)
        return out[..., 0] if (out is not None and mono) else out

    image, stats["rgb_equalization"] = poststack_rgb_equalization(_get("image"), config, mono=mono)
    return StackResult(image, _get("weight_sum"), _get("coverage"), _get("rejected_low"), _get("rejected_high"),
                       stats)
