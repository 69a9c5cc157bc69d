"""Helpers shared by the rejection modules (sorted ranges, survivor guard)."""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from .config import StackConfig
from .samples import Rejection, Samples

__all__ = ["zeros_per_pixel", "min_keep", "range_rejection"]

Array = Any


def zeros_per_pixel(samples: Samples) -> Array:
    xp = samples.xp
    return xp.zeros((samples.n_pixels,), dtype=xp.int64, device=_device(samples.x))


def min_keep(n_valid: Array, config: StackConfig, xp: Any) -> Array:
    return xp.minimum(n_valid, xp.full_like(n_valid, config.min_survivors))


def range_rejection(samples: Samples, lo: Array, hi: Array, iterations: Array) -> Rejection:
    """Turn a sorted-index range ``[lo, hi)`` into a keep mask in the original order.

    Value bounds ``s[lo] <= x <= s[hi-1]`` select exactly the range, ties included,
    because every range bound comes from a count of values below / above a threshold.
    """
    xp = samples.xp
    s = samples.sorted
    n = samples.n_valid
    count = hi - lo
    has = count > 0
    first = xp.take_along_axis(s, xp.where(has, lo, xp.zeros_like(lo)), axis=-1)
    last = xp.take_along_axis(s, xp.where(has, hi - 1, xp.zeros_like(hi)), axis=-1)
    keep = samples.valid & has & (samples.x >= first) & (samples.x <= last)
    return Rejection(keep, lo[:, 0], (n - hi)[:, 0], iterations, lo=lo, hi=hi)
