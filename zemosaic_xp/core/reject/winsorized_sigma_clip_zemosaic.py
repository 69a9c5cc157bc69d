"""``winsorized_sigma_clip``, ``wsc_impl="zemosaic"``: ZeMosaic's Huber variant (upstream_spec §2.6.1).

Kept as ZeMosaic computes it, for comparison and compatibility: clamp to the
rejection bounds ``m ± κσ`` themselves and take the Huber scale with c = max(κ). At
small N a clamped outlier inflates that scale faster than the clamp tames it, so a
single hit can survive (docs/algorithms.md measures how often); the default
``wsc_impl="pixinsight"`` is :mod:`.winsorized_sigma_clip`.

Unweighted samples take the sort-once path: clamping to ``[lo_b, hi_b]`` leaves the
sorted order intact, so every sum an iteration needs — the winsorised mean and the
Huber scale — splits into index ranges of the sorted row: clamped low ``[0, a)``,
Huber edge ``[a, p)``, Huber core ``[p, q)`` (weight 1), edge ``[q, b)``, clamped high
``[b, n)``. Clamped samples share one value, so they cost a count; the core and the
unclamped range are, for most pixels, the whole row, whose sums are computed once.
Only rows with clamped or edge samples (a minority) are summed again, and on CPUs
they are gathered into a small array first. The final bounds select a contiguous
range, so the result is a range rejection like κ-σ.

Weighted samples keep the direct formulation over all samples (weights would have to
follow the sort).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import device as _device

from ..config import StackConfig
from ..nanstats import MAD_TO_SIGMA, median_sorted, sort_valid
from ..ops import ArrayOps
from ..samples import Rejection, Samples
from ..sorted_rows import search_near, search_rows, take_rows
from ._common import min_keep, range_rejection

__all__: list[str] = []

Array = Any

# Huber/PixInsight WSC: absolute floor of σ (upstream_spec §2.6.1) and the relative
# tolerance of its "m and σ stopped moving" test.
_WSC_SIGMA_FLOOR = 1e-10
_WSC_TOLERANCE = 5e-4
# CPU strategy: gather the unconverged rows into a smaller array once they are fewer
# than this fraction of the current ones; read tails of at most this many samples
# by gathers rather than by summing whole rows.
_COMPACT_BELOW = 0.5
_SHORT_TAIL = 6


@dataclass(frozen=True)
class _Params:
    kappa_low: float
    kappa_high: float
    huber_c: float
    max_iters: int


@dataclass
class _Rows:
    """Sorted rows, their valid counts, centre ``m0`` and whole-row sums of ``d = x − m0``."""

    s: Array
    n: Array
    m0: Array
    t1: Array
    t2: Array

    def take(self, idx: Array, xp: Any) -> _Rows:
        return _Rows(xp.take(self.s, idx, axis=0), *(xp.take(v, idx) for v in
                                                       (self.n, self.m0, self.t1, self.t2)))


@dataclass
class _State:
    """Per-row iteration state: estimate, scale, previous bounds and counters."""

    m: Array
    sigma: Array
    prev_lo: Array
    prev_hi: Array
    iterations: Array
    done: Array
    a: Array  # count below the clamp (a search guess for the next iteration)
    b: Array  # count at or below the upper clamp

    names = ("m", "sigma", "prev_lo", "prev_hi", "iterations", "done", "a", "b")

    def take(self, idx: Array, xp: Any) -> _State:
        return _State(*(xp.take(getattr(self, k), idx) for k in self.names))


def _reject_wsc_zemosaic(samples: Samples, config: StackConfig) -> Rejection:
    """ZeMosaic's Huber winsorised sigma clipping, converging per pixel.

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
    if samples.weights is not None:
        return _wsc_weighted(samples, config)
    xp, ops = samples.xp, samples.ops
    s = samples.sorted
    n = xp.reshape(samples.n_valid, (-1,))
    native = ops.wsc_fit(s, n, kappa_low=float(config.kappa_low),
                         kappa_high=float(config.kappa_high),
                         max_iters=config.effective_max_iters(), min_survivors=config.min_survivors)
    if native is not None:
        lo, hi, iterations, centre, kept = native
        return range_rejection(samples, lo, hi, iterations, centre=centre, kept_sum=kept)
    m0 = median_sorted(s, n[:, None], xp=xp)
    m0 = xp.where(xp.isnan(m0), xp.zeros_like(m0), m0)
    zero = xp.zeros_like(n)
    t1, t2 = ops.centred_sums(s, m0, zero, n, whole=True)
    rows = _Rows(s, n, m0, t1, t2)
    f64 = xp.float64
    mad = xp.astype(ops.mad(s, n, m0), f64)
    floor = xp.asarray(_WSC_SIGMA_FLOOR, dtype=f64, device=_device(s))
    nan = xp.full_like(mad, xp.nan)
    state = _State(xp.astype(m0, f64), xp.where(mad > 0, MAD_TO_SIGMA * mad, floor), nan, nan,
                   zero, n < 2, zero, n)
    params = _Params(config.kappa_low, config.kappa_high, max(config.kappa_low, config.kappa_high),
                     config.effective_max_iters())
    state = _iterate(rows, state, 0, params, xp, ops)
    lower = xp.astype(state.m - params.kappa_low * state.sigma, s.dtype)
    upper = xp.astype(state.m + params.kappa_high * state.sigma, s.dtype)
    lo = search_rows(s, lower, zero, n, xp=xp)
    hi = search_rows(s, upper, lo, n, inclusive=True, xp=xp)
    # Guard: a pixel with fewer than 2 valid samples, or whose bounds would leave too
    # few survivors, keeps every valid sample.
    fallback = (n < 2) | ((hi - lo) < min_keep(n, config, xp))
    lo = xp.where(fallback, zero, lo)
    hi = xp.where(fallback, n, hi)
    kept = _sums_in(rows, lo, hi, xp, ops)[0]
    return range_rejection(samples, lo, hi, state.iterations, centre=m0, kept_sum=kept)


