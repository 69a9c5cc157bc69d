"""``gesd``: Rosner's generalized extreme studentized deviate test, per pixel.

Works on the band's sorted samples (``Samples.sorted``): each ESD step removes one end
of a contiguous range, so the mean and std of the range come from prefix sums and no
step touches the samples. The critical values come from :mod:`.gesd_table`. See
:mod:`zemosaic_xp.core.reject` for the contract every rejection shares and
``docs/algorithms.md`` for how it differs from Siril and PixInsight.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device as _device

from ..config import StackConfig
from ..nanstats import median_sorted
from ..samples import Rejection, Samples
from ..sorted_rows import centred_prefix_sums, range_sum, take_rows
from ._common import exact_range_rejection, min_keep
from .gesd_table import gesd_critical_values

__all__: list[str] = []

Array = Any

# floor(f·n) of the ESD step count, robust to f·n landing a hair below an integer.
_FLOOR_SLACK = 1e-9


def _critical_table(n_frames: int, alpha: float, xp: Any, dev: Any) -> Array:
    values = gesd_critical_values(n_frames, float(alpha))
    return xp.asarray(values, dtype=xp.float64, device=dev)


def _reject_gesd(samples: Samples, config: StackConfig) -> Rejection:
    """Rosner's generalized extreme studentized deviate test, per pixel.

    For i = 1 … r, on the n_i samples still in: R_i = max|x − x̄| / s (s the sample
    std, ddof 1; the extreme is an end of the sorted range) and the critical value
    λ_i = (n_i − 1)·t / sqrt(n_i·(n_i − 2 + t²)), t = Student-t quantile of
    1 − α/(2 n_i) with n_i − 2 degrees of freedom; the extreme is then removed. The
    outliers are the first k removals, k the largest i with R_i > λ_i. Parameters:
    r = floor(``gesd_outlier_fraction`` · n_valid) (default 0.3) and α =
    ``gesd_alpha`` (default 0.05). r is further capped so that at least
    max(min_survivors, 2) samples remain. A removal is "low" when it came from the
    bottom of the range. Ties between the two ends remove the high one.

    Differs from Siril: r counts the pixel's valid samples, not the stack size, and λ
    comes from exact t quantiles (``gesd_table``) rather than a per-size table.
    ``max_iters`` does not apply.
    """
    xp = samples.xp
    dev = _device(samples.x)
    s, n = samples.sorted, samples.n_valid[:, 0]
    frac = config.gesd_outlier_fraction
    floor_keep = xp.maximum(min_keep(n, config, xp), xp.full_like(n, 2))
    r_frac = xp.astype(xp.floor(frac * xp.astype(n, xp.float64) + _FLOOR_SLACK), xp.int64)
    r_pix = xp.maximum(xp.minimum(r_frac, n - floor_keep), xp.zeros_like(n))
    n_frames = samples.n_frames
    r_max = min(int(math.floor(frac * n_frames + _FLOOR_SLACK)), max(n_frames - 2, 0))
    lam = _critical_table(n_frames, config.gesd_alpha, xp, dev)
    c = median_sorted(s, samples.n_valid, xp=xp)
    c = xp.where(xp.isnan(c), xp.zeros_like(c), c)
    m0 = xp.astype(c, xp.float64)
    f1, f2 = centred_prefix_sums(s, c, n, xp=xp, ops=samples.ops)
    lo, hi = xp.zeros_like(n), n
    best_lo, best_hi = lo, hi
    iterations = xp.zeros((samples.n_pixels,), dtype=xp.int64, device=dev)
    for i in range(r_max):
        active = i < r_pix
        if not bool(xp.any(active)):
            break
        count = hi - lo
        sum1, sum2 = range_sum(f1, lo, hi, xp=xp), range_sum(f2, lo, hi, xp=xp)
        count_f = xp.astype(xp.maximum(count, xp.ones_like(count)), xp.float64)
        mean = sum1 / count_f
        dof = xp.astype(xp.maximum(count - 1, xp.ones_like(count)), xp.float64)
        sd = xp.sqrt(xp.maximum((sum2 - sum1 * mean) / dof, xp.zeros_like(mean)))
        has = (count > 0)
        first = xp.where(has, xp.astype(take_rows(s, lo, xp=xp, clip=True), xp.float64) - m0, mean)
        last = xp.where(has, xp.astype(take_rows(s, hi - 1, xp=xp, clip=True), xp.float64) - m0, mean)
        d_low, d_high = mean - first, last - mean
        take_high = d_high >= d_low
        ratio = xp.maximum(d_low, d_high) / xp.where(sd > 0, sd, xp.ones_like(sd))
        ratio = xp.where(sd > 0, ratio, xp.zeros_like(ratio))
        significant = active & (ratio > xp.take(lam, count))
        lo = xp.where(active & ~take_high, lo + 1, lo)
        hi = xp.where(active & take_high, hi - 1, hi)
        best_lo = xp.where(significant, lo, best_lo)
        best_hi = xp.where(significant, hi, best_hi)
        iterations = xp.where(active, iterations + 1, iterations)
    return exact_range_rejection(samples, best_lo, best_hi, iterations)
