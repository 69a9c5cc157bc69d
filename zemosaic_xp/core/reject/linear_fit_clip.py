"""``linear_fit_clip``: a line through the sorted stack (Conejero / PixInsight 1.6.1, Siril).

Per pixel, the kept samples sorted ascending, y_0 <= … <= y_{n−1}, are fitted by
ordinary least squares against their rank, y ≈ a + b·i. The dispersion is the mean
absolute residual σ = (1/n)·Σ|y_i − a − b·i|; a sample is rejected low when
``a + b·i − y_i > κl·σ`` and high when ``y_i − a − b·i > κh·σ``. The survivors are
re-ranked and refitted until nothing changes or ``max_iters`` (default 10).

With a varying sky (frames whose background drifts) the sorted stack is close to a
line, so the samples at its ends are explained by the line instead of being treated
as outliers of a median-centred distribution. The price is on clean data: σ is a
mean absolute residual (0.8 σ for Gaussian noise) and the sorted values of Gaussian
noise curve away from a line at both ends, so every iteration trims a little more of
both tails, more so the larger N (docs/algorithms.md measures it; Siril, which has no
iteration cap, trims at least as much): raise κ for large clean stacks.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from ..config import StackConfig
from ..samples import Rejection, Samples
from ..sorted_rows import take_rows
from ._common import exact_range_rejection, keep_from_sorted, min_keep

__all__: list[str] = []

Array = Any

# Residuals below this fraction of the pixel's largest |value| are float32 round-off
# (≈ 8 ulp): σ is floored there so an exactly linear stack rejects nothing.
_RELATIVE_SIGMA_FLOOR = 1e-6


def _fit_step(yc: Array, keep: Array, xp: Any) -> tuple[Array, Array, Array]:
    """OLS line against the rank among kept samples; residuals and mean |residual|.

    Returns ``(residual (R, N), sigma (R, 1), count (R, 1))``, all float64.
    """
    kf = xp.astype(keep, xp.float64)
    rank = xp.cumulative_sum(kf, axis=-1) - kf  # 0, 1, … along the kept samples
    n = xp.sum(kf, axis=-1, keepdims=True)
    sy = xp.sum(kf * yc, axis=-1, keepdims=True)
    sry = xp.sum(kf * rank * yc, axis=-1, keepdims=True)
    # Σi and Σi² over ranks 0 … n−1 in closed form; n·Σi² − (Σi)² = n²(n² − 1)/12.
    sr = n * (n - 1.0) / 2.0
    den = n * n * (n * n - 1.0) / 12.0
    ok = den > 0
    slope = xp.where(ok, (n * sry - sr * sy) / xp.where(ok, den, xp.ones_like(den)), xp.zeros_like(den))
    n_safe = xp.where(n > 0, n, xp.ones_like(n))
    intercept = (sy - slope * sr) / n_safe
    residual = yc - intercept - slope * rank
    sigma = xp.sum(kf * xp.abs(residual), axis=-1, keepdims=True) / n_safe
    return residual, sigma, n


def _reject_linear_fit_clip(samples: Samples, config: StackConfig) -> Rejection:
    """Linear fit clipping; see the module docstring for the definition.

    Per-pixel convergence; at least ``min(min_survivors, n_valid)`` samples stay (a
    step that would go below keeps the current set and stops that pixel). Samples
    rejected below the line count as low, above as high. The fit is done in float64
    on values centred on their mid-range, with closed-form sums (no linear algebra). The
    kept set need not be a contiguous range of the sorted samples; it is mapped back
    to frame order through the sort permutation (ties broken by frame index).
    """
    xp = samples.xp
    dev = _device(samples.x)
    s, n_valid = samples.sorted, samples.n_valid
    n_samples = s.shape[-1]
    idx = xp.arange(n_samples, device=dev)[None, :]
    keep = idx < n_valid
    zero64 = xp.zeros((), dtype=xp.float64, device=dev)
    first = xp.astype(take_rows(s, xp.zeros_like(n_valid[:, 0]), xp=xp)[:, None], xp.float64)
    last = xp.astype(take_rows(s, n_valid[:, 0] - 1, xp=xp, clip=True)[:, None], xp.float64)
    has = n_valid > 0
    first = xp.where(has, first, zero64)
    last = xp.where(has, last, zero64)
    centre = 0.5 * first + 0.5 * last
    yc = xp.where(keep, xp.astype(s, xp.float64) - centre, zero64)
    floor = _RELATIVE_SIGMA_FLOOR * xp.maximum(xp.abs(first), xp.abs(last))
    need_int = min_keep(n_valid, config, xp)
    need = xp.astype(need_int, xp.float64)
    low = xp.zeros_like(keep)
    high = xp.zeros_like(keep)
    iterations = xp.zeros((samples.n_pixels,), dtype=xp.int64, device=dev)
    # A line through two points has no residual; a pixel at its survivor floor cannot reject.
    active = ((n_valid > 2) & (n_valid > need_int))[:, 0]
    for _ in range(config.effective_max_iters()):
        residual, sigma, count = _fit_step(yc, keep, xp)
        sigma = xp.maximum(sigma, floor)
        new_low = keep & (-residual > config.kappa_low * sigma)
        new_high = keep & (residual > config.kappa_high * sigma)
        n_out = xp.sum(xp.astype(new_low | new_high, xp.float64), axis=-1, keepdims=True)
        changed = ((n_out > 0) & (count - n_out >= need))[:, 0] & active
        step = changed[:, None]
        keep = keep & ~(step & (new_low | new_high))
        low = low | (step & new_low)
        high = high | (step & new_high)
        iterations = xp.where(active, iterations + 1, iterations)
        active = changed
        if not bool(xp.any(active)):
            break
    return _to_rejection(samples, keep, low, high, iterations)


def _to_rejection(samples: Samples, keep: Array, low: Array, high: Array,
                  iterations: Array) -> Rejection:
    """Rejection from masks over sorted positions; ``lo/hi`` only if every set is a range."""
    xp = samples.xp
    n_low = xp.sum(xp.astype(low, xp.int64), axis=-1)
    n_high = xp.sum(xp.astype(high, xp.int64), axis=-1)
    inside = xp.arange(low.shape[-1], device=_device(low))[None, :] < samples.n_valid
    gap_low = low[:, 1:] & ~low[:, :-1]
    gap_high = high[:, :-1] & ~high[:, 1:] & inside[:, 1:]
    if not bool(xp.any(gap_low | gap_high)):
        # Lows are a prefix and highs a suffix of the valid samples: a range.
        return exact_range_rejection(samples, n_low, samples.n_valid[:, 0] - n_high, iterations)
    return Rejection(keep_from_sorted(samples, keep), n_low, n_high, iterations)
