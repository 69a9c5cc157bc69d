"""Sigma-based rejections: iterative κ-σ (median centre) and PixInsight/Huber WSC.

Both converge per pixel. See :mod:`.reject` for the shared contract.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from .config import StackConfig
from .nanstats import MAD_TO_SIGMA, count_less, median_sorted, sort_valid
from .reject_common import min_keep, range_rejection
from .samples import Rejection, Samples

__all__ = ["kappa_sigma_ranges", "reject_kappa_sigma", "reject_winsorized_sigma_clip"]

Array = Any

# Huber/PixInsight WSC: absolute floor of σ (upstream_spec §2.6.1) and the relative
# tolerance of its "m and σ stopped moving" test.
_WSC_SIGMA_FLOOR = 1e-10
_WSC_TOLERANCE = 5e-4


def kappa_sigma_ranges(s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                       max_iters: int, ddof: int = 0, min_survivors: int = 1,
                       xp: Any) -> tuple[Array, Array, Array]:
    """Iterative median-centred κ-σ clipping on rows that are already sorted.

    Each iteration takes centre c = median and scale σ = std (``ddof``) of the kept
    samples, then keeps ``c − κl·σ <= x <= c + κh·σ`` among them (the kept set only
    shrinks, as in astropy's ``sigma_clip``), until it stops changing or ``max_iters``.
    Survivors of a value clip are a contiguous range of the sorted row, so each
    iteration costs two prefix-sum lookups and two binary searches, not a pass over N.

    Parameters
    ----------
    s : array, shape (R, N)
        Rows sorted ascending, invalid samples last (see ``nanstats.sort_valid``).
    n_valid : array, shape (R, 1), int64
    kappa_low, kappa_high : float
    max_iters : int
    ddof : int
        0 = population std (astropy ``stdfunc="std"``), 1 = sample std.
    min_survivors : int
        A row never goes below ``min(min_survivors, n_valid)`` kept samples.

    Returns
    -------
    lo, hi : array, shape (R, 1), int64
        Kept range ``[lo, hi)`` of each sorted row.
    iterations : array, shape (R,), int64
        Iterations run per row (0 for rows that cannot reject).
    """
    dev = _device(s)
    n_samples = s.shape[-1]
    lo = xp.zeros_like(n_valid)
    hi = n_valid
    need = xp.minimum(n_valid, xp.full_like(n_valid, min_survivors))
    # Centre the prefix sums on the initial median so float64 keeps every digit of
    # the variance, even for CCD counts with a large pedestal.
    m0 = median_sorted(s, n_valid, xp=xp)[:, None]
    m0 = xp.where(xp.isnan(m0), xp.zeros_like(m0), m0)
    inside = xp.arange(n_samples, device=dev)[None, :] < n_valid
    d = xp.where(inside, xp.astype(s - m0, xp.float64), xp.zeros((), dtype=xp.float64, device=dev))
    s1 = xp.cumulative_sum(d, axis=-1, include_initial=True)
    s2 = xp.cumulative_sum(d * d, axis=-1, include_initial=True)
    del d
    iterations = xp.zeros((s.shape[0],), dtype=xp.int64, device=dev)
    active = (n_valid > need)[:, 0]
    for _ in range(max_iters):
        count = hi - lo
        centre = median_sorted(s, count, xp=xp, lo=lo)[:, None]
        sum1 = xp.take_along_axis(s1, hi, axis=-1) - xp.take_along_axis(s1, lo, axis=-1)
        sum2 = xp.take_along_axis(s2, hi, axis=-1) - xp.take_along_axis(s2, lo, axis=-1)
        count_f = xp.astype(xp.where(count > 0, count, xp.ones_like(count)), xp.float64)
        dof = xp.where(count - ddof > 0, count - ddof, xp.ones_like(count))
        var = (sum2 - sum1 * sum1 / count_f) / xp.astype(dof, xp.float64)
        sigma = xp.astype(xp.sqrt(xp.maximum(var, xp.zeros_like(var))), s.dtype)
        lower = centre - kappa_low * sigma
        upper = centre + kappa_high * sigma
        new_lo = count_less(s, lower, lo, hi, xp=xp)
        new_hi = count_less(s, upper, new_lo, hi, inclusive=True, xp=xp)
        allowed = (new_hi - new_lo) >= need
        changed = (((new_lo != lo) | (new_hi != hi)) & allowed)[:, 0] & active
        iterations = xp.where(active, iterations + 1, iterations)
        lo = xp.where(changed[:, None], new_lo, lo)
        hi = xp.where(changed[:, None], new_hi, hi)
        active = changed
        if not bool(xp.any(active)):
            break
    return lo, hi, iterations


def reject_kappa_sigma(samples: Samples, config: StackConfig) -> Rejection:
    """Median-centred iterative κ-σ clipping (astropy ``sigma_clip`` semantics).

    Centre = median, scale = std (``config.sigma_ddof``, default 0 like astropy) of the
    kept set; drop ``x < c − κl·σ`` or ``x > c + κh·σ``; repeat until nothing changes
    or ``max_iters`` (default 5; 1 = upstream's single pass).
    """
    xp = samples.xp
    lo, hi, iterations = kappa_sigma_ranges(
        samples.sorted, samples.n_valid, kappa_low=config.kappa_low,
        kappa_high=config.kappa_high, max_iters=config.effective_max_iters(),
        ddof=config.sigma_ddof, min_survivors=config.min_survivors, xp=xp)
    return range_rejection(samples, lo, hi, iterations)


def reject_winsorized_sigma_clip(samples: Samples, config: StackConfig) -> Rejection:
    """PixInsight / Huber winsorised sigma clipping, converging per pixel.

    Start from m = median, σ = 1.4826·MAD. Each iteration clamps the samples to
    ``[m − κl·σ, m + κh·σ]``, sets m to the (weighted) mean of the clamped values and σ
    to the Huber scale ``sqrt(Σ h·w·r² / Σ h·w)`` of the residuals r (h = 1 for
    ``|r|/σ <= c``, else ``c·σ/|r|``; c = max(κl, κh)). A pixel stops when its clamp
    bounds repeat, or when m and σ move by less than 5e-4·max(1, |value|); at most
    ``max_iters`` (default 10). Samples outside the final ``[m − κl·σ, m + κh·σ]`` are
    rejected; pixels with fewer than 2 valid samples keep everything.

    Differs from ZeMosaic: convergence is decided per pixel, not for the whole block
    (so bands never change the result), and the winsorised estimate only decides the
    rejection: the combine then averages the surviving original samples.
    """
    xp = samples.xp
    dev = _device(samples.x)
    f64 = xp.float64
    valid, n = samples.valid, samples.n_valid
    x64 = xp.astype(xp.where(valid, samples.x, xp.zeros_like(samples.x)), f64)
    w = xp.astype(samples.full_weights(), f64)
    sw = xp.sum(w, axis=-1, keepdims=True)
    sw_safe = xp.where(sw > 0, sw, xp.ones_like(sw))
    s = samples.sorted
    m = xp.astype(median_sorted(s, n, xp=xp), f64)[:, None]
    m = xp.where(xp.isnan(m), xp.zeros_like(m), m)
    nan = xp.asarray(xp.nan, dtype=samples.x.dtype, device=dev)
    abs_dev = xp.where(valid, xp.abs(samples.x - xp.astype(m, samples.x.dtype)), nan)
    sd, nd = sort_valid(abs_dev, xp=xp)
    del abs_dev
    mad = xp.astype(median_sorted(sd, nd, xp=xp), f64)[:, None]
    del sd
    floor = xp.asarray(_WSC_SIGMA_FLOOR, dtype=f64, device=dev)
    sigma = xp.where(mad > 0, MAD_TO_SIGMA * mad, floor)
    huber_c = max(config.kappa_low, config.kappa_high)
    done = (n < 2)[:, 0]
    iterations = xp.zeros((samples.n_pixels,), dtype=xp.int64, device=dev)
    prev_lo = prev_hi = None
    for _ in range(config.effective_max_iters()):
        lo_b = m - config.kappa_low * sigma
        hi_b = m + config.kappa_high * sigma
        xw = xp.clip(x64, lo_b, hi_b)
        m_new = xp.sum(w * xw, axis=-1, keepdims=True) / sw_safe
        r = xp.where(valid, xw - m_new, xp.zeros_like(xw))
        u = xp.abs(r) / sigma
        huber = xp.where(u <= huber_c, xp.ones_like(u), huber_c / xp.where(u > 0, u, xp.ones_like(u)))
        hw = huber * w
        den = xp.sum(hw, axis=-1, keepdims=True)
        var = xp.sum(hw * r * r, axis=-1, keepdims=True) / xp.where(den > 0, den, xp.ones_like(den))
        sigma_new = xp.sqrt(var)
        sigma_new = xp.where(sigma_new > 0, sigma_new, floor)
        update = ~done
        iterations = xp.where(update, iterations + 1, iterations)
        stop = (xp.abs(m_new - m) <= _WSC_TOLERANCE * xp.maximum(xp.abs(m), xp.ones_like(m))) & (
            xp.abs(sigma_new - sigma) <= _WSC_TOLERANCE * xp.maximum(sigma, xp.ones_like(sigma)))
        if prev_lo is not None:
            stop = stop | ((lo_b == prev_lo) & (hi_b == prev_hi))
        m = xp.where(update[:, None], m_new, m)
        sigma = xp.where(update[:, None], sigma_new, sigma)
        prev_lo, prev_hi = lo_b, hi_b
        done = done | stop[:, 0]
        if bool(xp.all(done)):
            break
    lower = xp.astype(m - config.kappa_low * sigma, samples.x.dtype)
    upper = xp.astype(m + config.kappa_high * sigma, samples.x.dtype)
    below = valid & (samples.x < lower)
    above = valid & (samples.x > upper)
    keep = valid & ~below & ~above
    n_keep = xp.sum(xp.astype(keep, xp.int64), axis=-1, keepdims=True)
    # Guard: a pixel with fewer than 2 valid samples, or whose bounds would leave too
    # few survivors, keeps every valid sample.
    fallback = (n < 2) | (n_keep < min_keep(n, config, xp))
    keep = xp.where(fallback, valid, keep)
    n_low = xp.where(fallback, xp.zeros_like(n), xp.sum(xp.astype(below, xp.int64), axis=-1, keepdims=True))
    n_high = xp.where(fallback, xp.zeros_like(n), xp.sum(xp.astype(above, xp.int64), axis=-1, keepdims=True))
    return Rejection(keep, n_low[:, 0], n_high[:, 0], iterations)
