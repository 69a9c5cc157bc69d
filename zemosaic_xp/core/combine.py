"""Final combine of the samples that survived rejection, per pixel.

Every combine returns NaN (no warning) where a pixel has no surviving sample, and
the matching ``weight_sum`` (Σ weights of the survivors, 0 there) and ``coverage``
(number of survivors).
"""

from __future__ import annotations

from typing import Any, Callable

from array_api_compat import device as _device

from .config import StackConfig
from .nanstats import median_sorted, quantile_sorted, sort_valid
from .samples import Rejection, Samples

__all__ = ["combine", "COMBINERS"]

Array = Any


def _nan_where_empty(value: Array, coverage: Array, xp: Any) -> Array:
    nan = xp.asarray(xp.nan, dtype=value.dtype, device=_device(value))
    return xp.where(coverage > 0, value, nan)


def _unweighted_range(samples: Samples, rej: Rejection) -> bool:
    return samples.weights is None and rej.lo is not None and rej.hi is not None


def _combine_mean(samples: Samples, rej: Rejection, config: StackConfig) -> Array:
    """Weighted mean Σ w·x / Σ w over the survivors (float64 accumulation).

    Unweighted range rejections that carry ``kept_sum`` (``Σ (x − m)``, float64) give
    the same mean as ``m + kept_sum / count`` without touching the samples again.
    Otherwise an unweighted mean records its float64 ``Σx`` on ``rej`` (``centre`` 0,
    ``kept_sum``), a weighted one its survivors' weights and float64 ``Σw·x``, ``Σw``
    (``weighted_sums``), for the uncertainty map.
    """
    xp = samples.xp
    if _unweighted_range(samples, rej) and rej.kept_sum is not None:
        count = xp.astype(rej.hi[:, 0] - rej.lo[:, 0], xp.float64)
        count = xp.where(count > 0, count, xp.ones_like(count))
        mean = xp.astype(rej.centre, xp.float64) + rej.kept_sum / count
        return xp.astype(mean, samples.x.dtype)
    zero = xp.zeros((), dtype=samples.x.dtype, device=_device(samples.x))
    wk = xp.where(rej.keep, samples.full_weights(), zero)
    xk = xp.where(rej.keep, samples.x, zero)
    num = xp.sum(wk * xk, axis=-1, dtype=xp.float64)
    den = xp.sum(wk, axis=-1, dtype=xp.float64)
    if samples.weights is None and rej.kept_sum is None:
        # Σx of the survivors about the centre 0: the uncertainty map reuses it.
        rej.centre = xp.zeros((samples.n_pixels,), dtype=samples.x.dtype, device=_device(samples.x))
        rej.kept_sum = num
    elif samples.weights is not None:
        # The survivors' weights, Σw·x and Σw: the uncertainty map reuses them.
        rej.weighted_sums = (wk, num, den)
    return xp.astype(num / xp.where(den > 0, den, xp.ones_like(den)), samples.x.dtype)


def _combine_median(samples: Samples, rej: Rejection, config: StackConfig) -> Array:
    """Unweighted median of the survivors (mean of the two middle values if even)."""
    xp = samples.xp
    if rej.lo is not None and rej.hi is not None:
        return median_sorted(samples.sorted, rej.hi - rej.lo, xp=xp, lo=rej.lo)
    nan = xp.asarray(xp.nan, dtype=samples.x.dtype, device=_device(samples.x))
    s, n = sort_valid(xp.where(rej.keep, samples.x, nan), xp=xp)
    return median_sorted(s, n, xp=xp)


def _combine_percentile(samples: Samples, rej: Rejection, config: StackConfig) -> Array:
    """Unweighted quantile ``combine_percentile`` / 100 of the survivors.

    Linear interpolation between order statistics (NumPy's default): position
    ``q · (n − 1)`` in the sorted survivors, so 50 is the median (the mean of the two
    middle values for an even count), 0 the minimum and 100 the maximum.
    """
    xp = samples.xp
    q = config.combine_percentile / 100.0
    if rej.lo is not None and rej.hi is not None:
        return quantile_sorted(samples.sorted, rej.hi - rej.lo, q, xp=xp, lo=rej.lo)
    nan = xp.asarray(xp.nan, dtype=samples.x.dtype, device=_device(samples.x))
    s, n = sort_valid(xp.where(rej.keep, samples.x, nan), xp=xp)
    return quantile_sorted(s, n, q, xp=xp)


