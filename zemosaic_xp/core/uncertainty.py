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
import warnings
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


class _Band:
    """What every chunk of :func:`standard_error` reads, sliced by rows."""

    def __init__(self, samples: Samples, rej: Rejection, config: StackConfig, image: Array,
                 coverage: Array) -> None:
        xp = samples.xp
        self.xp = xp
        self.x = samples.x
        self.coverage = coverage
        self.median = config.combine == "median"
        self.sum = config.combine == "sum"
        self.factor = 1.0 if self.median else mean_variance_factor(config)
        self.weighted = samples.weights is not None and not self.median
        shift = xp.where(xp.isfinite(image), image, xp.zeros_like(image))
        if self.sum:  # the sum is n times the mean: shift by the mean
            shift = shift / xp.astype(xp.where(coverage > 0, coverage, xp.ones_like(coverage)), shift.dtype)
        self.shift = shift
        # The rejection's (or the combine's) own float64 sums over the kept samples.
        known = not self.weighted and rej.kept_sum is not None and rej.centre is not None
        self.kept_sum = rej.kept_sum if known else None
        self.kept_sq = rej.kept_sq if known else None
        self.centre = rej.centre if known else None
        nf = int(self.x.shape[-1])
        # The keep mask matters only where a pixel lost a sample (NaN or rejected).
        needs_mask = not bool(xp.all(coverage == nf))
        self.keep = rej.keep if needs_mask and self.kept_sq is None else None
        self.weights = self.w_sum = self.wx_sum = None
        known_w = getattr(rej, "weighted_sums", None) if self.weighted else None
        if known_w is not None:
            # The mean combine's survivor weights (0 where excluded) and float64 sums.
            self.weights, self.wx_sum, self.w_sum = known_w
        elif self.weighted:
            # Every sample kept: the weights as they are (no copy); else 0 on invalid ones.
            self.weights = samples.full_weights() if needs_mask else xp.broadcast_to(samples.weights, self.x.shape)
        # Unweighted, everything after the sums depends on n alone: tables over n = 0 … N,
        # gathered (1/n, and the estimator's SE² / Σ(x − μ)², NaN below two samples).
        self.inv_n = self.scale = None
        if not self.weighted:
            counts = xp.arange(nf + 1, dtype=xp.float64, device=_device(self.x))
            n2 = xp.where(counts >= 2.0, counts, xp.full_like(counts, 2.0))
            if self.median:
                per_ss = median_variance_factor(n2, xp) / (n2 - 1.0)
            elif self.sum:
                per_ss = self.factor * n2 / (n2 - 1.0)  # n² · factor / (n (n − 1))
            else:
                per_ss = self.factor / (n2 * (n2 - 1.0))
            self.inv_n = 1.0 / n2
            self.scale = xp.where(counts >= 2.0, per_ss, xp.full_like(per_ss, xp.nan))
        # Every pixel of the band with all N samples (no hole, nothing rejected): the
        # tables' last entries as scalars, no gather per pixel.
        self.full = None
        if self.inv_n is not None and not needs_mask:
            self.full = (float(self.inv_n[nf]), float(self.scale[nf]))


#: Largest float32 (the sums of squares must stay below it) and the smallest deviation
#: whose square keeps full float32 precision (far above the normal minimum, 1.2e-38).
_F32_MAX = 3.4028234663852886e38
_F32_SMALL = 2.0**-50


def _float32_ok(xp: Any, d: Array, w: Array | None) -> bool:
    """Whether float32 sums of ``d²`` (and ``w²d²``, ``w²``) neither overflow nor underflow.

    Bounds the products by the chunk's extremes: ``max|d|`` (and ``max w``) must keep
    ``N`` squares below float32's maximum, and non-zero ones above ``2⁻⁵⁰``. Otherwise
    the chunk's sums run in float64 (data near the float32 range, or tiny values such as
    flux densities in cgs units).
    """
    nf = int(d.shape[-1])
    hi = math.sqrt(_F32_MAX / (4.0 * nf))
    top = max(float(xp.max(d)), -float(xp.min(d)))
    low = top
    if w is not None:
        w_top = float(xp.max(w))
        top = max(w_top, w_top * top)
        low = min(w_top, w_top * low) if low > 0 else w_top
    return top <= hi and (low == 0.0 or low >= _F32_SMALL)


