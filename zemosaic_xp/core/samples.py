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
        Non-negative weights; None = all equal. Samples whose weight is not > 0 (or
        not finite) are treated as invalid: a zero weight means "no data", as a
        reprojection footprint of 0 does.
    xp : namespace
        The array namespace of ``x`` and ``weights``; every derived array stays in it,
        on the device of ``x``.
    ops : ArrayOps, optional
        Native fast paths (:func:`~zemosaic_xp.core.ops.ops_for` by default).

    Attributes
    ----------
    x : array, shape (P, N), float32
        The values, NaN also where the weight is not > 0.
    weights : array broadcastable to (P, N), float32, or None
        The weights, 0 where they were not > 0 or not finite.
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
        """Pixel rows of the band.

        Returns
        -------
        int
            ``P = h·W·C``.
        """
        return int(self.x.shape[0])

    @property
    def n_frames(self) -> int:
        """Number of samples per pixel.

        Returns
        -------
        int
            ``N``, the frames of the band.
        """
        return int(self.x.shape[-1])

    @property
    def valid(self) -> Array:
        """Validity mask of the samples, computed once.

        Returns
        -------
        array, shape (P, N), bool
            True where a sample holds data (non-NaN value, weight > 0).
        """
        if self._valid is None:
            self._valid = ~self.xp.isnan(self.x)
        return self._valid

    @property
    def n_valid(self) -> Array:
        """Valid samples per pixel, computed once (free once :attr:`sorted` ran).

        Returns
        -------
        array, shape (P, 1), int64
            0 for a pixel without data.
        """
        if self._n_valid is None:
            xp = self.xp
            self._n_valid = xp.sum(xp.astype(self.valid, xp.int64), axis=-1, keepdims=True)
        return self._n_valid

    @property
    def sorted(self) -> Array:
        """Sorted copy of the samples along the sample axis, computed once.

        Returns
        -------
        array, shape (P, N), float32
            Each row of ``x`` ascending, its invalid samples last as ``+inf``
            (``ops.sort_valid``).
        """
        if self._sorted is None:
            self._sorted, n_valid = self.ops.sort_valid(self.x)
            if self._n_valid is None:
                self._n_valid = n_valid
        return self._sorted

    def full_weights(self) -> Array:
        """Return the weight of every sample.

        Returns
        -------
        array, shape (P, N), float32
            ``weights`` broadcast to ``(P, N)`` (1 everywhere when None), 0 on invalid
            samples; a new array on the device of ``x``.
        """
        xp = self.xp
        one = xp.ones((), dtype=self.x.dtype, device=_device(self.x))
        zero = xp.zeros((), dtype=self.x.dtype, device=_device(self.x))
        w = one if self.weights is None else self.weights
        return xp.where(self.valid, w, zero)


class Rejection:
    """Outcome of a rejection on one band.

    Parameters
    ----------
    keep : array, shape (P, N), bool, or None
        True = the sample is used by the combine (always a subset of
        ``Samples.valid``); None to build it with ``keep_factory``.
    n_low, n_high : array, shape (P,), int64
        Samples rejected below / above the pixel's bounds.
    iterations : array, shape (P,), int64
        Iterations each pixel ran before its kept set stopped changing.
    lo, hi : array, shape (P, 1), int64, optional
        When the kept set is a contiguous range ``[lo, hi)`` of ``Samples.sorted``
        (true of every value-threshold rejection), its bounds; lets the median combine
        skip a second sort.
    keep_factory : callable, optional
        ``keep_factory()`` returns the keep mask; called on the first read of
        :attr:`keep`, so range-based rejections build the mask only when a combine
        asks for it. Required when ``keep`` is None.
    centre, kept_sum : array, shape (P,), optional
        When known: a float32 centre ``m`` and the float64 sum ``Σ (x − m)`` over the
        kept samples, so that an unweighted mean costs no pass over the samples.
    kept_sq : array, shape (P,), optional
        When known with ``kept_sum``: the float64 ``Σ (x − m)²`` over the kept
        samples, so that the uncertainty map costs no pass either.

    Attributes
    ----------
    n_low, n_high, iterations, lo, hi, centre, kept_sum, kept_sq
        The parameters of the same names (None where not given).
    weighted_sums : tuple of array or None
        Set by a weighted mean combine: the survivors' weights ``(P, N)`` float32 (0
        elsewhere), and the float64 ``Σw·x`` and ``Σw`` ``(P,)``; the uncertainty map
        reuses them. None otherwise.

    Raises
    ------
    ValueError
        Neither ``keep`` nor ``keep_factory`` is given.
    """

    def __init__(self, keep: Array | None, n_low: Array, n_high: Array, iterations: Array,
                 lo: Array | None = None, hi: Array | None = None, *,
                 keep_factory: Callable[[], Array] | None = None,
                 centre: Array | None = None, kept_sum: Array | None = None,
                 kept_sq: Array | None = None) -> None:
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
        self.kept_sq = kept_sq
        self.weighted_sums: tuple[Array, Array, Array] | None = None

    @property
    def keep(self) -> Array:
        """Keep mask of the samples, built on first read when a factory was given.

        Returns
        -------
        array, shape (P, N), bool
            True where the combine uses the sample, in the samples' original order.
        """
        if self._keep is None:
            self._keep = self._keep_factory()
            self._keep_factory = None
        return self._keep

    @keep.setter
    def keep(self, value: Array) -> None:
        """Replace the keep mask; a pending ``keep_factory`` is dropped.

        Parameters
        ----------
        value : array, shape (P, N), bool
            The new mask.
        """
        self._keep = value
        self._keep_factory = None
