"""What the rejection modules share: the survivor floor and the kept set as a sorted range.

Every value-threshold rejection keeps a contiguous index range ``[lo, hi)`` of each
pixel's sorted samples (``Samples.sorted``). :func:`range_rejection` turns such a range
into a :class:`~zemosaic_xp.core.samples.Rejection` through value bounds, which is exact
when the range came from value thresholds. Ranges that come from *counting* samples
(drop the k highest, remove one extreme per ESD step) can split a run of equal values;
:func:`exact_range_rejection` then falls back to the rank of every sample, so the kept
multiset is exactly ``sorted[lo:hi]`` and the rejection maps count exactly the samples
dropped. The array helpers on sorted rows themselves live in :mod:`zemosaic_xp.core.sorted_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import device as _device

from ..config import StackConfig
from ..samples import Rejection, Samples
from ..sorted_rows import take_rows

__all__ = ["RangeFit", "min_keep", "range_rejection", "exact_range_rejection", "keep_from_sorted"]

Array = Any


@dataclass
class RangeFit:
    """Kept range of each sorted row after a range-based clip, with its sums.

    Returned by :func:`~.kappa_sigma.kappa_sigma_fit` and
    :func:`~.winsorized_sigma_clip.wsc_pixinsight_fit`. All arrays are on the device
    of the rows that were clipped.

    Attributes
    ----------
    lo, hi : array, shape (R,), int64
        Kept range ``[lo, hi)`` of each sorted row.
    iterations : array, shape (R,), int64
        Iterations each row ran (0 where no rejection was possible).
    centre : array, shape (R,), float32
        The row's median (0 for empty rows): the centre of ``kept_sum``.
    kept_sum : array, shape (R,), float64
        ``Σ (x − centre)`` over the kept range, computed in float64.
    kept_sq : array, shape (R,), float64, or None
        ``Σ (x − centre)²`` over the kept range when the fit has it (the uncertainty
        map then needs no pass over the samples); None otherwise (native fits).
    """

    lo: Array
    hi: Array
    iterations: Array
    centre: Array
    kept_sum: Array
    kept_sq: Array | None = None


def min_keep(n_valid: Array, config: StackConfig | int, xp: Any) -> Array:
    """The fewest samples a pixel may keep (the ``min_survivors`` rule).

    ``min(min_survivors, n_valid − 1)`` for a pixel of 3 or more valid samples, else
    ``min(min_survivors, n_valid)``: a rejection may always drop one sample of three
    or more (so order statistics act at N = 3 and keep 2) and never goes below
    ``min_survivors`` otherwise; two samples are never split unless
    ``min_survivors`` is 1.

    Parameters
    ----------
    n_valid : array, int64, any shape
        Valid samples per pixel.
    config : StackConfig or int
        Its ``min_survivors``, or that number.
    xp : namespace
        The array namespace of ``n_valid``.

    Returns
    -------
    array, shape and dtype of ``n_valid``
        The floor per pixel.
    """
    survivors = config if isinstance(config, int) else config.min_survivors
    cap = xp.where(n_valid >= 3, n_valid - 1, n_valid)
    return xp.minimum(cap, xp.full_like(n_valid, survivors))


def range_rejection(samples: Samples, lo: Array, hi: Array, iterations: Array, *,
                    centre: Array | None = None, kept_sum: Array | None = None,
                    kept_sq: Array | None = None) -> Rejection:
    """Turn a sorted-index range ``[lo, hi)`` into a :class:`Rejection`.

    The keep mask in the original sample order is built only if a combine asks for
    it: value bounds ``s[lo] <= x <= s[hi-1]`` select exactly the range, ties
    included, because every range bound comes from a count of values below / above
    a threshold.

    Parameters
    ----------
    samples : Samples
        The band; ``samples.sorted`` is the order ``lo`` and ``hi`` index.
    lo, hi : array, shape (P,), int64
        Kept range of each pixel's sorted samples.
    iterations : array, shape (P,), int64
        Iterations each pixel ran.
    centre, kept_sum : array, shape (P,), optional
        A float32 centre and the float64 ``Σ (x − centre)`` over the range (see
        :class:`Rejection`): an unweighted mean then skips the samples entirely.
    kept_sq : array, shape (P,), optional
        The float64 ``Σ (x − centre)²`` over the range: the uncertainty map then skips
        them too.

    Returns
    -------
    Rejection
        ``n_low = lo``, ``n_high = n_valid − hi``, the range as ``(P, 1)`` columns and
        a lazily built keep mask.
    """
    xp = samples.xp
    n = samples.n_valid[:, 0]

    def _keep() -> Array:
        s = samples.sorted
        has = hi > lo
        zero = xp.zeros_like(lo)
        first = take_rows(s, xp.where(has, lo, zero), xp=xp)[:, None]
        last = take_rows(s, xp.where(has, hi - 1, zero), xp=xp)[:, None]
        return samples.valid & has[:, None] & (samples.x >= first) & (samples.x <= last)

    return Rejection(None, lo, n - hi, iterations, lo=lo[:, None], hi=hi[:, None], keep_factory=_keep,
                     centre=centre, kept_sum=kept_sum, kept_sq=kept_sq)


def _sorted_ranks(samples: Samples) -> Array:
    """Position of every sample in ``samples.sorted``, shape ``(P, N)``, int64.

    Equal values are ranked by frame index (a stable argsort), so every backend drops
    the same frame of a tie; invalid samples rank last. Costs two argsorts.
    """
    xp = samples.xp
    inf = xp.asarray(xp.inf, dtype=samples.x.dtype, device=_device(samples.x))
    order = xp.argsort(xp.where(samples.valid, samples.x, inf), axis=-1, stable=True)
    # The inverse of a permutation: no ties, so stability does not matter here.
    return xp.argsort(order, axis=-1, stable=False)


def keep_from_sorted(samples: Samples, keep_sorted: Array) -> Array:
    """Map a keep mask given per sorted position back to the samples' original order.

    Parameters
    ----------
    samples : Samples
        The band whose ``sorted`` order ``keep_sorted`` follows.
    keep_sorted : array, shape (P, N), bool
        True at the sorted positions to keep.

    Returns
    -------
    array, shape (P, N), bool
        The keep mask in the order of ``samples.x`` (False on invalid samples).
    """
    xp = samples.xp
    return xp.take_along_axis(keep_sorted, _sorted_ranks(samples), axis=-1) & samples.valid


def exact_range_rejection(samples: Samples, lo: Array, hi: Array, iterations: Array) -> Rejection:
    """Like :func:`range_rejection`, exact even when ``[lo, hi)`` splits a run of ties.

    When no pixel of the band has a tie across ``lo`` or ``hi`` the value bounds are
    exact and cheap; otherwise samples are kept by their rank in the sorted order.

    Parameters
    ----------
    samples : Samples
        The band; ``samples.sorted`` is the order ``lo`` and ``hi`` index.
    lo, hi : array, shape (P,), int64
        Kept range of each pixel's sorted samples.
    iterations : array, shape (P,), int64
        Iterations each pixel ran.

    Returns
    -------
    Rejection
        Exactly the samples ``sorted[lo:hi]`` kept (ties broken by frame index):
        ``n_low = lo``, ``n_high = n_valid − hi``, the range as ``(P, 1)`` columns, on
        the device of ``samples``.

    Notes
    -----
    The rank fallback costs two argsorts of the band; it runs only for bands with
    a tie across a range bound.
    """
    xp = samples.xp
    s, n = samples.sorted, samples.n_valid[:, 0]
    has = hi > lo

    def _at(idx: Array) -> Array:
        return take_rows(s, idx, xp=xp, clip=True)

    left_tie = has & (lo > 0) & (_at(lo - 1) == _at(lo))
    right_tie = has & (hi < n) & (_at(hi - 1) == _at(hi))
    if not bool(xp.any(left_tie | right_tie)):
        return range_rejection(samples, lo, hi, iterations)
    ranks = _sorted_ranks(samples)
    keep = samples.valid & (ranks >= lo[:, None]) & (ranks < hi[:, None])
    return Rejection(keep, lo, n - hi, iterations, lo=lo[:, None], hi=hi[:, None])
