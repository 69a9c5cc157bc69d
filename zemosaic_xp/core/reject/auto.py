"""``auto``: the rejection chosen per pixel by its number of valid samples.

A mosaic's depth varies from pixel to pixel (1 at its rim, 2–4 where pointings
barely overlap, tens in its core); no single estimator suits every depth. The choice
comes from the small-N measurements of docs/algorithms.md ("Rejection at small N",
``benchmarks/small_n.py``):

=================  ===========  ==============================================================
valid samples      estimator    why
=================  ===========  ==============================================================
1–2                none         nothing can tell a hit from the sky
3                  ``mad``      the only estimator that removes a lone hit at N = 3 without
                                depending on the data level (``percentile`` does, and fails
                                on sky-subtracted data); it costs ~11 % of clean samples there
≥ 4                ``gesd``     every lone hit from N = 4, both hits of a coincidence from
                                N = 7, ~1 % of clean samples; adapts its threshold to N
=================  ===========  ==============================================================

Both estimators run on the whole band (their own parameters: ``kappa_low/high``,
``max_iters``, ``gesd_outlier_fraction``, ``gesd_alpha``) and each pixel takes the result of
its row of the table, so the result is per pixel and band-invariant like every rejection.
"""

from __future__ import annotations

from ..config import StackConfig
from ..samples import Rejection, Samples
from .gesd import _reject_gesd
from .mad import _reject_mad

__all__: list[str] = []

#: Largest number of valid samples for which ``auto`` uses ``mad`` (gesd above).
AUTO_MAD_MAX_N = 3


def _reject_auto(samples: Samples, config: StackConfig) -> Rejection:
    """Per pixel: ``mad`` with 3 valid samples, ``gesd`` with 4 or more (see the module docstring)."""
    xp = samples.xp
    small = samples.n_valid[:, 0] <= AUTO_MAD_MAX_N
    a, b = _reject_mad(samples, config), _reject_gesd(samples, config)

    def pick(x, y):
        return xp.where(small if x.ndim == 1 else small[:, None], x, y)

    lo = hi = None
    if a.lo is not None and b.lo is not None:
        lo, hi = pick(a.lo, b.lo), pick(a.hi, b.hi)
    return Rejection(None, pick(a.n_low, b.n_low), pick(a.n_high, b.n_high), pick(a.iterations, b.iterations),
                     lo=lo, hi=hi, keep_factory=lambda: pick(a.keep, b.keep))
