"""Optional native fast paths for the core ("ops"), looked up by namespace and device.

The core is written once against the array API. A few primitives are much faster
through a library's own calls — NumPy's in-place SIMD sort, ``einsum`` row sums on
the contiguous axis, cache-sized bands processed by a thread pool — and a GPU wants
a different *strategy* (no host synchronisation, no data-dependent shapes) rather
than different maths. This module is the hook between the two worlds:

- :class:`ArrayOps` is the portable reference: every method is plain array-API code
  and every flag has its safe default. Core functions take an ``ops`` object and
  call its methods; they never test which library they run on.
- Code outside the core (``zemosaic_xp.backends`` / ``zemosaic_xp.fastpaths``, the
  only modules that know NumPy, CuPy and torch exist) registers a factory with
  :func:`register_ops`; :func:`ops_for` asks each factory in turn and falls back to
  the portable :class:`ArrayOps`.

Some members are whole steps rather than primitives — a κ-σ or WSC clip of sorted
rows (:meth:`ArrayOps.kappa_sigma_fit`, :meth:`~ArrayOps.wsc_pixinsight_fit`,
:meth:`~ArrayOps.wsc_fit`, :meth:`~ArrayOps.wsc_weighted_fit`) or a whole band
(:meth:`ArrayOps.band_stacker`):
their portable versions return None, which means "run the core's own code", so a
backend implements only what it can do faster (NumPy with numba).

Every native method must return what the portable one returns on the same data (tests
in ``tests/core/test_fastpaths.py`` and ``tests/core/test_numba_kernels.py`` check
each), so the portable path stays the reference. :func:`portable_only` disables every registered fast path, for
those tests and for debugging.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

from array_api_compat import device as _device

__all__ = ["ArrayOps", "register_ops", "ops_for", "portable_only"]

Array = Any
OpsFactory = Callable[[Any, Any], "ArrayOps | None"]


class ArrayOps:
    """Portable primitives and strategy flags of the stack core (the reference).

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
    band_workers : int
        Bands stacked concurrently by :func:`~zemosaic_xp.core.stack.stack_frames`
        (threads; useful when the library releases the GIL).
    band_bytes : int or None
        Preferred float32 bytes of one band (cache-sized on CPUs); None = as large as
        the memory budget allows.
    """

    name = "portable"
    compact = False
    check_every = 1
    band_workers = 1
    band_bytes: int | None = None

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def host_delegate(self) -> tuple[ArrayOps, Callable[[Array], Array], Callable[[Array], Array]] | None:
        """Another namespace that shares this one's memory and stacks faster, or None.

        Returns ``(ops, to, back)``: the other namespace's ops, and zero-copy
        conversions of an array into it and back. ``stack_frames`` then runs a whole
        stack there (torch CPU tensors are stacked by NumPy's kernels on the same
        buffers). ``stack_band`` never delegates, so the portable path stays reachable.
        """
        return None

    # ------------------------------------------------------------------ layout
    def band_copy(self, view: Array) -> Array:
        """A C-contiguous float32 copy of ``view`` (typically a transposed band).

        Parameters
        ----------
        view : array, any shape and strides, real
        """
        xp = self.xp
        shape = tuple(int(v) for v in view.shape)
        # reshape of a non-contiguous view materialises it in C order on every library.
        flat = xp.reshape(view, (-1,))
        if flat.dtype != xp.float32:
            flat = xp.astype(flat, xp.float32)
        return xp.reshape(flat, shape)

    def nan_nonfinite(self, x: Array) -> Array:
        """``x`` (float32) with ±inf replaced by NaN; may reuse ``x``'s buffer."""
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
        n_valid : array, shape (..., 1), int64
        """
        xp = self.xp
        nan = xp.isnan(x)
        inf = xp.asarray(xp.inf, dtype=x.dtype, device=_device(x))
        s = xp.sort(xp.where(nan, inf, x), axis=-1, stable=False)
        n_valid = xp.sum(xp.astype(~nan, xp.int64), axis=-1, keepdims=True)
        return s, n_valid

    def mad(self, s: Array, n_valid: Array, centre: Array) -> Array:
        """Median of ``|s − centre|`` over each sorted row's valid samples (float32).

        Portable: a selection in the two sorted runs of deviations, no second sort
        (:func:`~zemosaic_xp.core.sorted_rows.mad_sorted`). Shapes ``(R, N)``, ``(R,)``, ``(R,)``.
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
        lo, hi : array, shape (R,), int64
        whole : bool
            A promise that ``[lo, hi)`` is each row's whole valid range ``[0, n_valid)``
            of a :meth:`sort_valid` output, so only ``+inf`` padding lies outside it.

        Returns
        -------
        s1, s2 : array, shape (R,), float64
            0 for empty ranges.

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
        """Inclusive prefix sums along the last axis (``cumulative_sum``)."""
        return self.xp.cumulative_sum(d, axis=-1)

    # ------------------------------------------------------------------ whole bands
    def band_stacker(self, config: Any, plan: Any) -> Callable[..., tuple[int, int, int, int]] | None:
        """A native whole-band stacker for this configuration, or None (the core's pipeline).

        Asked once per stack by :func:`~zemosaic_xp.core.stack.stack_frames` when no
        per-pixel weights are given. The stacker is called as
        ``stacker(frames, r0, r1, out)`` for every band, concurrently from the band
        threads:

        - ``frames`` : array, shape (N, ·, W, C), frames first, as stored (any dtype
          and strides; non-finite values mean "no data"), and ``r0, r1`` the band's
          rows in it (see ``FrameStack.band_source``);
        - ``out`` : the band's rows of the five result arrays — image and weight_sum
          (float32), coverage, rejected_low and rejected_high (int32) — each shape
          (r1 − r0, W, C): the stacker writes them;
        - returns ``(iterations, n_valid, n_low, n_high)`` of the band, as ints.

        It must write what :func:`~zemosaic_xp.core.stack.stack_band` returns for the
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
        kappa_low, kappa_high, max_iters, ddof, min_survivors
            As :func:`~zemosaic_xp.core.reject.kappa_sigma.kappa_sigma_fit`.

        Returns
        -------
        (lo, hi, iterations, centre, kept_sum) or None
            The fields of :class:`~zemosaic_xp.core.reject._common.RangeFit`, each shape
            ``(R,)``: int64 ``[lo, hi)`` and iterations, float32 median (0 for rows
            without valid samples), float64 ``Σ (x − centre)`` over the kept range.
        """
        return None

    def wsc_pixinsight_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float,
                           kappa_high: float, max_iters: int,
                           min_survivors: int) -> tuple[Array, ...] | None:
        """A native PixInsight/Siril winsorised sigma clip of sorted rows, or None (portable).

        Same contract as :meth:`kappa_sigma_fit` (no ``ddof``), for
        :func:`~zemosaic_xp.core.reject.winsorized_sigma_clip.wsc_pixinsight_fit`, the default
        ``winsorized_sigma_clip``: identical ranges, iteration counts and centres, and
        ``Σ (x − centre)`` over the kept range as the core's anchored sums give it.
        """
        return None

    def wsc_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                max_iters: int, min_survivors: int) -> tuple[Array, ...] | None:
        """A native unweighted ZeMosaic-style WSC of sorted rows, or None (portable).

        Same contract as :meth:`kappa_sigma_fit`, for the range path of
        :mod:`~zemosaic_xp.core.reject.winsorized_sigma_clip_zemosaic` (``wsc_impl="zemosaic"``,
        the Huber WSC of upstream_spec §2.6.1). Returns ``(lo, hi, iterations, centre, kept_sum)``, each ``(R,)``:
        the kept range after the final bounds and the survivor guard, the iterations
        run, the row's float32 median and ``Σ (x − median)`` over the range in float64.
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

        Returns
        -------
        (keep, n_low, n_high, iterations) or None
            ``keep`` shape (R, N) bool in the order of ``x``; the others shape (R,),
            int64. As the direct formulation in
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
        list of arrays, shape (R,): ``fill`` with ``values`` scattered into ``mask``.
        """
        xp = self.xp
        count = int(pairs[0][0].shape[0]) if pairs else 0
        pos = xp.cumulative_sum(xp.astype(mask, xp.int64)) - 1
        pos = xp.minimum(xp.maximum(pos, xp.zeros_like(pos)), xp.full_like(pos, max(count - 1, 0)))
        return [xp.where(mask, xp.take(values, pos), fill) for values, fill in pairs]


