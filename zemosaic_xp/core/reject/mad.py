"""``mad``: MAD clipping, iterative, median-centred, σ = 1.4826 · MAD of the kept samples.

The MAD of a sorted range is found without a second sort
(:func:`~zemosaic_xp.core.sorted_rows.mad_sorted`: around the centre c, the
deviations below and above c are two ascending runs, and the k-th smallest of two
sorted runs takes a binary search of ``log2(N)`` steps). Each iteration therefore
costs O(log N) gathers per pixel, like the dense κ-σ clipping of :mod:`.kappa_sigma`.
"""

from __future__ import annotations

from array_api_compat import device as _device

from ..config import StackConfig
from ..nanstats import MAD_TO_SIGMA, median_sorted
from ..samples import Rejection, Samples
from ..sorted_rows import mad_sorted, search_rows
from ._common import min_keep, range_rejection

__all__: list[str] = []


def _reject_mad(samples: Samples, config: StackConfig) -> Rejection:
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
    s, n = samples.sorted, samples.n_valid[:, 0]
    lo, hi = xp.zeros_like(n), n
    need = min_keep(n, config, xp)
    iterations = xp.zeros((samples.n_pixels,), dtype=xp.int64, device=_device(s))
    active = n > need
    for _ in range(config.effective_max_iters()):
        count = hi - lo
        centre = median_sorted(s, count[:, None], xp=xp, lo=lo[:, None])
        centre = xp.where(xp.isnan(centre), xp.zeros_like(centre), centre)
        sigma = MAD_TO_SIGMA * mad_sorted(s, count, centre, xp=xp, lo=lo)
        sigma = xp.where(xp.isnan(sigma), xp.zeros_like(sigma), sigma)
        new_lo = search_rows(s, centre - config.kappa_low * sigma, lo, hi, xp=xp)
        new_hi = search_rows(s, centre + config.kappa_high * sigma, new_lo, hi, inclusive=True, xp=xp)
        allowed = (new_hi - new_lo) >= need
        changed = ((new_lo != lo) | (new_hi != hi)) & allowed & active
        iterations = xp.where(active, iterations + 1, iterations)
        lo = xp.where(changed, new_lo, lo)
        hi = xp.where(changed, new_hi, hi)
        active = changed
        if not bool(xp.any(active)):
            break
    return range_rejection(samples, lo, hi, iterations)