def _squares_ok(xp: Any, s2: Array, d: Array) -> bool:
    """Whether the float32 ``s2 = Σd²`` of each row is as good as :func:`_float32_ok` asks.

    Read from the sums, one value per row, not from the deviations: no square
    overflowed when every sum is finite (the terms are >= 0), and the largest ``|d|``
    is at least ``2⁻⁵⁰`` when the largest sum is at least ``N·2⁻¹⁰⁰`` (a row's sum is at
    most ``N`` times its largest square). Below that (tiny deviations, or all zero:
    then checked on ``d``), the caller sums in float64.
    """
    top = float(xp.max(s2)) if s2.shape[0] else 0.0
    if not top < math.inf:
        return False
    if top == 0.0:
        return not bool(xp.any(d != 0))
    return top >= int(d.shape[-1]) * 2.0**-100


def _chunk_error(b: _Band, r0: int, r1: int) -> Array:
    """Standard error of rows ``[r0, r1)`` (see :func:`standard_error`), float32."""
    xp = b.xp
    x = b.x[r0:r1, :]
    shift = b.shift[r0:r1]
    zero = xp.zeros((), dtype=x.dtype, device=_device(x))
    if not b.weighted:
        return _unweighted_error(b, r0, r1, x, shift, zero)
    n = xp.astype(b.coverage[r0:r1], xp.float64)
    d = x - shift[:, None]
    w = b.weights[r0:r1, :]
    if b.keep is not None:
        keep = b.keep[r0:r1, :]
        d = xp.where(keep, d, zero)
        if b.w_sum is None:
            w = xp.where(keep, w, zero)
    if not _float32_ok(xp, d, w):
        d, w = xp.astype(d, xp.float64), xp.astype(w, xp.float64)
    wd = w * d
    f64 = xp.float64
    w_sq, s_w2d = xp.astype(xp.vecdot(w, w), f64), xp.astype(xp.vecdot(wd, w), f64)
    if b.w_sum is not None:
        # Σw·d = Σw·x − c·Σw from the combine's float64 sums.
        big_w = b.w_sum[r0:r1]
        s_wd = b.wx_sum[r0:r1] - xp.astype(shift, f64) * big_w
    else:
        ones = xp.ones_like(x[:1, :])
        big_w, s_wd = xp.astype(xp.vecdot(w, ones), f64), xp.astype(xp.vecdot(wd, ones), f64)
    # Σw²(x − μ)² about the weighted mean μ = c + δ, δ = Σw·d / W.
    delta = s_wd / xp.where(big_w > 0, big_w, xp.ones_like(big_w))
    ss = xp.astype(xp.vecdot(wd, wd), f64) - delta * (2.0 * s_w2d - delta * w_sq)
    ss = xp.where(ss > 0, ss, xp.zeros_like(ss))
    dof = big_w * big_w - w_sq
    ok = (n >= 2.0) & (dof > 0)
    var = ss / xp.where(ok, dof, xp.ones_like(dof))  # the weighted mean's variance
    if b.factor != 1.0:
        var = var * b.factor
    if b.sum:
        var = var * n * n
    se = xp.where(ok, xp.sqrt(var), xp.full_like(var, xp.nan))
    return xp.astype(se, x.dtype)