_FACTORIES: list[OpsFactory] = []
_CACHE: dict[tuple[int, str], ArrayOps] = {}
_STATE = threading.local()


def register_ops(factory: OpsFactory) -> None:
    """Register ``factory(xp, device) -> ArrayOps | None`` (None = not mine).

    Factories are asked in registration order; the first non-None answer wins.
    """
    if factory not in _FACTORIES:
        _FACTORIES.append(factory)
        _CACHE.clear()


def ops_for(xp: Any, device: Any = None) -> ArrayOps:
    """The fastest registered :class:`ArrayOps` for arrays of ``xp`` on ``device``."""
    if getattr(_STATE, "portable", False):
        return ArrayOps(xp)
    key = (id(xp), str(device))
    hit = _CACHE.get(key)
    if hit is None:
        hit = next((ops for ops in (f(xp, device) for f in _FACTORIES) if ops is not None), None)
        hit = ArrayOps(xp) if hit is None else hit
        _CACHE[key] = hit
    return hit


@contextlib.contextmanager
def portable_only() -> Iterator[None]:
    """Within this block (this thread), :func:`ops_for` returns the portable reference."""
    previous = getattr(_STATE, "portable", False)
    _STATE.portable = True
    try:
        yield
    finally:
        _STATE.portable = previous
