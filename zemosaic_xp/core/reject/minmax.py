"""``minmax``: clip extrema, dropping a fixed number of the lowest and highest samples.

Works on the band's sorted samples (``Samples.sorted``) and keeps a contiguous range of
them per pixel. See :mod:`zemosaic_xp.core.reject` for the contract every rejection
shares and ``docs/algorithms.md`` for how it differs from ccdproc and IRAF.
"""

from __future__ import annotations

from ..config import StackConfig
from ..samples import Rejection, Samples
from ._common import exact_range_rejection, min_keep

__all__: list[str] = []


def _reject_minmax(samples: Samples, config: StackConfig) -> Rejection:
    """Clip extrema: drop the ``minmax_low`` lowest and ``minmax_high`` highest samples.

    Counts apply to the pixel's *valid* samples (IRAF-like; ccdproc counts masked
    ones too). Defaults 1 / 1. A pixel where the drops would leave fewer than
    ``min_survivors`` keeps every sample (never a partial drop, which would have to
    guess which end is bad). Ties are broken by frame index, so exactly the stated
    number of samples is dropped and counted.
    """
    xp = samples.xp
    n = samples.n_valid[:, 0]
    lo = xp.minimum(xp.full_like(n, config.minmax_low), n)
    hi = n - config.minmax_high
    need = min_keep(n, config, xp)
    ok = (hi - lo) >= need
    zero = xp.zeros_like(n)
    # One pass: 1 iteration where the pixel drops anything, else 0.
    can = ok & ((lo > 0) | (hi < n))
    return exact_range_rejection(samples, xp.where(ok, lo, zero), xp.where(ok, hi, n),
                                 xp.astype(can, xp.int64))
