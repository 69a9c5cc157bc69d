"""Standard error of each combined pixel, from its weights and surviving samples.

The estimators (derived in docs/algorithms.md, "Uncertainty map"), per pixel with
``n`` survivors ``x_i`` of weights ``w_i`` (1 when unweighted), ``W = Σ w_i``,
``μ = Σ w_i x_i / W``:

- mean: ``SE² = Σ w_i² (x_i − μ)² / (W² − Σ w_i²)``. Unweighted this is ``s² / n``
  with ``s`` the sample standard deviation (``ddof=1``); weighted it is unbiased
  whenever the weights are proportional to inverse variances (any scale), and it
  stays consistent for any other weights;
- sum: ``n`` times the mean's (the sum is ``n`` times the mean);
- median: ``SE² = (π/2) · s² / (n + c)``, ``c = 0.43`` for odd ``n`` and ``1.39`` for
  even ``n`` (the exact variance of the median of ``n`` Gaussian samples within 1 %
  for ``n >= 3``; the asymptotic ``π/2 · s²/n`` is 7 % high in σ at ``n = 8``); the
  mean's ``s² / 2`` at ``n = 2``;
- κ-σ and winsorized-σ clipped means: the mean's estimator over the survivors times
  :func:`clip_variance_factor` (the survivors of a clip are a truncated sample: their
  spread understates σ, and the clip bounds follow the median);
- min and max: no estimator (NaN).

NaN where fewer than two samples survive (or the weights leave no freedom,
``W² <= Σ w²``). Everything is per pixel, so the map does not depend on the band size.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from array_api_compat import device as _device

from .config import StackConfig
from .samples import Rejection, Samples

__all__ = ["standard_error", "clip_variance_factor", "mean_variance_factor", "median_variance_factor", "CLIP_CORRECTED"]

Array = Any

#: Rejections whose survivors get the truncated-normal correction of the mean's estimator.
CLIP_CORRECTED = ("kappa_sigma", "winsorized_sigma_clip")

_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)


def _phi(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _truncated(a: float, b: float) -> tuple[float, float, float]:
    """Mass ``Z``, mean and variance of a unit Gaussian restricted to ``[−a, b]``."""
    z = _cdf(b) - _cdf(-a)
    mean = (_phi(a) - _phi(b)) / z
    var = 1.0 + (-a * _phi(a) - b * _phi(b)) / z - mean * mean
    return z, mean, var


@lru_cache(maxsize=64)
def clip_variance_factor(kappa_low: float, kappa_high: float, *, sigma_updates: int = 0) -> float:
    """Variance factor of a median-centred κ-σ clipped mean over its naive ``s² / n``.

    Parameters
    ----------
    kappa_low, kappa_high : float
        Clip bounds below / above the median, in units of the clip's σ.
    sigma_updates : int
        How many times σ is re-estimated as the standard deviation of the survivors
        themselves (``kappa_sigma``: its iterations − 1); each update shrinks σ, and the
        bounds with it (``σ_t ← sqrt(Var[x | −κl·σ_t < x < κh·σ_t])``). 0 when σ is a
        consistent estimate of the true σ (``winsorized_sigma_clip``).

    Returns
    -------
    float
        ``E[IF²] · Z / Var_t`` for Gaussian samples: the asymptotic variance of the
        clipped mean (influence function of the mean of ``[m − a, m + b]`` with
        ``m`` the median) divided by what ``s² / n_kept`` estimates (``Var_t / (n Z)``).
        1.055 at κ = 3 (1.063 with the σ of ``kappa_sigma``), 1 as κ grows.
    """
    a, b = float(kappa_low), float(kappa_high)
    scale = 1.0
    for _ in range(max(0, int(sigma_updates))):
        _, _, var = _truncated(a * scale, b * scale)
        scale = math.sqrt(var)
    a, b = a * scale, b * scale
    z, mean, var = _truncated(a, b)
    # Shift of the truncated mean per shift of the median (d/dm of E[x | m − a < x < m + b]).
    g = (b * _phi(b) + a * _phi(a) - mean * (_phi(b) - _phi(a))) / z
    # E[(x − mean) · sign(x)] over [−a, b]: ∫ |x| φ − mean · (P(0<x<b) − P(−a<x<0)).
    abs_part = (2.0 * _phi(0.0) - _phi(a) - _phi(b)) - mean * ((_cdf(b) - 0.5) - (0.5 - _cdf(-a)))
    if_sq = var / z + 2.0 * g * _SQRT_HALF_PI * abs_part / z + g * g * math.pi / 2.0
    return if_sq * z / var


def median_variance_factor(n: Array, xp: Any) -> Array:
    """``Var(median) / Var(x)`` for ``n`` Gaussian samples: ``(π/2) / (n + c)``.

    Parameters
    ----------
    n : array, float64
        Survivors per pixel.
    xp : namespace
        The array namespace of ``n``.

    Returns
    -------
    array, float64, shape of ``n``
        ``c = 0.43`` (odd ``n``) or ``1.39`` (even ``n``); ``1/2`` at ``n = 2`` (the
        median of two samples is their mean). Meaningless below 2.
    """
    odd = (n % 2.0) == 1.0
    c = xp.where(odd, xp.full_like(n, 0.43), xp.full_like(n, 1.39))
    factor = (math.pi / 2.0) / (n + c)
    return xp.where(n == 2.0, xp.full_like(n, 0.5), factor)


def mean_variance_factor(config: StackConfig) -> float:
    """The clip correction of the mean's estimator for a configuration.

    Parameters
    ----------
    config : StackConfig
        Its ``reject``, κ and iteration cap.

    Returns
    -------
    float
        :func:`clip_variance_factor` for the rejections of :data:`CLIP_CORRECTED`
        (``kappa_sigma``: σ updated ``max_iters − 1`` times), else 1.
    """
    if config.reject not in CLIP_CORRECTED:
        return 1.0
    updates = max(0, config.effective_max_iters() - 1) if config.reject == "kappa_sigma" else 0
    return clip_variance_factor(float(config.kappa_low), float(config.kappa_high), sigma_updates=updates)


def standard_error(samples: Samples, rej: Rejection, config: StackConfig, image: Array,
                   coverage: Array) -> Array:
    """Standard error of each pixel's combined value, from its surviving samples.

    Parameters
    ----------
    samples : Samples
        The band's ``(P, N)`` values and weights (after rejection: with
        ``winsor_rewinsor`` the clamped values).
    rej : Rejection
        The survivors (:func:`~.reject.reject` on the same ``samples``).
    config : StackConfig
        Its ``combine`` picks the estimator, its ``reject`` and κ the clip correction.
    image : array, shape (P,), float32
        The combined values (:func:`~.combine.combine`): the shift of the float64
        sums (any value near the survivors would do; NaN counts as 0).
    coverage : array, shape (P,), int
        Survivors per pixel, from the same combine.

    Returns
    -------
    array, shape (P,), float32
        Standard error in the samples' units (1σ); NaN where fewer than two samples
        survived, where the weights leave no degree of freedom, and for the ``min``
        and ``max`` combines. On the device of ``samples``.

    Notes
    -----
    Sums are float64 over ``d = x − c`` (``c`` the shift): ``Σ(x − μ)² = Σd² − (Σd)²/n``
    unweighted; weighted, ``d`` is first re-centred on the weighted mean. About four
    passes over the band's samples (six weighted).
    """
    xp = samples.xp
    dev = _device(samples.x)
    p = samples.n_pixels
    if config.combine not in ("mean", "sum", "median"):
        return xp.full((p,), xp.nan, dtype=samples.x.dtype, device=dev)
    shift = xp.where(xp.isfinite(image), image, xp.zeros_like(image))
    if config.combine == "sum":  # the sum is n times the mean: shift by the mean
        shift = shift / xp.astype(xp.where(coverage > 0, coverage, xp.ones_like(coverage)), shift.dtype)
    if samples.weights is None and rej.lo is not None and rej.hi is not None:
        # Unweighted range rejection: the survivors are [lo, hi) of the sorted rows.
        vals = samples.sorted
        idx = xp.arange(samples.n_frames, dtype=rej.lo.dtype, device=dev)[None, :]
        mask = (idx >= rej.lo) & (idx < rej.hi)
    else:
        vals = samples.x
        mask = rej.keep
    # Excluded samples become the shift itself: exact zeros once shifted.
    c64 = xp.astype(shift, xp.float64)[:, None]
    d = xp.astype(xp.where(mask, vals, shift[:, None]), xp.float64) - c64
    n = xp.astype(coverage, xp.float64)
    if samples.weights is not None and config.combine != "median":
        zero = xp.zeros((), dtype=samples.x.dtype, device=dev)
        w = xp.astype(xp.where(mask, samples.full_weights(), zero), xp.float64)
        big_w = xp.sum(w, axis=-1)
        w_sq = xp.vecdot(w, w)
        # Re-centre on the weighted mean μ = c + Σ w·d / W (excluded samples stay 0: w = 0).
        d = w * (d - (xp.vecdot(w, d) / xp.where(big_w > 0, big_w, xp.ones_like(big_w)))[:, None])
        ss = xp.vecdot(d, d)
    else:
        big_w, w_sq = n, n
        s1 = xp.sum(d, axis=-1)
        ss = xp.vecdot(d, d) - s1 * s1 / xp.where(n > 0, n, xp.ones_like(n))
        ss = xp.where(ss > 0, ss, xp.zeros_like(ss))
    dof = big_w * big_w - w_sq
    ok = (n >= 2.0) & (dof > 0)
    var = ss / xp.where(ok, dof, xp.ones_like(dof))  # the mean's variance
    if config.combine == "median":
        # s² = n · var (unweighted: dof = n (n − 1)).
        var = n * var * median_variance_factor(n, xp)
    else:
        var = var * mean_variance_factor(config)
    if config.combine == "sum":
        var = var * n * n
    se = xp.where(ok, xp.sqrt(var), xp.asarray(xp.nan, dtype=xp.float64, device=dev))
    return xp.astype(se, samples.x.dtype)
