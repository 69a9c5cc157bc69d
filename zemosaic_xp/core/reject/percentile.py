"""``percentile``: Siril's percentile clipping, one pass, thresholds relative to the median.

Works on the band's sorted samples (``Samples.sorted``) and keeps a contiguous range of
them per pixel. See :mod:`zemosaic_xp.core.reject` for the contract every rejection
shares and ``docs/algorithms.md`` for how it differs from Siril.
"""

from __future__ import annotations

from ..config import StackConfig
from ..nanstats import median_sorted
from ..samples import Rejection, Samples
from ..sorted_rows import search_rows
from ._common import min_keep, range_rejection

__all__: list[str] = []


def _reject_percentile(samples: Samples, config: StackConfig) -> Rejection:
    """Siril percentile clipping: one pass, thresholds relative to the median.

    With m the median of the pixel's valid samples, drop x where
    ``(m − x) > percentile_low·|m|`` (low) or ``(x − m) > percentile_high·|m|``
    (high); defaults 0.2 / 0.1 (Siril's). If fewer than ``min_survivors`` would remain
    the pixel keeps every sample. Siril uses m, not |m|; with |m| the test stays
    meaningful on data with a negative median. Meant for few frames (Siril: ≤ 6) and
    positive, un-normalised levels: with m ≈ 0 (background-subtracted data) every
    sample but those equal to m would go.
    """
    xp = samples.xp
    s, n = samples.sorted, samples.n_valid[:, 0]
    m = median_sorted(s, samples.n_valid, xp=xp)
    m = xp.where(xp.isnan(m), xp.zeros_like(m), m)
    lower = m - config.percentile_low * xp.abs(m)
    upper = m + config.percentile_high * xp.abs(m)
    zero = xp.zeros_like(n)
    lo = search_rows(s, lower, zero, n, xp=xp)
    hi = search_rows(s, upper, lo, n, inclusive=True, xp=xp)
    need = min_keep(n, config, xp)
    ok = (hi - lo) >= need
    # One pass: 1 iteration where the pixel could reject at all, else 0.
    return range_rejection(samples, xp.where(ok, lo, zero), xp.where(ok, hi, n),
                           xp.astype(n > need, xp.int64))
