"""MAD clipping: iterative, median-centred, σ = 1.4826 · MAD of the kept samples.

The MAD of a sorted range is found without a second sort: around the centre c, the
deviations of the samples below c (read leftwards) and above c (read rightwards) are
two ascending lists, and the k-th smallest element of two sorted lists takes a
binary search of ``log2(N)`` steps. Each iteration therefore costs O(log N) gathers
per pixel, like the κ-σ clipping of :mod:`.reject_sigma`.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from .config import StackConfig
from .nanstats import MAD_TO_SIGMA, count_less, median_sorted
from .reject_common import min_keep, range_rejection
from .reject_tools import take
from .samples import Rejection, Samples

__all__ = ["mad_sorted", "reject_mad"]

Array = Any


def mad_sorted(s: Array, lo: Array, hi: Array, centre: Array, /, *, xp: Any) -> Array:
    """Median of ``|x − centre|`` over the sorted range ``[lo, hi)`` of each row.

    Parameters
    ----------
    s : array, shape (R, N)
        Rows sorted ascending (invalid samples last as +inf).
    lo, hi : array, shape (R, 1), int64
        Range of each row; ``lo <= hi``.
    centre : array, shape (R, 1), same dtype as ``s``
        Finite centre (any value; usually the range's median).

    Returns
    -------
    array, shape (R, 1), dtype of ``s``
        The raw MAD (mean of the two middle deviations for an even count); NaN where
        the range is empty.
    """
    n_samples = s.shape[-1]
    count = hi - lo
    split = count_less(s, centre, lo, hi, xp=xp)  # first index with s >= centre
    n_left, n_right = split - lo, hi - split
    t = (count + 1) // 2  # deviations up to and including the lower middle one
    inf = xp.asarray(xp.inf, dtype=s.dtype, device=_device(s))

    def left(j: Array) -> Array:  # j-th smallest deviation below the centre
        ok = (j >= 0) & (j < n_left)
        return xp.where(ok, centre - take(s, split - 1 - j, xp), inf)

    def right(j: Array) -> Array:  # j-th smallest deviation at or above the centre
        ok = (j >= 0) & (j < n_right)
        return xp.where(ok, take(s, split + j, xp) - centre, inf)

    # Find how many of the t smallest deviations come from the left list: the first i
    # with left(i) >= right(t - 1 - i), searched in [max(0, t - n_right), min(t, n_left)].
    i_lo = xp.maximum(t - n_right, xp.zeros_like(t))
    i_hi = xp.minimum(t, n_left)
    for _ in range(max(1, int(n_samples).bit_length()) + 1):
        searching = i_lo < i_hi
        mid = (i_lo + i_hi) // 2
        go_right = left(mid) < right(t - 1 - mid)
        i_lo = xp.where(searching & go_right, mid + 1, i_lo)
        i_hi = xp.where(searching & ~go_right, mid, i_hi)
    i = i_lo
    neg_inf = -inf
    a_left = xp.where(i >= 1, left(i - 1), neg_inf)
    a_right = xp.where(t - i >= 1, right(t - i - 1), neg_inf)
    lower_mid = xp.maximum(a_left, a_right)
    upper_mid = xp.minimum(left(i), right(t - i))
    even = (count % 2) == 0
    # For an odd count the upper middle is the lower one; never evaluate inf − inf.
    upper_mid = xp.where(even & (count > 0), upper_mid, lower_mid)
    same = upper_mid == lower_mid
    zero = xp.zeros_like(lower_mid)
    a = xp.where(same, zero, lower_mid)
    b = xp.where(same, zero, upper_mid)
    value = xp.where(same, lower_mid, a + 0.5 * (b - a))
    nan = xp.asarray(xp.nan, dtype=s.dtype, device=_device(s))
    return xp.where(count > 0, value, nan)


def reject_mad(samples: Samples, config: StackConfig) -> Rejection:
    """Median-centred iterative clipping with σ = 1.4826 · MAD of the kept set.

    Each iteration takes c = median and σ = 1.4826·median|x − c| of the kept samples
    and keeps ``c − κl·σ <= x <= c + κh·σ`` among them, until the set stops changing
    or ``max_iters`` (default 5); a pixel whose next step would leave fewer than
    ``min_survivors`` stops. With σ = 0 (more than half the samples equal) every
    differing sample is an outlier, as for any MAD clip. Siril's "MAD clipping"
    uses the raw MAD (thresholds in MAD units, about 0.67 σ): our κ = 3 equals its
    κ ≈ 4.45.
    """
    xp = samples.xp
    s, n = samples.sorted, samples.n_valid
    lo, hi = xp.zeros_like(n), n
    need = min_keep(n, config, xp)
    iterations = xp.zeros((samples.n_pixels,), dtype=xp.int64, device=_device(s))
    active = (n > need)[:, 0]
    for _ in range(config.effective_max_iters()):
        centre = median_sorted(s, hi - lo, xp=xp, lo=lo)[:, None]
        centre = xp.where(xp.isnan(centre), xp.zeros_like(centre), centre)
        sigma = MAD_TO_SIGMA * mad_sorted(s, lo, hi, centre, xp=xp)
        sigma = xp.where(xp.isnan(sigma), xp.zeros_like(sigma), sigma)
        new_lo = count_less(s, centre - config.kappa_low * sigma, lo, hi, xp=xp)
        new_hi = count_less(s, centre + config.kappa_high * sigma, new_lo, hi, inclusive=True, xp=xp)
        allowed = (new_hi - new_lo) >= need
        changed = (((new_lo != lo) | (new_hi != hi)) & allowed)[:, 0] & active
        iterations = xp.where(active, iterations + 1, iterations)
        lo = xp.where(changed[:, None], new_lo, lo)
        hi = xp.where(changed[:, None], new_hi, hi)
        active = changed
        if not bool(xp.any(active)):
            break
    return range_rejection(samples, lo, hi, iterations)