def _iterate(rows: _Rows, state: _State, k: int, params: _Params, xp: Any,
             ops: ArrayOps) -> _State:
    """Iterations ``k, k+1, …`` on these rows; compacts the unconverged ones on CPUs."""
    total = int(rows.n.shape[0])
    while k < params.max_iters:
        state = _step(rows, state, k, params, xp, ops)
        k += 1
        if ops.check_every and k % ops.check_every == 0:
            active = int(xp.sum(xp.astype(~state.done, xp.int64)))
            if active == 0:
                break
            if ops.compact and k < params.max_iters and active < _COMPACT_BELOW * total:
                todo = ~state.done
                idx = xp.nonzero(todo)[0]
                sub = _iterate(rows.take(idx, xp), state.take(idx, xp), k, params, xp, ops)
                merged = ops.expand(todo, [(getattr(sub, name), getattr(state, name))
                                           for name in _State.names])
                return _State(*merged)
    return state


def _sums_in(rows: _Rows, lo: Array, hi: Array, xp: Any, ops: ArrayOps) -> tuple[Array, Array]:
    """``Σd`` and ``Σd²`` over ``[lo, hi)``: the whole-row sums minus the samples outside.

    Outside the range lie only the few clamped or Huber-edge samples of a minority
    of rows. On CPUs those rows are gathered and their outside samples read column
    by column (a handful of gathers) while the tails are short, and summed over the
    row otherwise; on GPUs every row is summed over its range (no host sync).
    """
    if not ops.compact:
        part = (lo > 0) | (hi < rows.n)
        s1, s2 = ops.centred_sums(rows.s, rows.m0, lo, hi)
        return xp.where(part, s1, rows.t1), xp.where(part, s2, rows.t2)
    left, right = lo, rows.n - hi
    part = (left > 0) | (right > 0)
    if not bool(xp.any(part)):
        return rows.t1, rows.t2
    idx = xp.nonzero(part)[0]
    left, right = xp.take(left, idx), xp.take(right, idx)
    longest = int(xp.max(xp.maximum(left, right)))
    m0 = xp.astype(xp.take(rows.m0, idx), xp.float64)
    if longest > _SHORT_TAIL:
        s = xp.take(rows.s, idx, axis=0)
        in1, in2 = ops.centred_sums(s, xp.take(rows.m0, idx), xp.take(lo, idx), xp.take(hi, idx))
        out1, out2 = xp.take(rows.t1, idx) - in1, xp.take(rows.t2, idx) - in2
    else:
        out1 = xp.zeros_like(m0)
        out2 = xp.zeros_like(m0)
        zero = xp.zeros_like(m0)
        start = xp.take(hi, idx)
        for t in range(longest):
            for column, count in ((xp.full_like(left, t), left), (start + t, right)):
                inside = t < count
                d = xp.astype(take_rows(rows.s, xp.where(inside, column, xp.zeros_like(column)),
                                        xp=xp, rows=idx), xp.float64) - m0
                d = xp.where(inside, d, zero)
                out1, out2 = out1 + d, out2 + d * d
    (out1, out2) = ops.expand(part, [(out1, xp.zeros_like(rows.t1)), (out2, xp.zeros_like(rows.t2))])
    return rows.t1 - out1, rows.t2 - out2


