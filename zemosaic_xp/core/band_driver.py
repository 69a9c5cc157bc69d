"""THE band driver: every stack of the package streams its blocks through :func:`stack_bands`.

A caller describes where samples come from (a :class:`BandSource`: in-memory frames,
FITS files, a grid tile's patches), how the image is cut (:class:`Block` s: full-width
row bands, or grid cells with the frames that reach them) and where blocks are stacked
(a :class:`BandDevice`: the frames' own namespace, or a GPU/CPU session of the run's
GPU policy). The driver reads each block, stacks it with
:func:`~.pipeline.stack_band`, writes the six per-pixel results into whole-image
arrays and sums the blocks' counters (:func:`~.pipeline.summary_stats`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence

from .config import StackConfig
from .ops import ArrayOps, ops_for
from .pipeline import FLOAT_RESULTS, RESULT_NAMES, BandResult, FramePlan, stack_band, summary_stats

__all__ = ["Block", "BandSource", "BandDevice", "band_blocks", "stack_bands"]

Array = Any
ProgressCallback = Callable[..., Any]


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
    (:class:`zemosaic_xp.gpu.session.DeviceSession`) and override :meth:`upload` and
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
        block's slices of the six outputs, C-contiguous; scratch rows for the ones not
        kept, and an empty ``uncertainty`` when it is not kept: the stacker skips it)
        and returns its counters; must equal :func:`stack_band`
        (``ArrayOps.band_stacker``).
    workers : int
        Blocks stacked concurrently (threads; NumPy releases the GIL in its loops).
    total : int, optional
        Number of blocks, for ``STAGE_PROGRESS`` (default ``len(blocks)`` if it has one).
    progress_callback : callable, optional
        Receives ``("STAGE_PROGRESS", "stack", blocks_done, total=total)``.

    Returns
    -------
    outputs : dict of str to array, each ``(H, W, C)``
        Image, weight_sum and uncertainty float32 (image and uncertainty NaN,
        weight_sum 0 where no sample survived), coverage, rejected_low and
        rejected_high int32; in ``out_xp`` on ``out_device``. Only those named in
        ``outputs``.
    stats : dict
        :func:`summary_stats` plus ``n_bands`` (distinct row ranges) and
        ``band_rows`` (the tallest block).
    """
    xp = device.xp
    out_xp = xp if out_xp is None else out_xp
    out_device = device.device if out_xp is xp and out_device is None else out_device
    if total is None and hasattr(blocks, "__len__"):
        total = len(blocks)  # type: ignore[arg-type]
    shape = (source.height, source.width, source.channels)
    def _dtype(name: str) -> Any:
        return out_xp.float32 if name in FLOAT_RESULTS else out_xp.int32

    out = {name: out_xp.empty(shape, dtype=_dtype(name), device=out_device)
           for name in RESULT_NAMES if name in outputs}
    runner = _run_here(device) if run_block is None else run_block

    def _work_for(block: Block) -> BlockWork:
        def _work(dev: BandDevice) -> BandResult:
            values, weights = source.read(block)
            res = stack_band(dev.upload(values), config=config, plan=dev.plan(plan, block.frames, xp), xp=dev.xp,
                             pixel_weights=dev.upload(weights), row_start=block.r0,
                             full_height=source.height, col_start=block.c0, full_width=source.width,
                             ops=dev.ops, uncertainty="uncertainty" in out)
            arrays = {n: dev.download(getattr(res, n)) if n in out else None for n in RESULT_NAMES}
            return BandResult(**arrays, iterations=res.iterations, n_valid=res.n_valid, n_low=res.n_low,
                              n_high=res.n_high)
        return _work

    def _run(block: Block) -> tuple[int, int, int, int]:
        c1 = source.width if block.c1 is None else block.c1
        views = {n: a[block.r0:block.r1, block.c0:c1, ...] for n, a in out.items()}
        if block.frames == ():
            for n, view in views.items():
                view[...] = float("nan") if n in ("image", "uncertainty") else 0
            return 0, 0, 0, 0
        if native is not None:
            # Results that are not kept still need rows to be written into: scratch.
            scratch = {n: out_xp.empty((block.r1 - block.r0 if n != "uncertainty" else 0, c1 - block.c0,
                                        source.channels), dtype=_dtype(n), device=out_device)
                       for n in RESULT_NAMES if n not in views}
            return native(block, tuple(views[n] if n in views else scratch[n] for n in RESULT_NAMES))
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
