"""Helpers shared by the rejection modules (sorted ranges, survivor guard)."""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from .config import StackConfig
from .nanstats import take_rows
from .samples import Rejection, Samples

__all__ = ["zeros_per_pixel", "min_keep", "range_rejection"]

Array = Any


def zeros_per_pixel(samples: Samples) -> Array:
    xp = samples.xp
    return xp.zeros((samples.n_pixels,), dtype=xp.int64, device=_device(samples.x))


def min_keep(n_valid: Array, config: StackConfig, xp: Any) -> Array:
    return xp.minimum(n_valid, xp.full_like(n_valid, config.min_survivors))


def range_rejection(samples: Samples, lo: Array, hi: Array, iterations: Array, *,
                    centre: Array | None = None, kept_sum: Array | None = None) -> Rejection:
    """Turn a sorted-index range ``[lo, hi)`` (each ``(P, 1)``) into a :class:`Rejection`.

    The keep mask in the original sample order is built only if a combine asks for
    it: value bounds ``s[lo] <= x <= s[hi-1]`` select exactly the range, ties
    included, because every range bound comes from a count of values below / above
    a threshold. ``centre`` / ``kept_sum`` (``(P,)``, see :class:`Rejection`) let an
    unweighted mean skip the samples entirely.
    """
    xp = samples.xp
    n = samples.n_valid

    def keep() -> Array:
        s = samples.sorted
        lo1, hi1 = lo[:, 0], hi[:, 0]
        has = hi1 > lo1
        zero = xp.zeros_like(lo1)
        first = take_rows(s, xp.where(has, lo1, zero), xp=xp)[:, None]
        last = take_rows(s, xp.where(has, hi1 - 1, zero), xp=xp)[:, None]
        return samples.valid & has[:, None] & (samples.x >= first) & (samples.x <= last)

    return Rejection(None, lo[:, 0], (n - hi)[:, 0], iterations, lo=lo, hi=hi, keep_factory=keep,
                     centre=centre, kept_sum=kept_sum)
