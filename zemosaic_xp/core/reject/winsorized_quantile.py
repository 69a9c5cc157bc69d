"""``winsorized_quantile``: ZeMosaic's legacy winsorized sigma clip (upstream_spec §2.6.2).

ZeMosaic selects it with ``wsc_impl="legacy_quantile"``.

Per pixel:

1. winsorise: clamp the valid samples to their quantiles ``[q(low), q(1 − high)]``
   (``winsor_limits``, default 5 % / 5 %, linear interpolation as NumPy's default);
2. (m, σ) = median and population std of the winsorised samples after an
   astropy-style ``sigma_clipped_stats(sigma=3, maxiters=5)`` (median centre; the 3
   and 5 are upstream's fixed values, not κ);
3. reject the *original* samples outside ``[m − κl·σ, m + κh·σ]``.

``winsor_rewinsor=True`` reproduces ZeMosaic's default of giving each rejected
sample its winsorised value instead of dropping it. We default to False because of
the weakness documented below.

Known weakness at small N (upstream_spec hazard): with N·limit < 1 the quantile
interpolates between the two most extreme samples, so winsorising barely tames a
single outlier and leaves a second untouched; robustness then rests on the inner 3σ
clip alone. With re-winsorising it is worse: a rejected outlier is put back at its
winsorised value, which is still far out (N = 8, one 5·10⁴ hit on a 1000 ADU sky
gives ≈ 4982 instead of ≈ 1000).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from ..config import StackConfig
from ..nanstats import median_sorted, quantile_sorted
from ..samples import Rejection, Samples
from ..sorted_rows import search_rows
from ._common import min_keep, range_rejection
from .kappa_sigma import kappa_sigma_ranges

__all__: list[str] = []

Array = Any

# sigma_clipped_stats parameters of upstream's inner clip (upstream_spec §2.6.2).
_INNER_SIGMA = 3.0
_INNER_ITERS = 5
# Upstream passes stacks of fewer frames through unchanged.
_MIN_FRAMES = 3


def _clipped_median_std(sw: Array, n_valid: Array, xp: Any) -> tuple[Array, Array, Array]:
    """Median and population std after astropy-style 3σ / 5-iteration clipping."""
    lo, hi, iterations = kappa_sigma_ranges(sw, n_valid, kappa_low=_INNER_SIGMA,
                                            kappa_high=_INNER_SIGMA, max_iters=_INNER_ITERS,
                                            xp=xp)
    count = hi - lo
    med = median_sorted(sw, count, xp=xp, lo=lo)[:, None]
    med = xp.where(xp.isnan(med), xp.zeros_like(med), med)
    dev = _device(sw)
    idx = xp.arange(sw.shape[-1], device=dev)[None, :]
    inside = (idx >= lo) & (idx < hi)
    zero = xp.zeros((), dtype=xp.float64, device=dev)
    d = xp.where(inside, xp.astype(sw, xp.float64) - xp.astype(med, xp.float64), zero)
    count_f = xp.astype(xp.maximum(count, xp.ones_like(count)), xp.float64)
    mean = xp.sum(d, axis=-1, keepdims=True) / count_f
    r = xp.where(inside, d - mean, zero)
    std = xp.sqrt(xp.sum(r * r, axis=-1, keepdims=True) / count_f)
    return med, xp.astype(std, sw.dtype), iterations


def _reject_winsorized_quantile(samples: Samples, config: StackConfig) -> Rejection:
    """Quantile winsorisation + sigma clip (ZeMosaic legacy); see the module docstring.

    Pixels with fewer than 3 valid samples, or whose bounds would keep fewer than
    ``min_survivors``, keep everything. ``iterations`` are those of the inner clip.

    With ``winsor_rewinsor=True`` the rejected samples are not dropped: their value in
    ``samples.x`` is replaced by the winsorised one, they stay in ``keep`` (and in
    ``coverage``), and ``n_low`` / ``n_high`` still count them, so the rejection maps
    and rejected fractions show what the clip found.
    """
    xp = samples.xp
    s, n = samples.sorted, samples.n_valid
    low_limit, high_limit = config.winsor_limits
    q_lo = quantile_sorted(s, n, low_limit, xp=xp)[:, None]
    q_hi = quantile_sorted(s, n, 1.0 - high_limit, xp=xp)[:, None]
    empty = xp.isnan(q_lo)
    q_lo = xp.where(empty, xp.zeros_like(q_lo), q_lo)
    q_hi = xp.where(empty, xp.zeros_like(q_hi), q_hi)
    inf = xp.asarray(xp.inf, dtype=s.dtype, device=_device(s))
    inside = xp.arange(s.shape[-1], device=_device(s))[None, :] < n
    # clip is monotone, so the winsorised rows stay sorted.
    sw = xp.where(inside, xp.clip(s, q_lo, q_hi), inf)
    med, std, iterations = _clipped_median_std(sw, n, xp)
    del sw
    n_valid = n[:, 0]
    zero = xp.zeros_like(n_valid)
    lo = search_rows(s, (med - config.kappa_low * std)[:, 0], zero, n_valid, xp=xp)
    hi = search_rows(s, (med + config.kappa_high * std)[:, 0], lo, n_valid, inclusive=True, xp=xp)
    ok = ((hi - lo) >= min_keep(n_valid, config, xp)) & (n_valid >= _MIN_FRAMES)
    lo = xp.where(ok, lo, zero)
    hi = xp.where(ok, hi, n_valid)
    iterations = xp.where(ok, iterations, xp.zeros_like(iterations))
    rej = range_rejection(samples, lo, hi, iterations)
    if not config.winsor_rewinsor:
        return rej
    rejected = samples.valid & ~rej.keep
    refill = xp.where(rejected, xp.clip(samples.x, q_lo, q_hi), samples.x)
    _replace_values(samples, refill)
    return Rejection(samples.valid, rej.n_low, rej.n_high, iterations)


def _replace_values(samples: Samples, x: Array) -> None:
    """Give the band new sample values (validity unchanged) for the combine to use."""
    samples.x = x
    # Load-bearing: Samples caches its sort; the values changed, so drop the cache.
    samples._sorted = None
