"""The per-band working set shared by rejection and combine: pixels × samples.

A band of ``h`` rows arrives as ``(h, W, C, N)`` (frames last). The pipeline flattens
it to ``P = h·W·C`` pixel rows of ``N`` samples and keeps, for that band only:

- ``x`` — values, float32, NaN where a sample is invalid (NaN input, or weight ≤ 0);
- ``valid`` / ``n_valid`` — the validity mask and per-pixel count;
- ``weights`` — per-sample weights broadcastable to ``(P, N)`` (or None = all equal);
- ``sorted`` — built lazily once: ``x`` sorted along the sample axis with invalid
  samples last as ``+inf``. Rejections that keep a contiguous value range and the
  median combine both reuse it.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from .nanstats import sort_valid

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
    """

    def __init__(self, x: Array, weights: Array | None, *, xp: Any) -> None:
        self.xp = xp
        valid = ~xp.isnan(x)
        if weights is not None:
            good_w = xp.isfinite(weights) & (weights > 0)
            valid = valid & good_w
            zero = xp.zeros((), dtype=weights.dtype, device=_device(weights))
            weights = xp.where(good_w, weights, zero)
            nan = xp.asarray(xp.nan, dtype=x.dtype, device=_device(x))
            x = xp.where(valid, x, nan)
        self.x = x
        self.valid = valid
        self.weights = weights
        self.n_valid = xp.sum(xp.astype(valid, xp.int64), axis=-1, keepdims=True)
        self._sorted: Array | None = None

    @property
    def n_pixels(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.x.shape[-1])

    @property
    def sorted(self) -> Array:
        """``x`` sorted along the sample axis, invalid samples last as ``+inf`` (cached)."""
        if self._sorted is None:
            self._sorted, _ = sort_valid(self.x, xp=self.xp)
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
    n_low, n_high : array, shape (P,), int64
        Samples rejected below / above the pixel's bounds.
    iterations : array, shape (P,), int64
        Iterations each pixel ran before its kept set stopped changing.
    lo, hi : array, shape (P, 1), int64, or None
        When the kept set is a contiguous range ``[lo, hi)`` of ``Samples.sorted``
        (true of every value-threshold rejection), its bounds; lets the median combine
        skip a second sort.
    """

    def __init__(self, keep: Array, n_low: Array, n_high: Array, iterations: Array,
                 lo: Array | None = None, hi: Array | None = None) -> None:
        self.keep = keep
        self.n_low = n_low
        self.n_high = n_high
        self.iterations = iterations
        self.lo = lo
        self.hi = hi
