"""Helpers for the catalogue rejections: exact masks from sorted positions, range sums.

:func:`~.reject_common.range_rejection` turns a sorted range ``[lo, hi)`` into a keep
mask through value bounds, which is exact when the range came from value thresholds.
Ranges that come from *counting* samples (drop the k highest, remove one extreme per
ESD step) can split a run of equal values; :func:`exact_range_rejection` then falls
back to the rank of every sample, so the kept multiset is exactly ``sorted[lo:hi]``
and rejection maps count exactly the samples dropped.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from .nanstats import median_sorted
from .reject_common import range_rejection
from .samples import Rejection, Samples

__all__ = ["sorted_ranks", "keep_from_sorted", "exact_range_rejection", "centred_prefix_sums",
           "range_sums", "take", "one_pass_iterations"]

Array = Any


def take(s: Array, idx: Array, xp: Any) -> Array:
    """``s[row, idx[row]]`` along the last axis with ``idx`` clamped into range."""
    n = s.shape[-1]
    idx = xp.clip(idx, 0, max(n - 1, 0))
    return xp.take_along_axis(s, idx, axis=-1)


def sorted_ranks(samples: Samples) -> Array:
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
    """A keep mask given per sorted position ``(P, N)`` → per sample, original order."""
    xp = samples.xp
    return xp.take_along_axis(keep_sorted, sorted_ranks(samples), axis=-1) & samples.valid


def exact_range_rejection(samples: Samples, lo: Array, hi: Array, iterations: Array) -> Rejection:
    """Like ``range_rejection``, exact even when ``[lo, hi)`` splits a run of ties.

    When no pixel of the band has a tie across ``lo`` or ``hi`` the value bounds are
    exact and cheap; otherwise samples are kept by their rank in the sorted order.
    """
    xp = samples.xp
    s, n = samples.sorted, samples.n_valid
    has = hi > lo
    left_tie = has & (lo > 0) & (take(s, lo - 1, xp) == take(s, lo, xp))
    right_tie = has & (hi < n) & (take(s, hi - 1, xp) == take(s, hi, xp))
    if not bool(xp.any(left_tie | right_tie)):
        return range_rejection(samples, lo, hi, iterations)
    ranks = sorted_ranks(samples)
    keep = samples.valid & (ranks >= lo) & (ranks < hi)
    return Rejection(keep, lo[:, 0], (n - hi)[:, 0], iterations, lo=lo, hi=hi)


def centred_prefix_sums(s: Array, n_valid: Array, xp: Any) -> tuple[Array, Array, Array]:
    """Prefix sums of ``s − m0`` and its square (float64, ``include_initial``).

    ``m0`` (shape ``(R, 1)``, float64) is each row's median, so the float64 sums keep
    every digit of a variance even on a large pedestal. Invalid samples add 0.
    """
    dev = _device(s)
    m0 = median_sorted(s, n_valid, xp=xp)[:, None]
    m0 = xp.astype(xp.where(xp.isnan(m0), xp.zeros_like(m0), m0), xp.float64)
    inside = xp.arange(s.shape[-1], device=dev)[None, :] < n_valid
    zero = xp.zeros((), dtype=xp.float64, device=dev)
    d = xp.where(inside, xp.astype(s, xp.float64) - m0, zero)
    s1 = xp.cumulative_sum(d, axis=-1, include_initial=True)
    s2 = xp.cumulative_sum(d * d, axis=-1, include_initial=True)
    return m0, s1, s2


def range_sums(s1: Array, s2: Array, lo: Array, hi: Array, xp: Any) -> tuple[Array, Array]:
    """Σ(x − m0) and Σ(x − m0)² over the sorted range ``[lo, hi)``, each ``(R, 1)``."""
    sum1 = xp.take_along_axis(s1, hi, axis=-1) - xp.take_along_axis(s1, lo, axis=-1)
    sum2 = xp.take_along_axis(s2, hi, axis=-1) - xp.take_along_axis(s2, lo, axis=-1)
    return sum1, sum2


def one_pass_iterations(can_reject: Array, xp: Any) -> Array:
    """Iterations of a one-pass rejection: 1 where the pixel could reject, else 0."""
    return xp.astype(can_reject[:, 0], xp.int64)
