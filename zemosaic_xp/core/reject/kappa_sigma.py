"""``kappa_sigma``: iterative median-centred κ-σ rejection on sorted rows, converging per pixel.

Per pixel: c = median and σ = std (``ddof``) of the kept samples, keep
``c − κl·σ <= x <= c + κh·σ`` among them, and repeat until the kept set stops
changing or ``max_iters`` (astropy's ``sigma_clip``). See :mod:`zemosaic_xp.core.reject`
for the contract every rejection shares. :func:`kappa_sigma_ranges` also serves the
frame statistics (the 3σ-clipped noise of :mod:`zemosaic_xp.core.framestats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import device as _device

from ..config import StackConfig
from ..nanstats import median_sorted
from ..ops import ArrayOps, ops_for
from ..samples import Rejection, Samples
from ..sorted_rows import centred_prefix_sums, range_sum, search_rows, take_rows
from ._common import RangeFit, min_keep, range_rejection

__all__ = ["kappa_sigma_ranges", "kappa_sigma_fit"]

Array = Any


@dataclass(frozen=True)
class _Clip:
    kappa_low: float
    kappa_high: float
    ddof: int
    max_iters: int


def kappa_sigma_ranges(s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                       max_iters: int, ddof: int = 0, min_survivors: int = 1,
                       xp: Any, ops: ArrayOps | None = None) -> tuple[Array, Array, Array]:
    """Iterative median-centred κ-σ clipping on rows that are already sorted.

    :func:`kappa_sigma_fit` with the kept range as ``(R, 1)`` columns, for callers
    that work on such columns (the frame statistics).

    Parameters
    ----------
    s : array, shape (R, N), float32
        Rows sorted ascending, invalid samples last (see ``nanstats.sort_valid``).
    n_valid : array, shape (R, 1) or (R,), int64
        Valid samples per row.
    kappa_low, kappa_high : float
        Clip thresholds in units of σ below / above the median.
    max_iters : int
        Iteration cap (0 = no clip).
    ddof : int
        0 = population std (astropy ``stdfunc="std"``), 1 = sample std.
    min_survivors : int
        A row never goes below ``min(min_survivors, n_valid)`` kept samples.
    xp : namespace
        The array namespace of ``s``.
    ops : ArrayOps, optional
        Fast paths and strategy (default: the registered ops of ``xp``).

    Returns
    -------
    lo : array, shape (R, 1), int64
        Start of the kept range ``[lo, hi)`` of each sorted row.
    hi : array, shape (R, 1), int64
        End of the kept range, exclusive.
    iterations : array, shape (R,), int64
        Iterations run per row (0 for rows that cannot reject).

    Notes
    -----
    Every array is on the device of ``s``.
    """
    fit = kappa_sigma_fit(s, n_valid, kappa_low=kappa_low, kappa_high=kappa_high,
                          max_iters=max_iters, ddof=ddof, min_survivors=min_survivors, xp=xp,
                          ops=ops)
    return fit.lo[:, None], fit.hi[:, None], fit.iterations


def kappa_sigma_fit(s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                    max_iters: int, ddof: int = 0, min_survivors: int = 1, xp: Any,
                    ops: ArrayOps | None = None) -> RangeFit:
    """Iterative median-centred κ-σ clipping on rows that are already sorted.

    Each iteration takes centre c = median and scale σ = std (``ddof``) of the kept
    samples, then keeps ``c − κl·σ <= x <= c + κh·σ`` among them (the kept set only
    shrinks, as in astropy's ``sigma_clip``), until it stops changing or ``max_iters``.
    Survivors of a value clip are a contiguous range of the sorted row, so no
    iteration ever re-sorts.

    Parameters
    ----------
    s : array, shape (R, N), float32
        Rows sorted ascending, invalid samples last (see ``nanstats.sort_valid``).
    n_valid : array, shape (R, 1) or (R,), int64
        Valid samples per row.
    kappa_low, kappa_high : float
        Clip thresholds in units of σ below / above the median.
    max_iters : int
        Iteration cap (0 = no clip).
    ddof : int
        0 = population std (astropy ``stdfunc="std"``), 1 = sample std.
    min_survivors : int
        A row never goes below ``min(min_survivors, n_valid)`` kept samples.
    xp : namespace
        The array namespace of ``s``.
    ops : ArrayOps, optional
        Fast paths and strategy (default: the registered ops of ``xp``).

    Returns
    -------
    RangeFit
        Kept range ``[lo, hi)``, iterations run per row (0 for rows that cannot
        reject), the row's median (0 for empty rows), ``Σ (x − median)`` and
        ``Σ (x − median)²`` over the kept range in float64, each ``(R,)`` on the device
        of ``s`` (the native fit may leave the second sum None).

    Notes
    -----
    σ comes from ``Σd`` and ``Σd²`` in float64 with ``d = x − m0`` (m0 = the row's
    median), exact differences of float32 data, so ``Σd² − (Σd)²/n`` does not cancel.
    Two strategies give the same ranges (``ops.compact``):

    - *compact* (CPU): an iteration first tests, with two gathers per row, whether
      the range's extremes are inside the new bounds — true of most pixels — and
      counts only the other rows; rows that changed are gathered into a smaller
      array for the next iteration. Work shrinks with the active pixels.
    - *dense* (GPU): float64 prefix sums once, then every iteration is a few
      gathers and binary searches on all rows; no data-dependent shapes, and the
      convergence test (a host sync) runs every ``ops.check_every`` iterations only.

    An ops object may run the whole clip natively (:meth:`ArrayOps.kappa_sigma_fit`,
    e.g. NumPy's numba kernel, one compiled loop per row); it must return the same
    ranges, so this function stays the reference.
    """
    ops = ops_for(xp, _device(s)) if ops is None else ops
    rows = int(s.shape[0])
    n = xp.reshape(n_valid, (rows,))
    native = ops.kappa_sigma_fit(s, n, kappa_low=float(kappa_low), kappa_high=float(kappa_high),
                                 max_iters=int(max_iters), ddof=int(ddof),
                                 min_survivors=int(min_survivors))
    if native is not None:
        return RangeFit(*native)
    need = min_keep(n, int(min_survivors), xp)
    m0 = median_sorted(s, n[:, None], xp=xp)
    m0 = xp.where(xp.isnan(m0), xp.zeros_like(m0), m0)
    clip = _Clip(float(kappa_low), float(kappa_high), int(ddof), int(max_iters))
    lo = xp.zeros_like(n)
    if max_iters < 1:
        s1, s2 = ops.centred_sums(s, m0, lo, n)
        return RangeFit(lo, n, xp.zeros_like(n), m0, s1, s2)
    if ops.compact:
        lo, hi, iterations, kept, kept_sq = _compact_pass(s, m0, need, lo, n, n > need, 0, clip, xp, ops)
    else:
        lo, hi, iterations, kept, kept_sq = _dense_fit(s, n, m0, need, clip, xp, ops)
    return RangeFit(lo, hi, iterations, m0, kept, kept_sq)


def _bounds(c: Array, s1: Array, s2: Array, count: Array, clip: _Clip, xp: Any) -> tuple[Array, Array]:
    """Clip bounds ``c − κl·σ``, ``c + κh·σ`` from the centred sums of the kept range."""
    f64 = xp.float64
    one = xp.ones_like(count)
    count_f = xp.astype(xp.where(count > 0, count, one), f64)
    dof = xp.astype(xp.where(count - clip.ddof > 0, count - clip.ddof, one), f64)
    var = (s2 - s1 * s1 / count_f) / dof
    sigma = xp.astype(xp.sqrt(xp.maximum(var, xp.zeros_like(var))), c.dtype)
    return c - clip.kappa_low * sigma, c + clip.kappa_high * sigma


def _compact_pass(s: Array, m0: Array, need: Array, lo: Array, hi: Array, active: Array, k: int,
                  clip: _Clip, xp: Any, ops: ArrayOps) -> tuple[Array, Array, Array, Array, Array]:
    """Iterations ``k, k+1, …`` on these rows; ``active`` rows run iteration ``k``.

    On the first pass (``k == 0``) the rows are the whole band and their ranges the
    whole valid range, so the centre is ``m0`` itself and the first kept sample is
    column 0. Returns ``lo, hi, iterations, kept_sum, kept_sq`` for these rows.
    """
    count = hi - lo
    first_pass = k == 0
    s1, s2 = ops.centred_sums(s, m0, lo, hi, whole=first_pass)
    c = m0 if first_pass else median_sorted(s, count[:, None], xp=xp, lo=lo[:, None])
    lower, upper = _bounds(c, s1, s2, count, clip, xp)
    iterations = xp.astype(active, xp.int64)
    # Exact shortcut: a range whose extremes lie inside the bounds cannot shrink.
    zero = xp.zeros_like(lo)
    has = count > 0
    first = s[:, 0] if first_pass else take_rows(s, xp.where(has, lo, zero), xp=xp)
    last = take_rows(s, xp.where(has, hi - 1, zero), xp=xp)
    cand = active & ((first < lower) | (last > upper))
    if not bool(xp.any(cand)):
        return lo, hi, iterations, s1, s2
    idx = xp.nonzero(cand)[0]
    sc = xp.take(s, idx, axis=0)
    lo_c, hi_c = xp.take(lo, idx), xp.take(hi, idx)
    below = xp.sum(xp.astype(sc < xp.take(lower, idx)[:, None], xp.int64), axis=-1)
    new_lo = xp.minimum(xp.maximum(below, lo_c), hi_c)
    upto = xp.sum(xp.astype(sc <= xp.take(upper, idx)[:, None], xp.int64), axis=-1)
    new_hi = xp.minimum(xp.maximum(upto, new_lo), hi_c)
    changed_c = ((new_lo != lo_c) | (new_hi != hi_c)) & ((new_hi - new_lo) >= xp.take(need, idx))
    if not bool(xp.any(changed_c)):
        return lo, hi, iterations, s1, s2
    keep_c = xp.nonzero(changed_c)[0]
    rows = xp.take(idx, keep_c)
    sub_s, sub_m0 = xp.take(sc, keep_c, axis=0), xp.take(m0, rows)
    sub_lo, sub_hi = xp.take(new_lo, keep_c), xp.take(new_hi, keep_c)
    if k + 1 < clip.max_iters:
        sub_lo, sub_hi, sub_it, sub_kept, sub_sq = _compact_pass(
            sub_s, sub_m0, xp.take(need, rows), sub_lo, sub_hi, xp.ones_like(sub_lo, dtype=xp.bool),
            k + 1, clip, xp, ops)
    else:
        sub_kept, sub_sq = ops.centred_sums(sub_s, sub_m0, sub_lo, sub_hi)
        sub_it = xp.zeros_like(sub_lo)
    (changed,) = ops.expand(cand, [(changed_c, xp.zeros_like(cand))])
    return tuple(ops.expand(changed, [(sub_lo, lo), (sub_hi, hi), (sub_it + 1, iterations),
                                      (sub_kept, s1), (sub_sq, s2)]))


def _dense_fit(s: Array, n: Array, m0: Array, need: Array, clip: _Clip, xp: Any,
               ops: ArrayOps) -> tuple[Array, Array, Array, Array, Array]:
    """Every row, every iteration: prefix sums, gathers and binary searches (GPU)."""
    p1, p2 = centred_prefix_sums(s, m0, n, xp=xp, ops=ops)
    lo, hi = xp.zeros_like(n), n
    iterations = xp.zeros_like(n)
    active = n > need
    for k in range(clip.max_iters):
        count = hi - lo
        c = median_sorted(s, count[:, None], xp=xp, lo=lo[:, None])
        lower, upper = _bounds(c, range_sum(p1, lo, hi, xp=xp), range_sum(p2, lo, hi, xp=xp), count,
                               clip, xp)
        new_lo = search_rows(s, lower, lo, hi, xp=xp, by_count=ops.count_search)
        new_hi = search_rows(s, upper, new_lo, hi, inclusive=True, xp=xp, by_count=ops.count_search)
        changed = ((new_lo != lo) | (new_hi != hi)) & ((new_hi - new_lo) >= need) & active
        iterations = xp.where(active, iterations + 1, iterations)
        lo = xp.where(changed, new_lo, lo)
        hi = xp.where(changed, new_hi, hi)
        active = changed
        # Load-bearing for GPUs: bool() waits for the device, so it runs only every
        # `check_every` iterations (never when 0); rows that stopped are frozen anyway.
        if ops.check_every and (k + 1) % ops.check_every == 0 and not bool(xp.any(active)):
            break
    return lo, hi, iterations, range_sum(p1, lo, hi, xp=xp), range_sum(p2, lo, hi, xp=xp)


def _reject_kappa_sigma(samples: Samples, config: StackConfig) -> Rejection:
    """Median-centred iterative κ-σ clipping (astropy ``sigma_clip`` semantics).

    Centre = median, scale = std (``config.sigma_ddof``, default 0 like astropy) of the
    kept set; drop ``x < c − κl·σ`` or ``x > c + κh·σ``; repeat until nothing changes
    or ``max_iters`` (default 5; 1 = upstream's single pass).
    """
    fit = kappa_sigma_fit(
        samples.sorted, samples.n_valid, kappa_low=config.kappa_low,
        kappa_high=config.kappa_high, max_iters=config.effective_max_iters(),
        ddof=config.sigma_ddof, min_survivors=config.min_survivors, xp=samples.xp,
        ops=samples.ops)
    return range_rejection(samples, fit.lo, fit.hi, fit.iterations, centre=fit.centre,
                           kept_sum=fit.kept_sum, kept_sq=fit.kept_sq)