def _step(rows: _Rows, st: _State, k: int, params: _Params, xp: Any, ops: ArrayOps) -> _State:
    """One WSC iteration on every row (rows already done keep their state)."""
    f64 = xp.float64
    s, n = rows.s, rows.n
    m0 = xp.astype(rows.m0, f64)
    sigma = st.sigma
    lo_b = st.m - params.kappa_low * sigma
    hi_b = st.m + params.kappa_high * sigma
    zero = xp.zeros_like(n)
    a = search_near(s, lo_b, zero, n, st.a, xp=xp, ops=ops)
    b = search_near(s, hi_b, a, n, st.b, inclusive=True, xp=xp, ops=ops)
    n_lo, n_hi = xp.astype(a, f64), xp.astype(n - b, f64)
    count = xp.astype(xp.maximum(n, xp.ones_like(n)), f64)
    low, high = lo_b - m0, hi_b - m0  # clamp values, centred
    delta = (n_lo * low + _sums_in(rows, a, b, xp, ops)[0] + n_hi * high) / count
    m_new = m0 + delta
    c = params.huber_c
    cs = c * sigma
    num = xp.zeros_like(sigma)
    den = xp.zeros_like(sigma)
    for r, weight in ((low - delta, n_lo), (high - delta, n_hi)):
        u = xp.abs(r) / sigma
        h = xp.where(u <= c, xp.ones_like(u), c / xp.where(u > 0, u, xp.ones_like(u)))
        num = num + weight * h * r * r
        den = den + weight * h
    # Unclamped samples: Huber core [p, q) has weight 1, the edges [a, p), [q, b) c·σ/|r|.
    p = search_near(s, m_new - cs, a, b, a, xp=xp, ops=ops)
    q = search_near(s, m_new + cs, p, b, b, inclusive=True, xp=xp, ops=ops)
    s1_core, s2_core = _sums_in(rows, p, q, xp, ops)
    core = xp.astype(q - p, f64)
    num = num + s2_core - 2.0 * delta * s1_core + core * delta * delta
    den = den + core
    abs_r, inv_r = _edge_sums(rows, delta, a, p, q, b, xp, ops)
    num = num + cs * abs_r
    den = den + cs * inv_r
    sigma_new = xp.sqrt(num / xp.where(den > 0, den, xp.ones_like(den)))
    sigma_new = xp.where(sigma_new > 0, sigma_new, xp.full_like(sigma_new, _WSC_SIGMA_FLOOR))
    tol = _WSC_TOLERANCE
    one = xp.ones_like(sigma)
    stop = (xp.abs(m_new - st.m) <= tol * xp.maximum(xp.abs(st.m), one)) & (
        xp.abs(sigma_new - sigma) <= tol * xp.maximum(sigma, one))
    if k > 0:
        stop = stop | ((lo_b == st.prev_lo) & (hi_b == st.prev_hi))
    update = ~st.done
    return _State(xp.where(update, m_new, st.m), xp.where(update, sigma_new, sigma), lo_b, hi_b,
                  xp.where(update, st.iterations + 1, st.iterations), st.done | stop, a, b)


def _edge_sums(rows: _Rows, delta: Array, a: Array, p: Array, q: Array, b: Array, xp: Any,
               ops: ArrayOps) -> tuple[Array, Array]:
    """``Σ|r|`` and ``Σ 1/|r|`` (``r = d − δ``) over the Huber edges ``[a, p) ∪ [q, b)``."""
    f64 = xp.float64
    has = (p > a) | (q < b)
    zero = xp.zeros_like(delta)
    if ops.compact:
        if not bool(xp.any(has)):
            return zero, zero
        idx = xp.nonzero(has)[0]
        s = xp.take(rows.s, idx, axis=0)
        m0, delta_e = xp.take(rows.m0, idx), xp.take(delta, idx)
        a, p, q, b = (xp.take(v, idx) for v in (a, p, q, b))
    else:
        s, m0, delta_e = rows.s, rows.m0, delta
    j = xp.arange(int(s.shape[-1]), device=_device(s))[None, :]
    edge = ((j >= a[:, None]) & (j < p[:, None])) | ((j >= q[:, None]) & (j < b[:, None]))
    one = xp.ones((), dtype=f64, device=_device(s))
    r = xp.where(edge, xp.abs(xp.astype(s, f64) - xp.astype(m0, f64)[:, None] - delta_e[:, None]), one)
    none = xp.zeros_like(r)
    abs_r = xp.sum(xp.where(edge, r, none), axis=-1)
    inv_r = xp.sum(xp.where(edge, one / r, none), axis=-1)
    if not ops.compact:
        return abs_r, inv_r
    return tuple(ops.expand(has, [(abs_r, zero), (inv_r, zero)]))


def _wsc_weighted(samples: Samples, config: StackConfig) -> Rejection:
    """WSC over all samples in their original order, with per-sample weights."""
    xp = samples.xp
    native = samples.ops.wsc_weighted_fit(
        samples.x, samples.full_weights(), samples.sorted, xp.reshape(samples.n_valid, (-1,)),
        kappa_low=float(config.kappa_low), kappa_high=float(config.kappa_high),
        max_iters=config.effective_max_iters(), min_survivors=config.min_survivors)
    if native is not None:
        return Rejection(*native)
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
