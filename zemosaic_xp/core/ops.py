"""Optional native fast paths for the core ("ops"), looked up by namespace and device.

The core is written once against the array API. A few primitives are much faster
through a library's own calls — NumPy's in-place SIMD sort, ``einsum`` row sums on
the contiguous axis, cache-sized bands processed by a thread pool — and a GPU wants
a different *strategy* (no host synchronisation, no data-dependent shapes) rather
than different maths. This module is the hook between the two worlds:

- :class:`ArrayOps` is the portable reference: every method is plain array-API code
  and every flag has its safe default. Core functions take an ``ops`` object and
  call its methods; they never test which library they run on.
- :func:`ops_for` asks the backends package for native ops explicitly, at the call:
  it imports :mod:`zemosaic_xp.backends.native` (the only place that knows NumPy,
  CuPy and torch exist) when it first needs ops for a namespace, and falls back to
  the portable :class:`ArrayOps` when that has none. Nothing registers itself, so
  the core gets its fast paths whatever was imported before.

Some members are whole steps rather than primitives — a κ-σ or WSC clip of sorted
rows (:meth:`ArrayOps.kappa_sigma_fit`, :meth:`~ArrayOps.wsc_pixinsight_fit`,
:meth:`~ArrayOps.wsc_fit`, :meth:`~ArrayOps.wsc_weighted_fit`) or a whole band
(:meth:`ArrayOps.band_stacker`):
their portable versions return None, which means "run the core's own code", so a
backend implements only what it can do faster (NumPy with numba).

Every native method must return what the portable one returns on the same data (tests
in ``tests/backends/test_ops_parity.py`` and ``tests/backends/test_numba_kernels.py``
check each), so the portable path stays the reference. :func:`portable_only` disables
every native fast path, for those tests and for debugging.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from typing import Any, Callable, Iterator

from array_api_compat import device as _device

__all__ = ["ArrayOps", "ops_for", "portable_only"]

Array = Any

#: The module whose ``native_ops(xp, device)`` chooses native ops (imported lazily).
_NATIVE_OPS_MODULE = "zemosaic_xp.backends.native"


class ArrayOps:
    """Portable primitives and strategy flags of the stack core (the reference).

    Parameters
    ----------
    xp : module
        The array-API namespace of the arrays these ops receive.

    Attributes
    ----------
    name : str
        Shown in ``StackResult.stats["ops"]``.
    compact : bool
        The core may gather the still-active pixels of an iterative rejection into a
        smaller array (boolean masks, ``nonzero``). Cheap on CPUs; on GPUs it costs a
        host synchronisation per iteration, so GPU ops leave it False.
    check_every : int
        Iterations between convergence checks (``bool(any(active))`` syncs a GPU with
        the host). 1 = check after every iteration; 0 = never, run ``max_iters``.
        Per-pixel convergence makes the result independent of this choice.
    count_search : bool
        Without compaction, find a threshold's place in sorted rows by counting the
        samples below it over whole rows (a compare and a count of ``(R, N)``) rather
        than by a binary search (``log2 N`` rounds of a dozen small operations): for
        GPUs, whose time goes to kernel launches. Same results.
    band_workers : int
        Bands stacked concurrently by :func:`~zemosaic_xp.core.in_memory.stack_frames`
        (threads; useful when the library releases the GIL).
    band_bytes : int or None
        Preferred float32 bytes of one band (cache-sized on CPUs); None = as large as
        the memory budget allows.
    chunk_samples : int
        Samples per row chunk of the uncertainty map's passes
        (:func:`~zemosaic_xp.core.uncertainty.standard_error`): cache-sized on CPUs; 0 =
        the whole band at once (GPUs: few large launches). The map does not depend on it.
    """

    name = "portable"
    compact = False
    check_every = 1
    count_search = False
    band_workers = 1
    band_bytes: int | None = None
    chunk_samples = 1 << 18

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def host_delegate(self) -> tuple[ArrayOps, Callable[[Array], Array], Callable[[Array], Array]] | None:
        """Another namespace that shares this one's memory and stacks faster, or None.

        Returns
        -------
        tuple of (ArrayOps, callable, callable) or None
            ``(ops, to, back)``: the other namespace's ops, and zero-copy conversions of
            an array into it and back. ``stack_frames`` then runs a whole stack there
            (torch CPU tensors are stacked by NumPy's kernels on the same buffers) and
            names the ops ``"<ops.name> (delegated)"`` in ``stats["ops"]``.
            ``stack_band`` never delegates, so the portable path stays reachable.
        """
        return None

    # ------------------------------------------------------------------ layout
    def band_copy(self, view: Array) -> Array:
        """Copy ``view`` (typically a transposed band) into C-contiguous float32.

        Parameters
        ----------
        view : array, any shape and strides, real
            The values to copy.

        Returns
        -------
        array, same shape, float32
            A new C-ordered array on the device of ``view``.
        """
        xp = self.xp
        shape = tuple(int(v) for v in view.shape)
        # reshape of a non-contiguous view materialises it in C order on every library.
        flat = xp.reshape(view, (-1,))
        if flat.dtype != xp.float32:
            flat = xp.astype(flat, xp.float32)
        return xp.reshape(flat, shape)

    def nan_nonfinite(self, x: Array) -> Array:
        """Replace ±inf by NaN ("no data").

        Parameters
        ----------
        x : array, float32
            Samples; native ops may write into its buffer.

        Returns
        -------
        array, same shape and dtype
            ``x`` with every ±inf as NaN (``x`` itself or a new array).
        """
        xp = self.xp
        nan = xp.asarray(xp.nan, dtype=x.dtype, device=_device(x))
        return xp.where(xp.isfinite(x), x, nan)

    # ------------------------------------------------------------------ sorting
    def sort_valid(self, x: Array) -> tuple[Array, Array]:
        """Sort rows ascending with NaN last as ``+inf``; count the valid samples.

        Parameters
        ----------
        x : array, shape (..., N), float
            NaN = no data (never ±inf: the core turns those into NaN first).

        Returns
        -------
        sorted : array, shape (..., N), same dtype
            Each row ascending, its invalid samples last as ``+inf``.
        n_valid : array, shape (..., 1), int64
            Valid (non-NaN) samples per row.
        """
        xp = self.xp
        nan = xp.isnan(x)
        inf = xp.asarray(xp.inf, dtype=x.dtype, device=_device(x))
        s = xp.sort(xp.where(nan, inf, x), axis=-1, stable=False)
        n_valid = xp.sum(xp.astype(~nan, xp.int64), axis=-1, keepdims=True)
        return s, n_valid

    def median_valid(self, x: Array) -> Array:
        """Median of each row's valid samples (the mean of the two middle ones for an even count).

        Parameters
        ----------
        x : array, shape (R, M), float
            Rows; NaN = no data.

        Returns
        -------
        array, shape (R,), dtype of ``x``
            :func:`~zemosaic_xp.core.nanstats.median_sorted` of the sorted rows: NaN,
            without a warning, for a row without valid samples.

        Notes
        -----
        Portable: :meth:`sort_valid`, then the middle of each row. A backend may
        select the two middle samples instead of sorting (same values).
        """
        from .nanstats import median_sorted

        s, n_valid = self.sort_valid(x)
        return median_sorted(s, n_valid, xp=self.xp)

    def paired_rounds(self, x: Array, r: Array, pair: Array, light: tuple, g: Array, delta: Array, *,
                      origin: bool, rounds: int) -> tuple[Array, Array, Array, Array] | None:
        """The rounds of the paired fit (:func:`~zemosaic_xp.core.pairfit._rounds`), fused; None here.

        Parameters
        ----------
        x, r : array, shape (R, M), float32
            The pairs fitted (0 where excluded).
        pair : array, shape (R, M), bool
            The pairs that may enter the fit.
        light : tuple of array
            ``(x, r, mid_x, mid_r)`` of the raw samples (the signal of each pair).
        g : array, shape (R, 1), float64
            The start gains.
        delta : array, shape (R, 1), float64
            Error-variance ratios.
        origin : bool
            The pairs are differences of consecutive samples (fit through 0).
        rounds : int
            Rounds to run.

        Returns
        -------
        tuple or None
            ``(gain, keep, kept, s0)`` as the core computes them, or None: the core
            runs its portable rounds (this base class, and backends without a fused path).
        """
        return None

    def mad(self, s: Array, n_valid: Array, centre: Array) -> Array:
        """Median of ``|s − centre|`` over each sorted row's valid samples.

        Parameters
        ----------
        s : array, shape (R, N), float32
            Rows sorted ascending, invalid samples last as ``+inf``.
        n_valid : array, shape (R,), int64
            Valid samples per row.
        centre : array, shape (R,), float32
            The centre of each row (its median, usually).

        Returns
        -------
        array, shape (R,), float32
            NaN for a row without valid samples.

        Notes
        -----
        Portable: a selection in the two sorted runs of deviations, no second sort
        (:func:`~zemosaic_xp.core.sorted_rows.mad_sorted`).
        """
        from .sorted_rows import mad_sorted

        return mad_sorted(s, n_valid, centre, xp=self.xp)

    # ------------------------------------------------------------------ reductions
    def centred_sums(self, s: Array, centre: Array, lo: Array, hi: Array, *,
                     whole: bool = False) -> tuple[Array, Array]:
        """Σd and Σd² over ``s[p, lo[p]:hi[p]]`` with ``d = f64(s) − f64(centre)``.

        Parameters
        ----------
        s : array, shape (R, N), float32
            Rows, any values outside the range (``+inf`` padding included).
        centre : array, shape (R,), float32
            The value each row's differences are taken from.
        lo, hi : array, shape (R,), int64
            The range ``[lo, hi)`` of each row to sum.
        whole : bool
            A promise that ``[lo, hi)`` is each row's whole valid range ``[0, n_valid)``
            of a :meth:`sort_valid` output, so only ``+inf`` padding lies outside it.

        Returns
        -------
        s1 : array, shape (R,), float64
            Σd, 0 for an empty range.
        s2 : array, shape (R,), float64
            Σd², 0 for an empty range.

        Notes
        -----
        The differences are exact in float64 (float32 inputs), and centring on a
        value inside the range keeps Σd² − (Σd)²/n free of cancellation.
        """
        xp = self.xp
        f64 = xp.float64
        j = xp.arange(s.shape[-1], device=_device(s))[None, :]
        inside = (j >= lo[:, None]) & (j < hi[:, None])
        d = xp.astype(s, f64) - xp.astype(centre, f64)[:, None]
        d = xp.where(inside, d, xp.zeros((), dtype=f64, device=_device(s)))
        return xp.sum(d, axis=-1), xp.sum(d * d, axis=-1)


    def prefix_sums(self, d: Array) -> Array:
        """Inclusive prefix sums along the last axis (``cumulative_sum``).

        Parameters
        ----------
        d : array, shape (R, N)
            Values to accumulate.

        Returns
        -------
        array, shape (R, N), same dtype
            ``out[:, j] = d[:, 0] + … + d[:, j]``.
        """
        return self.xp.cumulative_sum(d, axis=-1)

    # ------------------------------------------------------------------ whole bands
    def block_stacker(self, config: Any, plan: Any) -> Callable[..., tuple[int, int, int, int]] | None:
        """A native stacker of samples-last blocks (grid cells) with per-pixel weights, or None.

        Parameters
        ----------
        config : StackConfig
            The stack's methods and parameters (no radial weight: a grid has put it in
            the pixel weights).
        plan : FramePlan
            The plan of the whole source (normalisation, frame weights).

        Returns
        -------
        callable or None
            ``stacker(values, weights, plan, out)`` with a :class:`~.band_driver.BandSource`
            block's ``values`` (h, w, C, n) and ``weights`` (h, w, C or 1, n, or None),
            the plan of its n frames and ``out`` the six C-contiguous ``(h, w, C)`` results
            (an empty uncertainty: skip it), returning the block's counters; it must write
            what :func:`~.pipeline.stack_band` returns. None here: the core's pipeline.
        """
        return None

    def band_stacker(self, config: Any, plan: Any, *, pixel_weights: bool = False,
                     stored: bool = False) -> Callable[..., tuple[int, int, int, int]] | None:
        """A native whole-band stacker for this configuration, or None (the core's pipeline).

        Parameters
        ----------
        config : StackConfig
            The stack's methods and parameters.
        plan : FramePlan
            Its normalisation gains and offsets and weights.
        pixel_weights : bool
            Whether the bands come with per-pixel weights (the stacker is then called
            with ``pixel_weights=``).
        stored : bool
            Ask for a stacker that also reads 16-bit FITS samples as stored: ``frames``
            of uint16 holding the file's big-endian int16 bytes, with the keyword
            ``scaling`` (shape (N, 2), float32: each frame's BSCALE, BZERO). None when
            the backend cannot (the caller then converts the frames itself).

        Returns
        -------
        callable or None
            The stacker, or None: the core runs its own pipeline.

        Notes
        -----
        Asked once per stack by :func:`~zemosaic_xp.core.in_memory.stack_frames` (and
        the classic master tiles). The stacker is called as
        ``stacker(frames, r0, r1, out)`` for every band, concurrently from the band
        threads:

        - ``frames`` : array, shape (N, ·, W, C), frames first, as stored (any dtype
          and strides; non-finite values mean "no data"), and ``r0, r1`` the band's
          rows in it (see ``FrameStack.band_source``);
        - ``out`` : the band's rows of the six result arrays — image and weight_sum
          (float32), coverage, rejected_low and rejected_high (int32), uncertainty
          (float32) — each shape (r1 − r0, W, C): the stacker writes them (an
          uncertainty with no rows is not asked for: skip it);
        - returns ``(iterations, n_valid, n_low, n_high)`` of the band, as ints;
        - keywords ``row_start`` (the frame row of the band's first row, default ``r0``)
          and ``full_height`` (the frame height, default the rows of ``frames``) place
          the band for the radial weights; ``pixel_weights`` (shape (N, r1 − r0, W, C)
          or (N, r1 − r0, W, 1)) are the band's per-pixel weights.

        It must write what :func:`~zemosaic_xp.core.pipeline.stack_band` returns for the
        same rows (same coverage and rejection maps, images equal to float32
        rounding), and may not decline a band once offered.
        """
        return None

    # ------------------------------------------------------------------ whole rejections
    def kappa_sigma_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                        max_iters: int, ddof: int, min_survivors: int) -> tuple[Array, ...] | None:
        """A native median-centred κ-σ clip of sorted rows, or None to run the portable one.

        The portable reference is :func:`~zemosaic_xp.core.reject.kappa_sigma.kappa_sigma_fit`
        itself (this default returns None); a native version must give identical
        ranges, iteration counts and centres, and the same kept sums up to float64
        rounding.

        Parameters
        ----------
        s : array, shape (R, N), float32
            Rows sorted ascending, invalid samples last as ``+inf`` (:meth:`sort_valid`).
        n_valid : array, shape (R,), int64
            Valid samples per row.
        kappa_low, kappa_high : float
            Rejection thresholds below and above the centre, in σ.
        max_iters, ddof, min_survivors : int
            As :func:`~zemosaic_xp.core.reject.kappa_sigma.kappa_sigma_fit`.

        Returns
        -------
        tuple of arrays or None
            ``(lo, hi, iterations, centre, kept_sum)``, or None to run the portable code.
            The fields of :class:`~zemosaic_xp.core.reject._common.RangeFit`, each shape
            ``(R,)``: int64 ``[lo, hi)`` and iterations, float32 median (0 for rows
            without valid samples), float64 ``Σ (x − centre)`` over the kept range.
        """
        return None

    def wsc_pixinsight_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float,
                           kappa_high: float, max_iters: int,
                           min_survivors: int) -> tuple[Array, ...] | None:
        """A native PixInsight/Siril winsorised sigma clip of sorted rows, or None (portable).

        Parameters
        ----------
        s, n_valid : array, shape (R, N) and (R,)
            Sorted rows and valid counts, as :meth:`kappa_sigma_fit`.
        kappa_low, kappa_high : float
            Rejection thresholds, in σ.
        max_iters, min_survivors : int
            As :func:`~zemosaic_xp.core.reject.winsorized_sigma_clip.wsc_pixinsight_fit`.

        Returns
        -------
        tuple of arrays or None
            ``(lo, hi, iterations, centre, kept_sum)`` as :meth:`kappa_sigma_fit`, or None.

        Notes
        -----
        Same contract as :meth:`kappa_sigma_fit` (no ``ddof``), for
        :func:`~zemosaic_xp.core.reject.winsorized_sigma_clip.wsc_pixinsight_fit`, the default
        ``winsorized_sigma_clip``: identical ranges, iteration counts and centres, and
        ``Σ (x − centre)`` over the kept range as the core's anchored sums give it.
        """
        return None

    def wsc_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                max_iters: int, min_survivors: int) -> tuple[Array, ...] | None:
        """A native unweighted ZeMosaic-style WSC of sorted rows, or None (portable).

        Parameters
        ----------
        s, n_valid : array, shape (R, N) and (R,)
            Sorted rows and valid counts, as :meth:`kappa_sigma_fit`.
        kappa_low, kappa_high : float
            Clamp and rejection thresholds, in σ.
        max_iters, min_survivors : int
            As :mod:`~zemosaic_xp.core.reject.winsorized_sigma_clip_zemosaic`.

        Returns
        -------
        tuple of arrays or None
            ``(lo, hi, iterations, centre, kept_sum)``, each ``(R,)``: the kept range
            after the final bounds and the survivor guard, the iterations run, the row's
            float32 median and ``Σ (x − median)`` over the range in float64; or None.

        Notes
        -----
        Same contract as :meth:`kappa_sigma_fit`, for the range path of
        :mod:`~zemosaic_xp.core.reject.winsorized_sigma_clip_zemosaic` (``wsc_impl="zemosaic"``,
        the Huber WSC of upstream_spec §2.6.1).
        """
        return None

    def wsc_weighted_fit(self, x: Array, weights: Array, s: Array, n_valid: Array, /, *,
                         kappa_low: float, kappa_high: float, max_iters: int,
                         min_survivors: int) -> tuple[Array, ...] | None:
        """A native weighted ZeMosaic-style WSC (``wsc_impl="zemosaic"``), or None (portable).

        Parameters
        ----------
        x : array, shape (R, N), float32
            Samples in their original order, NaN where invalid.
        weights : array, shape (R, N), float32
            Weights, 0 on invalid samples (``Samples.full_weights()``).
        s, n_valid : array, shape (R, N) and (R,)
            ``x`` sorted (invalid last as ``+inf``) and the valid counts.
        kappa_low, kappa_high, max_iters, min_survivors : float, float, int, int
            As :meth:`wsc_fit`.

        Returns
        -------
        tuple of arrays or None
            ``(keep, n_low, n_high, iterations)``: ``keep`` shape (R, N) bool in the
            order of ``x``; the others shape (R,), int64. As the direct formulation in
            :mod:`~zemosaic_xp.core.reject.winsorized_sigma_clip_zemosaic`.
        """
        return None

    # ------------------------------------------------------------------ compaction
    def expand(self, mask: Array, pairs: list[tuple[Array, Array]]) -> list[Array]:
        """Undo a compaction: for each ``(values, fill)`` put ``values`` where ``mask``.

        Parameters
        ----------
        mask : array, shape (R,), bool
            With ``A`` True entries.
        pairs : list of (values, fill)
            ``values`` shape (A,), one per True of ``mask`` in order; ``fill`` shape (R,).

        Returns
        -------
        list of arrays, shape (R,)
            For each pair, ``fill`` with ``values`` scattered into ``mask``.
        """
        xp = self.xp
        count = int(pairs[0][0].shape[0]) if pairs else 0
        pos = xp.cumulative_sum(xp.astype(mask, xp.int64)) - 1
        pos = xp.minimum(xp.maximum(pos, xp.zeros_like(pos)), xp.full_like(pos, max(count - 1, 0)))
        return [xp.where(mask, xp.take(values, pos), fill) for values, fill in pairs]


# Ops per (namespace, device): building them reads the CPU affinity and numba's
# state, and ops_for is called for every sort.
_CACHE: dict[tuple[int, str], ArrayOps] = {}
_STATE = threading.local()


def ops_for(xp: Any, device: Any = None) -> ArrayOps:
    """The fastest :class:`ArrayOps` for arrays of ``xp`` on ``device``.

    Parameters
    ----------
    xp : module
        The arrays' array-API namespace.
    device : object, optional
        The arrays' device.

    Returns
    -------
    ArrayOps
        The native ops that :func:`zemosaic_xp.backends.native.native_ops` chooses, or
        the portable reference when it has none (array-api-strict, ...) and inside
        :func:`portable_only`.
    """
    if getattr(_STATE, "portable", False):
        return ArrayOps(xp)
    key = (id(xp), str(device))
    hit = _CACHE.get(key)
    if hit is None:
        native = importlib.import_module(_NATIVE_OPS_MODULE).native_ops(xp, device)
        hit = ArrayOps(xp) if native is None else native
        _CACHE[key] = hit
    return hit


@contextlib.contextmanager
def portable_only() -> Iterator[None]:
    """Within this block (this thread), :func:`ops_for` returns the portable reference.

    Yields
    ------
    None
    """
    previous = getattr(_STATE, "portable", False)
    _STATE.portable = True
    try:
        yield
    finally:
        _STATE.portable = previous
