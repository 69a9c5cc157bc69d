"""Order-statistic rejections: Siril percentile clipping, min/max (clip extrema), Rosner GESD.

All three work on the band's sorted samples (``Samples.sorted``) and keep a contiguous
range of them per pixel. See :mod:`.reject` for the shared contract (per-pixel,
NaN-aware, at least ``min(min_survivors, n_valid)`` survivors) and
``docs/algorithms.md`` for how each differs from ZeMosaic / Siril / PixInsight.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device as _device

from .config import StackConfig
from .gesd_table import gesd_critical_values
from .nanstats import count_less, median_sorted
from .reject_common import min_keep, range_rejection
from .reject_tools import (centred_prefix_sums, exact_range_rejection, one_pass_iterations,
                           range_sums, take)
from .samples import Rejection, Samples

__all__ = ["reject_percentile", "reject_minmax", "reject_gesd"]

Array = Any

# floor(f·n) of the ESD step count, robust to f·n landing a hair below an integer.
_FLOOR_SLACK = 1e-9


def reject_percentile(samples: Samples, config: StackConfig) -> Rejection:
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
    s, n = samples.sorted, samples.n_valid
    m = median_sorted(s, n, xp=xp)[:, None]
    m = xp.where(xp.isnan(m), xp.zeros_like(m), m)
    lower = m - config.percentile_low * xp.abs(m)
    upper = m + config.percentile_high * xp.abs(m)
    zero = xp.zeros_like(n)
    lo = count_less(s, lower, zero, n, xp=xp)
    hi = count_less(s, upper, lo, n, inclusive=True, xp=xp)
    need = min_keep(n, config, xp)
    ok = (hi - lo) >= need
    return range_rejection(samples, xp.where(ok, lo, zero), xp.where(ok, hi, n),
                           one_pass_iterations(n > need, xp))


def reject_minmax(samples: Samples, config: StackConfig) -> Rejection:
    """Clip extrema: drop the ``minmax_low`` lowest and ``minmax_high`` highest samples.

    Counts apply to the pixel's *valid* samples (IRAF-like; ccdproc counts masked
    ones too). Defaults 1 / 1. A pixel where the drops would leave fewer than
    ``min_survivors`` keeps every sample (never a partial drop, which would have to
    guess which end is bad). Ties are broken by frame index, so exactly the stated
    number of samples is dropped and counted.
    """
    xp = samples.xp
    n = samples.n_valid
    lo = xp.minimum(xp.full_like(n, config.minmax_low), n)
    hi = n - config.minmax_high
    need = min_keep(n, config, xp)
    ok = (hi - lo) >= need
    zero = xp.zeros_like(n)
    can = ok & ((lo > 0) | (hi < n))
    return exact_range_rejection(samples, xp.where(ok, lo, zero), xp.where(ok, hi, n),
                                 one_pass_iterations(can, xp))


def _critical_table(n_frames: int, alpha: float, xp: Any, dev: Any) -> Array:
    values = gesd_critical_values(n_frames, float(alpha))
    return xp.asarray(values, dtype=xp.float64, device=dev)


def reject_gesd(samples: Samples, config: StackConfig) -> Rejection:
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
    s, n = samples.sorted, samples.n_valid
    frac = config.gesd_outlier_fraction
    floor_keep = xp.maximum(min_keep(n, config, xp), xp.full_like(n, 2))
    r_frac = xp.astype(xp.floor(frac * xp.astype(n, xp.float64) + _FLOOR_SLACK), xp.int64)
    r_pix = xp.maximum(xp.minimum(r_frac, n - floor_keep), xp.zeros_like(n))[:, 0]
    n_frames = samples.n_frames
    r_max = min(int(math.floor(frac * n_frames + _FLOOR_SLACK)), max(n_frames - 2, 0))
    lam = _critical_table(n_frames, config.gesd_alpha, xp, dev)
    m0, s1, s2 = centred_prefix_sums(s, n, xp)
    lo, hi = xp.zeros_like(n), n
    best_lo, best_hi = lo, hi
    iterations = xp.zeros((samples.n_pixels,), dtype=xp.int64, device=dev)
    for i in range(r_max):
        active = i < r_pix
        if not bool(xp.any(active)):
            break
        count = hi - lo
        sum1, sum2 = range_sums(s1, s2, lo, hi, xp)
        count_f = xp.astype(xp.maximum(count, xp.ones_like(count)), xp.float64)
        mean = sum1 / count_f
        dof = xp.astype(xp.maximum(count - 1, xp.ones_like(count)), xp.float64)
        sd = xp.sqrt(xp.maximum((sum2 - sum1 * mean) / dof, xp.zeros_like(mean)))
        has = (count > 0)
        first = xp.where(has, xp.astype(take(s, lo, xp), xp.float64) - m0, mean)
        last = xp.where(has, xp.astype(take(s, hi - 1, xp), xp.float64) - m0, mean)
        d_low, d_high = mean - first, last - mean
        take_high = d_high >= d_low
        ratio = xp.maximum(d_low, d_high) / xp.where(sd > 0, sd, xp.ones_like(sd))
        ratio = xp.where(sd > 0, ratio, xp.zeros_like(ratio))
        significant = active & (ratio[:, 0] > xp.take(lam, count[:, 0]))
        step = active[:, None]
        lo = xp.where(step & ~take_high, lo + 1, lo)
        hi = xp.where(step & take_high, hi - 1, hi)
        best_lo = xp.where(significant[:, None], lo, best_lo)
        best_hi = xp.where(significant[:, None], hi, best_hi)
        iterations = xp.where(active, iterations + 1, iterations)
    return exact_range_rejection(samples, best_lo, best_hi, iterations)
