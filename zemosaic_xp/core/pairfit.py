"""Paired errors-in-variables fit of frames onto a reference frame (``linear_fit``).

Frames of one stack are registered: the sample at one position sees the same sky in
every frame. Matching *distributions* (percentiles) of two frames cannot use that,
and on 65 536 samples the noise of a percentile moves a gain by ~0.5 %. Fitting the
pairs ``(x_k, r_k)`` of a frame and the reference at the same positions, the noise of
the sky cancels in the pairs and the stars give the gain its leverage.

The fit, per frame and channel, from a start ``(g, o)`` (the percentile match):

1. Pairs where either value is NaN or at its frame's maximum (saturation) are left out.
2. Four rounds of: residuals ``e = r − g·x − o``; the sky's noise ``s0`` = 1.4826·MAD
   of ``e``; the signal ``s = max((r + g·x + o)/2 − sky, 0)`` (sky = median of ``r``);
   the photon term ``β`` from the pairs with ``s > 50·s0``: (1.4826·median |e − ē| /
   √s)²; the pair variance ``v = s0² + β·s``; pairs with ``|e − ē| > 5·√v`` are
   outliers (hits, trails); the others enter a **weighted Deming regression** (weights
   1/v, error-variance ratio ``δ = σ_r² / σ_x²`` from the frames' noise, 1.4826·MAD of
   consecutive differences / √2). A homoscedastic clip would drop the noisiest (the
   brightest) star pixels preferentially and bias the gain; weighting by the noise
   model keeps them at their worth.
3. The fit is kept when at least 16 pairs remain, the weighted correlation is at least
   0.5 and the gain is finite; otherwise the caller keeps its start (a frame without
   stars, where the pairs carry no information on a gain).

Everything is vectorised over the rows (frame × channel) of the sub-samples.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from array_api_compat import device as _device

from .nanstats import MAD_TO_SIGMA, median_sorted, median_valid, quantile_sorted, sort_valid
from .ops import ops_for

__all__ = ["paired_fit", "deming_gain", "photon_term", "noise_floor", "next_gain", "PAIRED_MIN_CORRELATION"]

Array = Any

_ROUNDS = 4
#: The rounds' constants (a backend's fused rounds use the same): the clip in σ of the
#: pair's noise, the signal above which a pair measures the photon term (in s0), the
#: fewest such pairs, the fewest kept pairs for a gain.
CLIP_SIGMA = 5.0
BRIGHT_SKY_SIGMA = 50.0
MIN_BRIGHT = 16
MIN_PAIRS = 16
_TOP_FRACTION = 0.95
_TOP_QUANTILE = 0.999
_STRONG_SIGMA = 10.0
# Raw pairs are used when their residual scatter is within 5 % of the noise.
_RAW_SCATTER_RATIO = 1.05
#: Least weighted correlation of the kept pairs for the paired fit to be used.
PAIRED_MIN_CORRELATION = 0.5


def _median(a: Array, xp: Any) -> Array:
    """Median of each row, NaN = excluded; shape (R, 1), NaN for an empty row."""
    return xp.reshape(median_valid(a, xp=xp), (a.shape[0], 1))


def _sum(a: Array, xp: Any) -> Array:
    return xp.sum(xp.astype(a, xp.float64), axis=-1, keepdims=True)


def _below_top(a: Array, valid: Array, xp: Any) -> Array:
    s, n = sort_valid(xp.where(valid, a, xp.full_like(a, xp.nan)), xp=xp)
    top = xp.reshape(quantile_sorted(s, n, _TOP_QUANTILE, xp=xp), (a.shape[0], 1))
    mid = xp.reshape(median_sorted(s, n, xp=xp), (a.shape[0], 1))
    return a < mid + _TOP_FRACTION * (top - mid)


def _diff_sigma(a: Array, xp: Any) -> Array:
    d = a[:, 1:] - a[:, :-1]
    return MAD_TO_SIGMA / 2**0.5 * _median(xp.abs(d), xp)


def _deming(x: Array, r: Array, w: Array, delta: Array, xp: Any, *, origin: bool) -> Array:
    """Gain of the weighted Deming fit ``r = g·x (+ o)``, rows (R, M), w = 0: out."""
    big_w = _sum(w, xp)
    safe_w = xp.where(big_w > 0, big_w, xp.ones_like(big_w))
    if not origin:  # centred on the weighted means
        x = x - xp.astype(_sum(w * x, xp) / safe_w, x.dtype)
        r = r - xp.astype(_sum(w * r, xp) / safe_w, r.dtype)
    sxx, syy, sxy = _sum(w * x * x, xp) / safe_w, _sum(w * r * r, xp) / safe_w, _sum(w * x * r, xp) / safe_w
    return deming_gain(sxx, syy, sxy, delta, xp)


def deming_gain(sxx: Array, syy: Array, sxy: Array, delta: Array, xp: Any) -> Array:
    """Return the gain of a Deming fit from its weighted second moments.

    Parameters
    ----------
    sxx, syy, sxy : array, shape (R, 1), float64
        The weighted mean squares and cross product of the pairs (about their weighted
        means, or about 0 for a fit through the origin).
    delta : array, shape (R, 1), float64
        The error-variance ratio ``σ_r² / σ_x²``.
    xp : namespace
        The array namespace.

    Returns
    -------
    array, shape (R, 1), float64
        The gain; NaN where the fit has no solution.
    """
    b = syy - delta * sxx
    root = xp.sqrt(b * b + 4.0 * delta * sxy * sxy)
    # The larger root of sxy·g² − b·g − δ·sxy = 0, in its cancellation-free form.
    one = xp.ones_like(sxy)
    num = xp.where(b >= 0, b + root, 2.0 * delta * sxy)
    den = xp.where(b >= 0, 2.0 * sxy, root - b)
    gain = num / xp.where(den != 0, den, one)
    return xp.where(den != 0, gain, xp.full_like(gain, xp.nan))


def _correlation(x: Array, r: Array, keep: Array, xp: Any) -> Array:
    """Unweighted correlation of the kept pairs, (R, 1); 0 when undefined."""
    w = xp.astype(keep, xp.float32)
    n = _sum(w, xp)
    safe_n = xp.where(n > 0, n, xp.ones_like(n))
    zero = xp.zeros_like(x)
    dx = xp.where(keep, x - xp.astype(_sum(w * x, xp) / safe_n, x.dtype), zero)
    dy = xp.where(keep, r - xp.astype(_sum(w * r, xp) / safe_n, r.dtype), zero)
    sxx, syy, sxy = _sum(dx * dx, xp), _sum(dy * dy, xp), _sum(dx * dy, xp)
    prod = sxx * syy
    corr = sxy / xp.sqrt(xp.where(prod > 0, prod, xp.ones_like(prod)))
    return xp.where(prod > 0, corr, xp.zeros_like(corr))


def paired_fit(x: Array, ref: Array, start_gain: Array, start_offset: Array, *,
               xp: Any, rows_per_chunk: int | None = None) -> tuple[Array, Array, Array]:
    """Fit ``ref ≈ gain·x + offset`` row by row on paired samples.

    Parameters
    ----------
    x : array, shape (R, M), float32
        Samples of the frames (one row per frame and channel); NaN = no data.
    ref : array, shape (R, M), float32
        The reference's samples at the same positions, row by row (the reference
        frame's channel of each row); NaN = no data.
    start_gain, start_offset : array, shape (R,)
        Where the fit starts (e.g. the percentile match); returned for rows the fit
        rejects.
    xp : namespace
        Array namespace of the inputs.
    rows_per_chunk : int, optional
        Rows fitted together. Default: cache-sized on CPUs (``M ·`` rows at most a
        quarter of ``ArrayOps.chunk_samples``: the fit keeps ~20 temporaries of that
        size alive), all rows at once where ``chunk_samples`` is 0 (GPUs). Rows are
        independent: the results do not depend on it, to the bit.

    Returns
    -------
    gain, offset : array, shape (R,), float64
        The fit where ``ok``, else the start; offset in the samples' units (ADU).
    ok : array, shape (R,), bool
        The paired fit was used: ≥ 16 pairs kept, weighted correlation ≥
        ``PAIRED_MIN_CORRELATION``, finite gain.

    Notes
    -----
    Model and clipping are described in the module docstring. Outputs are on the
    device of ``x``. On CPUs, rows in cache-sized chunks are ~1.5× faster than all
    rows at once (32 frames of 65 536 samples: 1.72 → 1.12 s of CPU), and the chunks
    are fitted on ``ArrayOps.band_workers`` threads (NumPy's selection and the numba
    kernels release the GIL; 1 thread on the portable ops).
    """
    n_rows, m = int(x.shape[0]), int(x.shape[1])
    ops = ops_for(xp, _device(x))
    if rows_per_chunk is None:
        chunk = int(getattr(ops, "chunk_samples", 0) or 0)
        rows_per_chunk = max(1, (chunk // 4) // max(1, m)) if chunk > 0 else n_rows
    step = max(1, int(rows_per_chunk))
    if step >= n_rows:
        return _paired_fit(x, ref, start_gain, start_offset, xp=xp)

    fit = partial(_fit_chunk, x, ref, start_gain, start_offset, step, xp)
    starts = range(0, n_rows, step)
    workers = min(len(starts), max(1, int(getattr(ops, "band_workers", 1))))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(fit, starts))
    else:
        parts = [fit(i) for i in starts]
    return tuple(xp.concat([part[k] for part in parts]) for k in range(3))  # type: ignore[return-value]


def _fit_chunk(x: Array, ref: Array, start_gain: Array, start_offset: Array, step: int, xp: Any,
               i: int) -> tuple[Array, Array, Array]:
    """:func:`_paired_fit` of rows ``[i, i + step)``."""
    return _paired_fit(x[i:i + step, :], ref[i:i + step, :], start_gain[i:i + step], start_offset[i:i + step], xp=xp)


def _paired_fit(x: Array, ref: Array, start_gain: Array, start_offset: Array, *,
                xp: Any) -> tuple[Array, Array, Array]:
    """:func:`paired_fit` of rows fitted together."""
    x = xp.astype(x, xp.float32)
    r = xp.astype(ref, xp.float32)
    n_rows = x.shape[0]
    g0 = xp.reshape(xp.astype(start_gain, xp.float64), (n_rows, 1))
    o0 = xp.reshape(xp.astype(start_offset, xp.float64), (n_rows, 1))
    nan = xp.full_like(x, xp.nan)
    valid = xp.isfinite(x) & xp.isfinite(r)
    # Saturated (clipped) values break the line, and so do values just below the clip
    # (a noise draw decides which side they fall): leave out what is above 95 % of
    # each frame's range from its median to its 99.9th percentile (not its maximum:
    # a hit on a saturated star would lift it).
    valid = valid & _below_top(x, valid, xp) & _below_top(r, valid, xp)
    # Excluded values become 0 (a weight of 0 times NaN would still be NaN).
    zero = xp.zeros_like(x)
    x, r = xp.where(valid, x, zero), xp.where(valid, r, zero)
    sig_x = _diff_sigma(xp.where(valid, x, nan), xp)
    sig_r = _diff_sigma(xp.where(valid, r, nan), xp)
    delta = xp.astype((sig_r * sig_r) / xp.where(sig_x > 0, sig_x * sig_x, xp.ones_like(sig_x)), xp.float64)
    delta = xp.where(xp.isfinite(delta) & (sig_x > 0) & (sig_r > 0), delta, xp.ones_like(delta))
    mid_x = _median(xp.where(valid, x, nan), xp)
    mid_r = _median(xp.where(valid, r, nan), xp)
    g = xp.where(xp.isfinite(g0), g0, xp.ones_like(g0))
    # Differences of consecutive samples: offsets and smooth gradients cancel.
    pair = valid[:, 1:] & valid[:, :-1]
    dx, dr = x[:, 1:] - x[:, :-1], r[:, 1:] - r[:, :-1]
    dnan = nan[:, 1:]
    # A robust start from the pairs: the median ratio of the differences that are
    # large (> 10σ) in both frames, i.e. star edges; a trail or a hit is large in one
    # frame only. Rows with too few of them start from the caller's start.
    strong = (pair & (xp.abs(dx) > _STRONG_SIGMA * sig_x) & (xp.abs(dr) > _STRONG_SIGMA * sig_r)
              & ((dx > 0) == (dr > 0)))
    n_strong = xp.sum(xp.astype(strong, xp.int64), axis=-1, keepdims=True)
    ratio = _median(xp.where(strong, dr / xp.where(strong, dx, xp.ones_like(dx)), dnan), xp)
    g = xp.where((n_strong >= MIN_BRIGHT) & xp.isfinite(ratio), xp.astype(ratio, xp.float64), g)
    light = (x, r, mid_x, mid_r)
    g_diff, keep_d, kept_d, s0_diff = _rounds(dx, dr, pair, light, g, delta, origin=True, xp=xp)
    g_raw, keep_r, kept_r, s0_raw = _rounds(x, r, valid, light, g, delta, origin=False, xp=xp)
    # Raw pairs are more precise, but a background that differs between the frames (a
    # gradient) is unmodelled there: it shows as residual scatter beyond the noise,
    # which the differences (σ√2) do not have.
    raw = (s0_raw * 2**0.5 <= _RAW_SCATTER_RATIO * s0_diff) & xp.isfinite(g_raw)
    g = xp.where(raw, g_raw, g_diff)
    kept = xp.where(raw, kept_r, kept_d)
    corr = xp.where(raw, _correlation(x, r, keep_r, xp), _correlation(dx, dr, keep_d, xp))
    # The offset: the median paired residual, i.e. the sky levels matched.
    offset = _median(xp.where(valid, r - xp.astype(g, xp.float32) * x, nan), xp)
    offset = xp.astype(offset, xp.float64)
    ok = (kept >= MIN_PAIRS) & (corr >= PAIRED_MIN_CORRELATION) & xp.isfinite(g) & xp.isfinite(offset)
    gain = xp.where(ok, g, g0)
    offset = xp.where(ok, offset, o0)
    return xp.reshape(gain, (n_rows,)), xp.reshape(offset, (n_rows,)), xp.reshape(ok, (n_rows,))


def _level(x: Array, r: Array, mid_x: Array, mid_r: Array, gain: Array, *, xp: Any) -> Array:
    """Light above the sky seen in *both* frames, (R, M).

    An outlier of one frame (a trail) is not signal, so it is not given a photon noise
    that would hide it.
    """
    light = xp.minimum(r - mid_r, xp.astype(gain, xp.float32) * (x - mid_x))
    return xp.maximum(light, xp.zeros_like(light))


def _pair_sum(a: Array) -> Array:
    return a[:, 1:] + a[:, :-1]


def _rounds(x: Array, r: Array, pair: Array, light: tuple[Array, Array, Array, Array], g: Array, delta: Array, *,
            origin: bool, xp: Any) -> tuple[Array, Array, Array, Array]:
    """The clipped, noise-weighted Deming rounds; returns gain, kept mask, count, s0.

    ``light`` is ``(x, r, mid_x, mid_r)`` of the raw pairs (:func:`_level`); with
    ``origin`` (the pairs are differences of consecutive samples) a pair's signal is
    the sum of the two samples' light. A backend may run the rounds itself
    (``ArrayOps.paired_rounds``: the same arithmetic, fused).
    """
    fused = ops_for(xp, _device(x)).paired_rounds(x, r, pair, light, g, delta, origin=origin, rounds=_ROUNDS)
    if fused is not None:
        return fused
    level = partial(_level, *light, xp=xp)
    mid_r = light[3]
    nan = xp.full_like(x, xp.nan)
    keep = pair
    kept = xp.zeros((x.shape[0], 1), dtype=xp.int64, device=_device(x))
    s0 = xp.zeros((x.shape[0], 1), dtype=x.dtype, device=_device(x))
    for _ in range(_ROUNDS):
        res = r - xp.astype(g, xp.float32) * x
        centre = _median(xp.where(keep, res, nan), xp)
        dev = xp.abs(res - centre)
        s0 = MAD_TO_SIGMA * _median(xp.where(keep, dev, nan), xp)
        signal = _pair_sum(level(g)) if origin else level(g)
        bright = keep & (signal > BRIGHT_SKY_SIGMA * s0)
        n_bright = xp.sum(xp.astype(bright, xp.int64), axis=-1, keepdims=True)
        root_s = xp.sqrt(xp.where(bright, signal, xp.ones_like(signal)))
        beta = photon_term(_median(xp.where(bright, dev / root_s, nan), xp), n_bright, xp)
        floor = noise_floor(mid_r, xp)
        var = s0 * s0 + beta * signal + floor * floor
        keep = pair & (dev <= CLIP_SIGMA * xp.sqrt(var))
        w = xp.where(keep, 1.0 / var, xp.zeros_like(var))
        gain = _deming(x, r, w, delta, xp, origin=origin)
        kept = xp.sum(xp.astype(keep, xp.int64), axis=-1, keepdims=True)
        g = next_gain(gain, kept, g, xp)
    return g, keep, kept, s0


def photon_term(median_ratio: Array, n_bright: Array, xp: Any) -> Array:
    """Return a round's photon term β from the median of ``|e − ē| / √s`` of its bright pairs.

    Parameters
    ----------
    median_ratio : array, shape (R, 1), float32
        That median (NaN without bright pairs).
    n_bright : array, shape (R, 1), int
        The bright pairs of each row.
    xp : namespace
        The array namespace.

    Returns
    -------
    array, shape (R, 1), float32
        ``(1.4826·median)²`` where at least ``MIN_BRIGHT`` pairs are bright, else 0.
    """
    beta = MAD_TO_SIGMA * median_ratio
    return xp.where((n_bright >= MIN_BRIGHT) & xp.isfinite(beta), beta * beta, xp.zeros_like(beta))


def noise_floor(mid_r: Array, xp: Any) -> Array:
    """Return the floor of a pair's noise σ, which keeps noiseless (exact) data finite.

    Parameters
    ----------
    mid_r : array, shape (R, 1), float32
        The reference's median of each row.
    xp : namespace
        The array namespace.

    Returns
    -------
    array, shape (R, 1), float32
        ``1e-6·(|mid_r| + 1)``: with exact data the weights are then uniform.
    """
    return 1e-6 * (xp.abs(mid_r) + 1.0)


def next_gain(gain: Array, kept: Array, g: Array, xp: Any) -> Array:
    """Return a round's gain where it is finite and fitted on ``MIN_PAIRS`` pairs, else the previous one.

    Parameters
    ----------
    gain : array, shape (R, 1), float64
        The round's Deming gain.
    kept : array, shape (R, 1), int
        The pairs it was fitted on.
    g : array, shape (R, 1), float64
        The previous gain.
    xp : namespace
        The array namespace.

    Returns
    -------
    array, shape (R, 1), float64
        The gain each row carries into the next round.
    """
    return xp.where(xp.isfinite(gain) & (kept >= MIN_PAIRS), gain, g)
