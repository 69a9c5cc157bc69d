"""``winsorized_sigma_clip``, the default rejection: PixInsight/Siril winsorised sigma clipping.

``config.wsc_impl`` picks the implementation: ``"pixinsight"`` (the default, this
module) or ``"zemosaic"`` (ZeMosaic's Huber variant, in
:mod:`.winsorized_sigma_clip_zemosaic`). PixInsight's, per pixel, with K the kept
samples (at first every valid one):

1. *robust estimate* of K (the inner loop): m = median, σ = 1.4826·MAD (the population
   std of K when the MAD is 0); then repeat: winsorise K to ``[m − 1.5σ, m + 1.5σ]``
   (Huber's c = 1.5), m′ = mean and σ′ = 1.134·std (population) of the winsorised
   values, until ``|σ′ − σ| <= 5e-4·σ`` and ``|m′ − m| <= 5e-4·σ`` or
   :data:`INNER_MAX_ITERS` iterations;
2. *rejection* (the outer loop): drop from K the samples with ``x < m − κl·σ`` or
   ``x > m + κh·σ``, unless that would leave fewer than ``min(min_survivors, n_valid)``;
   repeat from 1 until K stops changing or ``max_iters`` passes. σ = 0 rejects nothing.

Everything runs on the sorted rows (``Samples.sorted``) without sorting again. K is a
contiguous index range ``[lo, hi)``, and winsorising keeps the order, so the
winsorised sums split into ranges: ``(a − lo)`` samples clamped low (one value, a
count), the unclamped range ``[a, b)`` and ``(hi − b)`` clamped high. ``a`` and ``b``
are binary searches, and the range's Σd, Σd² come from :func:`~zemosaic_xp.core.sorted_rows.anchored_sums`
(``d = x − median``, float64): no iteration touches the samples.

Frame weights are deliberately *not* used in the estimate (PixInsight and Siril reject
unweighted too): the pooled scatter of a pixel's samples is the right yardstick, and a
noise-weighted σ would follow the quietest frames and over-reject the noisier ones.
The combine still averages the survivors with their weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import device as _device

from ..config import StackConfig
from ..nanstats import MAD_TO_SIGMA, median_sorted
from ..ops import ArrayOps, ops_for
from ..samples import Rejection, Samples
from ..sorted_rows import anchored_sums, mad_sorted, range_sum, search_near, search_rows
from ._common import RangeFit, min_keep, range_rejection
from .winsorized_sigma_clip_zemosaic import _reject_wsc_zemosaic

__all__ = ["wsc_pixinsight_fit", "HUBER_C", "WINSOR_CORRECTION", "TOLERANCE", "INNER_MAX_ITERS"]

Array = Any

#: Winsorisation point in units of σ (Huber's c).
HUBER_C = 1.5
#: Variance correction of winsorising a Gaussian at ±1.5σ: σ = 1.134 · std(winsorised).
WINSOR_CORRECTION = 1.134
#: Relative tolerance of the inner loop, on σ and on m, in units of σ.
TOLERANCE = 5e-4
#: Inner-loop cap. The loop converges geometrically on clean data; it is slow only
#: near breakdown or when most samples are equal (σ then shrinks geometrically
#: towards 0), where the cap decides (docs/algorithms.md gives measured counts).
INNER_MAX_ITERS = 50
# CPU strategy: gather the unconverged rows once they are fewer than this fraction.
_COMPACT_BELOW = 0.5


@dataclass
class _Rows:
    """Sorted rows with their float32 median ``c`` and anchored sums of ``d = x − c``."""

    s: Array
    c: Array
    f1: Array
    f2: Array

    def take(self, idx: Array, xp: Any) -> _Rows:
        return _Rows(xp.take(self.s, idx, axis=0), xp.take(self.c, idx),
                     xp.take(self.f1, idx, axis=0), xp.take(self.f2, idx, axis=0))


@dataclass(frozen=True)
class _Clip:
    kappa_low: float
    kappa_high: float
    max_iters: int


def _reject_winsorized_sigma_clip(samples: Samples, config: StackConfig) -> Rejection:
    """Winsorised sigma clipping by ``config.wsc_impl`` (PixInsight's or ZeMosaic's)."""
    return _IMPLEMENTATIONS[config.wsc_impl](samples, config)


def _reject_wsc_pixinsight(samples: Samples, config: StackConfig) -> Rejection:
    """``winsorized_sigma_clip`` with ``wsc_impl="pixinsight"``; see the module docstring.

    The kept set is a range of the sorted samples, so an unweighted mean needs no
    further pass; with weights the combine builds the keep mask and averages with them.
    """
    fit = wsc_pixinsight_fit(samples.sorted, samples.n_valid, kappa_low=config.kappa_low,
                             kappa_high=config.kappa_high, max_iters=config.effective_max_iters(),
                             min_survivors=config.min_survivors, xp=samples.xp, ops=samples.ops)
    return range_rejection(samples, fit.lo, fit.hi, fit.iterations, centre=fit.centre,
                           kept_sum=fit.kept_sum, kept_sq=fit.kept_sq)


def wsc_pixinsight_fit(s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                       max_iters: int, min_survivors: int = 3, xp: Any,
                       ops: ArrayOps | None = None) -> RangeFit:
    """PixInsight/Siril winsorised sigma clip of rows that are already sorted.

    Parameters
    ----------
    s : array, shape (R, N), float32
        Rows sorted ascending, invalid samples last as ``+inf`` (``ops.sort_valid``).
    n_valid : array, shape (R, 1) or (R,), int64
        Valid samples per row.
    kappa_low, kappa_high : float
        Rejection thresholds in units of the winsorised σ.
    max_iters : int
        Cap of the outer (rejection) passes; each pass runs the inner loop to
        convergence.
    min_survivors : int
        Fewest samples a row may keep (all of them when fewer are valid).
    xp : namespace
        The array namespace of ``s``.
    ops : ArrayOps, optional
        Native fast path and CPU / GPU strategy; default ``ops_for(xp, device)``.

    Returns
    -------
    RangeFit
        Kept range ``[lo, hi)``, outer passes run (0 where no rejection is possible,
        i.e. ``n_valid <= min(min_survivors, n_valid)``), the row's median (0 for empty
        rows), ``Σ (x − median)`` and ``Σ (x − median)²`` over the kept range in float64
        (the native fit may leave the second None).

    Notes
    -----
    Two strategies give the same ranges (``ops.compact``): on CPUs every loop runs
    on the still-active rows only, gathered into smaller arrays as they thin out; on
    GPUs every row runs every iteration (``max_iters`` × :data:`INNER_MAX_ITERS`
    steps at most) and the host is asked whether all rows are done only every
    ``ops.check_every`` steps (never when 0). :meth:`ArrayOps.wsc_pixinsight_fit` may
    run the whole fit natively (NumPy's numba kernel); it must return the same ranges.
    """
    ops = ops_for(xp, _device(s)) if ops is None else ops
    rows = int(s.shape[0])
    n = xp.reshape(n_valid, (rows,))
    native = ops.wsc_pixinsight_fit(s, n, kappa_low=float(kappa_low), kappa_high=float(kappa_high),
                                    max_iters=int(max_iters), min_survivors=int(min_survivors))
    if native is not None:
        return RangeFit(*native)
    c = median_sorted(s, n[:, None], xp=xp)
    c = xp.where(xp.isnan(c), xp.zeros_like(c), c)
    f1, f2 = anchored_sums(s, c, n, xp=xp, ops=ops)
    data = _Rows(s, c, f1, f2)
    need = min_keep(n, int(min_survivors), xp)
    clip = _Clip(float(kappa_low), float(kappa_high), int(max_iters))
    lo = xp.zeros_like(n)
    active = (n > need) & (clip.max_iters > 0)
    if ops.compact:
        lo, hi, iterations = _outer_compact(data, lo, n, need, active, 0, clip, xp, ops)
    else:
        lo, hi, iterations = _outer_dense(data, lo, n, need, active, clip, xp, ops)
    return RangeFit(lo, hi, iterations, c, range_sum(f1, lo, hi, xp=xp), range_sum(f2, lo, hi, xp=xp))


def _start(data: _Rows, lo: Array, hi: Array, first: bool, xp: Any,
           ops: ArrayOps) -> tuple[Array, Array]:
    """Start of the inner loop: m = median of ``[lo, hi)``, σ = 1.4826·MAD (std if MAD = 0)."""
    f64 = xp.float64
    count = hi - lo
    if first:  # the whole valid range: its median is the centre, and ops.mad applies
        med = data.c
        mad = ops.mad(data.s, count, med)
    else:
        med = median_sorted(data.s, count[:, None], xp=xp, lo=lo[:, None])
        mad = mad_sorted(data.s, count, med, xp=xp, lo=lo)
    k = xp.astype(xp.where(count > 0, count, xp.ones_like(count)), f64)
    mc = range_sum(data.f1, lo, hi, xp=xp) / k
    var = range_sum(data.f2, lo, hi, xp=xp) / k - mc * mc
    std = xp.sqrt(xp.maximum(var, xp.zeros_like(var)))
    mad = xp.astype(mad, f64)
    return xp.astype(med, f64), xp.where(mad > 0, MAD_TO_SIGMA * mad, std)


def _winsor_step(data: _Rows, lo: Array, hi: Array, m: Array, sigma: Array, guess: tuple[Array, Array],
                 xp: Any, ops: ArrayOps) -> tuple[Array, ...]:
    """One inner iteration: (m′, σ′) of ``[lo, hi)`` winsorised to ``m ± 1.5σ``, and the counts.

    The arithmetic (order included) is the numba kernel's, so both give the same bits.
    """
    f64 = xp.float64
    s = data.s
    low, high = m - HUBER_C * sigma, m + HUBER_C * sigma
    a = search_near(s, low, lo, hi, guess[0], xp=xp, ops=ops)
    b = search_near(s, high, a, hi, guess[1], inclusive=True, xp=xp, ops=ops)
    c = xp.astype(data.c, f64)
    n_low, n_high = xp.astype(a - lo, f64), xp.astype(hi - b, f64)
    lc, hc = low - c, high - c
    s1 = n_low * lc + range_sum(data.f1, a, b, xp=xp) + n_high * hc
    s2 = n_low * (lc * lc) + range_sum(data.f2, a, b, xp=xp) + n_high * (hc * hc)
    count = hi - lo
    inv_k = 1.0 / xp.astype(xp.where(count > 0, count, xp.ones_like(count)), f64)
    mc = s1 * inv_k
    var = s2 * inv_k - mc * mc
    sigma_new = WINSOR_CORRECTION * xp.sqrt(xp.maximum(var, xp.zeros_like(var)))
    m_new = c + mc
    tol = TOLERANCE * sigma
    # σ′ = 0 (or NaN) ends the loop too: nothing can be rejected with it.
    done = ((xp.abs(sigma_new - sigma) <= tol) & (xp.abs(m_new - m) <= tol)) | ~(sigma_new > 0)
    return m_new, sigma_new, done, a, b


def _inner(data: _Rows, lo: Array, hi: Array, m: Array, sigma: Array, done: Array, j: int,
           xp: Any, ops: ArrayOps) -> tuple[Array, Array]:
    """Inner iterations ``j, j+1, …`` until every row converged; compacts rows on CPUs."""
    total = int(lo.shape[0])
    guess = (lo, hi)
    while j < INNER_MAX_ITERS:
        m_new, s_new, stop, a, b = _winsor_step(data, lo, hi, m, sigma, guess, xp, ops)
        m = xp.where(done, m, m_new)
        sigma = xp.where(done, sigma, s_new)
        done = done | stop
        guess = (a, b)
        j += 1
        # Load-bearing for GPUs: bool()/int() wait for the device; with check_every = 0
        # the loop runs its cap and converged rows stay frozen.
        if ops.check_every and j % ops.check_every == 0:
            left = int(xp.sum(xp.astype(~done, xp.int64)))
            if left == 0:
                break
            if ops.compact and j < INNER_MAX_ITERS and left < _COMPACT_BELOW * total:
                todo = ~done
                idx = xp.nonzero(todo)[0]
                sub_m, sub_sigma = _inner(data.take(idx, xp), xp.take(lo, idx), xp.take(hi, idx),
                                          xp.take(m, idx), xp.take(sigma, idx),
                                          xp.zeros_like(idx, dtype=xp.bool), j, xp, ops)
                return tuple(ops.expand(todo, [(sub_m, m), (sub_sigma, sigma)]))
    return m, sigma


def _estimate(data: _Rows, lo: Array, hi: Array, active: Array, first: bool, xp: Any,
              ops: ArrayOps) -> tuple[Array, Array]:
    """The winsorised (m, σ) of each row's range ``[lo, hi)`` (the inner loop)."""
    m, sigma = _start(data, lo, hi, first, xp, ops)
    done = ~active | ~(sigma > 0)
    return _inner(data, lo, hi, m, sigma, done, 0, xp, ops)


def _reject(data: _Rows, lo: Array, hi: Array, m: Array, sigma: Array, need: Array, clip: _Clip,
            xp: Any, ops: ArrayOps) -> tuple[Array, Array, Array]:
    """The range ``[lo, hi)`` keeps after rejecting around (m, σ), and whether it changed."""
    new_lo = search_rows(data.s, m - clip.kappa_low * sigma, lo, hi, xp=xp, by_count=ops.count_search)
    new_hi = search_rows(data.s, m + clip.kappa_high * sigma, new_lo, hi, inclusive=True, xp=xp,
                         by_count=ops.count_search)
    changed = (sigma > 0) & ((new_lo != lo) | (new_hi != hi)) & ((new_hi - new_lo) >= need)
    return new_lo, new_hi, changed


def _outer_dense(data: _Rows, lo: Array, hi: Array, need: Array, active: Array, clip: _Clip,
                 xp: Any, ops: ArrayOps) -> tuple[Array, Array, Array]:
    """Every row, every pass (GPU): no data-dependent shapes."""
    iterations = xp.zeros_like(lo)
    for k in range(clip.max_iters):
        m, sigma = _estimate(data, lo, hi, active, k == 0, xp, ops)
        new_lo, new_hi, changed = _reject(data, lo, hi, m, sigma, need, clip, xp, ops)
        changed = changed & active
        iterations = xp.where(active, iterations + 1, iterations)
        lo, hi = xp.where(changed, new_lo, lo), xp.where(changed, new_hi, hi)
        active = changed
        # As in _inner: a host sync only every `check_every` passes (never on GPUs).
        if ops.check_every and (k + 1) % ops.check_every == 0 and not bool(xp.any(active)):
            break
    return lo, hi, iterations


def _outer_compact(data: _Rows, lo: Array, hi: Array, need: Array, active: Array, k: int,
                   clip: _Clip, xp: Any, ops: ArrayOps) -> tuple[Array, Array, Array]:
    """Passes ``k, k+1, …`` on these rows; only the rows that changed go on (CPU)."""
    iterations = xp.astype(active, xp.int64)
    if not bool(xp.any(active)):
        return lo, hi, iterations
    m, sigma = _estimate(data, lo, hi, active, k == 0, xp, ops)
    new_lo, new_hi, changed = _reject(data, lo, hi, m, sigma, need, clip, xp, ops)
    changed = changed & active
    if not bool(xp.any(changed)):
        return lo, hi, iterations
    idx = xp.nonzero(changed)[0]
    sub_lo, sub_hi = xp.take(new_lo, idx), xp.take(new_hi, idx)
    sub_it = xp.zeros_like(sub_lo)
    if k + 1 < clip.max_iters:
        sub_lo, sub_hi, sub_it = _outer_compact(data.take(idx, xp), sub_lo, sub_hi, xp.take(need, idx),
                                                xp.ones_like(sub_lo, dtype=xp.bool), k + 1, clip, xp,
                                                ops)
    return tuple(ops.expand(changed, [(sub_lo, lo), (sub_hi, hi), (sub_it + 1, iterations)]))


#: Implementations of ``winsorized_sigma_clip`` by ``config.wsc_impl`` (config.WSC_IMPLEMENTATIONS).
_IMPLEMENTATIONS = {"pixinsight": _reject_wsc_pixinsight, "zemosaic": _reject_wsc_zemosaic}
