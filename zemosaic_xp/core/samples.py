"""The per-band working set shared by rejection and combine: pixels × samples.

A band of ``h`` rows arrives as ``(h, W, C, N)`` (frames last). The pipeline flattens
it to ``P = h·W·C`` pixel rows of ``N`` samples and keeps, for that band only:

- ``x`` — values, float32, NaN where a sample is invalid (NaN input, or weight ≤ 0);
- ``valid`` / ``n_valid`` — the validity mask and per-pixel count;
- ``weights`` — per-sample weights broadcastable to ``(P, N)`` (or None = all equal);
- ``sorted`` — ``x`` sorted along the sample axis with invalid samples last as
  ``+inf``. Rejections that keep a contiguous value range and the median combine
  both reuse it.

Everything derived is computed lazily, once: a κ-σ rejection with a mean combine never
builds the ``(P, N)`` validity mask (the sort counts the valid samples), and a plain
mean never sorts.
"""

from __future__ import annotations

from typing import Any, Callable

from array_api_compat import device as _device

from .ops import ArrayOps, ops_for

__all__ = ["Samples", "Rejection"]

Array = Any


class Samples:
    """Values, validity and weights of one band, shape ``(P, N)``.

    Parameters
    ----------
    x : array, shape (P, N), float32
        Sample values; NaN = no data.
    weights : array broadcastable to (P, N), float32, or None
        Non-negative weights. Samples whose weight is not > 0 (or not finite) are
        treated as invalid: a zero weight means "no data", as a reprojection
        footprint of 0 does.
    xp : namespace
    ops : ArrayOps, optional
        Native fast paths (:func:`~zemosaic_xp.core.ops.ops_for` by default).
    """

    def __init__(self, x: Array, weights: Array | None, *, xp: Any, ops: ArrayOps | None = None) -> None:
        self.xp = xp
        self.ops = ops_for(xp, _device(x)) if ops is None else ops
        self._valid: Array | None = None
        self._n_valid: Array | None = None
        if weights is not None:
            valid = ~xp.isnan(x)
            good_w = xp.isfinite(weights) & (weights > 0)
            valid = valid & good_w
            zero = xp.zeros((), dtype=weights.dtype, device=_device(weights))
            weights = xp.where(good_w, weights, zero)
            nan = xp.asarray(xp.nan, dtype=x.dtype, device=_device(x))
            x = xp.where(valid, x, nan)
            self._valid = valid
        self.x = x
        self.weights = weights
        self._sorted: Array | None = None

    @property
    def n_pixels(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.x.shape[-1])

    @property
    def valid(self) -> Array:
        """``(P, N)`` bool, True where a sample holds data (cached)."""
        if self._valid is None:
            self._valid = ~self.xp.isnan(self.x)
        return self._valid

    @property
    def n_valid(self) -> Array:
        """``(P, 1)`` int64, valid samples per pixel (cached; free once sorted)."""
        if self._n_valid is None:
            xp = self.xp
            self._n_valid = xp.sum(xp.astype(self.valid, xp.int64), axis=-1, keepdims=True)
        return self._n_valid

    @property
    def sorted(self) -> Array:
        """``x`` sorted along the sample axis, invalid samples last as ``+inf`` (cached)."""
        if self._sorted is None:
            self._sorted, n_valid = self.ops.sort_valid(self.x)
            if self._n_valid is None:
                self._n_valid = n_valid
        return self._sorted

    def full_weights(self) -> Array:
        """Weights broadcast to ``(P, N)``, 0 on invalid samples (1 on valid ones if None)."""
        xp = self.xp
        one = xp.ones((), dtype=self.x.dtype, device=_device(self.x))
        zero = xp.zeros((), dtype=self.x.dtype, device=_device(self.x))
        w = one if self.weights is None else self.weights
        return xp.where(self.valid, w, zero)


class Rejection:
    """Outcome of a rejection on one band.

    Attributes
    ----------
    keep : array, shape (P, N), bool
        True = the sample is used by the combine (always a subset of ``valid``).
        Range-based rejections build it only when a combine asks for it.
    n_low, n_high : array, shape (P,), int64
        Samples rejected below / above the pixel's bounds.
    iterations : array, shape (P,), int64
        Iterations each pixel ran before its kept set stopped changing.
    lo, hi : array, shape (P, 1), int64, or None
        When the kept set is a contiguous range ``[lo, hi)`` of ``Samples.sorted``
        (true of every value-threshold rejection), its bounds; lets the median combine
        skip a second sort.
    centre, kept_sum : array, shape (P,), or None
        When known: a float32 centre ``m`` and the float64 sum ``Σ (x − m)`` over the
        kept samples, so that an unweighted mean costs no pass over the samples.
    """

    def __init__(self, keep: Array | None, n_low: Array, n_high: Array, iterations: Array,
                 lo: Array | None = None, hi: Array | None = None, *,
                 keep_factory: Callable[[], Array] | None = None,
                 centre: Array | None = None, kept_sum: Array | None = None) -> None:
        if keep is None and keep_factory is None:
            msg = "Rejection needs `keep` or `keep_factory`"
            raise ValueError(msg)
        self._keep = keep
        self._keep_factory = keep_factory
        self.n_low = n_low
        self.n_high = n_high
        self.iterations = iterations
        self.lo = lo
        self.hi = hi
        self.centre = centre
        self.kept_sum = kept_sum

    @property
    def keep(self) -> Array:
        if self._keep is None:
            self._keep = self._keep_factory()
            self._keep_factory = None
        return self._keep

    @keep.setter
    def keep(self, value: Array) -> None:
        self._keep = value
        self._keep_factory = None