def _unweighted_error(b: _Band, r0: int, r1: int, x: Array, shift: Array, zero: Array) -> Array:
    """Unweighted standard error of rows ``[r0, r1)``: ``Σd``, ``Σd²``, then the tables over n."""
    xp = b.xp
    if b.kept_sq is not None:
        # Σd² − (Σd)²/n does not depend on the centre: the rejection's own sums.
        s1, s2 = b.kept_sum[r0:r1], b.kept_sq[r0:r1]
    else:
        d = x - shift[:, None]
        if b.keep is not None:
            d = xp.where(b.keep[r0:r1, :], d, zero)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an overflow to inf: redone in float64
            s2 = xp.vecdot(d, d)
        if d.dtype == xp.float32 and not _squares_ok(xp, s2, d):
            d = xp.astype(d, xp.float64)
            s2 = xp.vecdot(d, d)
        s2 = xp.astype(s2, xp.float64)
        if b.kept_sum is not None:
            # Σ(x − shift) = Σ(x − centre) − n·(shift − centre), in float64.
            moved = xp.astype(shift, xp.float64) - xp.astype(b.centre[r0:r1], xp.float64)
            s1 = b.kept_sum[r0:r1] - xp.astype(b.coverage[r0:r1], xp.float64) * moved
        else:
            # A vecdot with ones, not a BLAS matrix-vector product (~3x faster on NumPy, but
            # its order of summation depends on the rows around: the map on the chunking).
            s1 = xp.astype(xp.vecdot(d, xp.ones_like(d[:1, :])), xp.float64)
    # s² = (Σd² − (Σd)²/n) / (n − 1), clamped at 0 against rounding, times the
    # estimator's factor: both from the tables (NaN below two samples).
    if b.full is not None:
        inv_n, scale = b.full
    else:
        n = xp.astype(b.coverage[r0:r1], xp.int64)
        inv_n, scale = xp.take(b.inv_n, n), xp.take(b.scale, n)
    ss = s2 - s1 * s1 * inv_n
    se = xp.sqrt(xp.where(ss > 0, ss, xp.zeros_like(ss)) * scale)
    return xp.astype(se, x.dtype)


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
    Unweighted, ``Σ(x − μ)² = Σd² − (Σd)²/n`` with ``d = x − c``:

    - a rejection that kept float64 ``Σd`` and ``Σd²`` of its kept range (``kappa_sigma``
      and ``winsorized_sigma_clip``: ``Rejection.kept_sum`` / ``kept_sq``, ``c`` the
      median) costs no pass over the samples;
    - otherwise ``c`` is the combined value (any value near the survivors would do):
      ``Σd²`` is one subtraction and one float32 ``vecdot`` over the samples, ``Σd``
      comes from the float64 ``kept_sum`` of the rejection or of the mean combine when
      there is one (else a second ``vecdot``), and the keep mask is applied only when
      a pixel of the band lost a sample. Centred on the result, nothing cancels; the
      float32 accumulation leaves a relative error of order ``N · 2⁻²⁴`` on ``Σd²``. A
      chunk whose deviations (or weights) would overflow float32 squares, or whose
      largest one is below ``2⁻⁵⁰``, is summed in float64 instead.

    Weighted, the same float32 chunks give ``W``, ``Σw²``, ``Σw·d``, ``Σw²·d`` and
    ``Σw²·d²``, and ``Σw²(x − μ)² = Σw²d² − 2δ·Σw²d + δ²·Σw²`` with ``δ = Σw·d / W`` (the
    result is within a float32 rounding of ``μ``: nothing cancels). All of it runs over
    chunks of rows (``ArrayOps.chunk_samples`` samples: 2¹⁸ on CPUs, the whole band on
    GPUs), so every temporary stays in cache; a pixel's value does not depend on the
    chunking.
    """
    xp = samples.xp
    dev = _device(samples.x)
    p = samples.n_pixels
    if config.combine not in ("mean", "sum", "median"):
        return xp.full((p,), xp.nan, dtype=samples.x.dtype, device=dev)
    if p == 0 or samples.n_frames == 0:
        return xp.full((p,), xp.nan, dtype=samples.x.dtype, device=dev)
    band = _Band(samples, rej, config, image, coverage)
    # Cache-sized row chunks on CPUs (ArrayOps.chunk_samples); 0 = the whole band.
    chunk = int(getattr(samples.ops, "chunk_samples", 0) or 0)
    step = max(1, chunk // samples.n_frames) if chunk > 0 else p
    parts = [_chunk_error(band, r0, min(p, r0 + step)) for r0 in range(0, p, step)]
    return parts[0] if len(parts) == 1 else xp.concat(parts)