def _combine_sum(samples: Samples, rej: Rejection, config: StackConfig) -> Array:
    """Sum of the survivors: n_kept · Σ w·x / Σ w (the weighted mean times the count).

    Unweighted this is exactly Σ x over the surviving samples; weights only shift
    the relative contributions, never the level. Rejected and missing samples add
    nothing, so a pixel with a rejected hit sums fewer samples (``image / coverage``
    is the mean; scale by the frame count yourself for a rejection-compensated sum).
    """
    xp = samples.xp
    count = xp.sum(xp.astype(rej.keep, samples.x.dtype), axis=-1)  # exact below 2**24 frames
    return count * _combine_mean(samples, rej, config)


def _combine_extreme(samples: Samples, rej: Rejection, *, highest: bool) -> Array:
    xp = samples.xp
    if rej.lo is not None and rej.hi is not None:
        idx = rej.hi - 1 if highest else rej.lo
        idx = xp.clip(idx, 0, samples.n_frames - 1)
        return xp.take_along_axis(samples.sorted, idx, axis=-1)[:, 0]
    fill = -xp.inf if highest else xp.inf
    fill = xp.asarray(fill, dtype=samples.x.dtype, device=_device(samples.x))
    kept = xp.where(rej.keep, samples.x, fill)
    return xp.max(kept, axis=-1) if highest else xp.min(kept, axis=-1)


def _combine_min(samples: Samples, rej: Rejection, config: StackConfig) -> Array:
    """Smallest surviving sample (weights ignored)."""
    return _combine_extreme(samples, rej, highest=False)


def _combine_max(samples: Samples, rej: Rejection, config: StackConfig) -> Array:
    """Largest surviving sample (weights ignored)."""
    return _combine_extreme(samples, rej, highest=True)


#: Combine operators by public name.
COMBINERS: dict[str, Callable[[Samples, Rejection, StackConfig], Array]] = {
    "mean": _combine_mean,
    "median": _combine_median,
    "percentile": _combine_percentile,
    "sum": _combine_sum,
    "min": _combine_min,
    "max": _combine_max,
}


def combine(samples: Samples, rej: Rejection, config: StackConfig) -> tuple[Array, Array, Array]:
    """Combine one band's survivors with ``config.combine``.

    Parameters
    ----------
    samples : Samples
        The band's ``(P, N)`` values and weights.
    rej : Rejection
        Which samples survived (:func:`~.reject.reject` on the same ``samples``).
    config : StackConfig
        Its ``combine`` names the operator (``mean``, ``median``, ``percentile``,
        ``sum``, ``min``, ``max``; ``percentile`` takes ``combine_percentile``); only
        ``mean`` and ``sum`` use the weights.

    Returns
    -------
    image : array, shape (P,), float32
        Combined value in the samples' units; NaN, without a warning, where no sample
        survived.
    weight_sum : array, shape (P,), float32
        Σ weights of the survivors (their count when unweighted); 0 where none.
    coverage : array, shape (P,), int32
        Number of survivors.

    Notes
    -----
    All three are on the device of ``samples``. Weighted sums accumulate in float64.
    """
    xp = samples.xp
    if _unweighted_range(samples, rej):
        # Unweighted survivors of a range rejection: the count is the range length.
        coverage = xp.astype(rej.hi[:, 0] - rej.lo[:, 0], xp.int32)
        weight_sum = xp.astype(coverage, samples.x.dtype)
    else:
        coverage = xp.sum(xp.astype(rej.keep, xp.int32), axis=-1)
        zero = xp.zeros((), dtype=samples.x.dtype, device=_device(samples.x))
        weight_sum = xp.astype(
            xp.sum(xp.where(rej.keep, samples.full_weights(), zero), axis=-1, dtype=xp.float64),
            samples.x.dtype)
    image = COMBINERS[config.combine](samples, rej, config)
    return _nan_where_empty(image, coverage, xp), weight_sum, coverage
