"""Pixel rejection along the sample axis, per pixel, NaN-aware, asymmetric κ.

Every algorithm takes a band's :class:`~zemosaic_xp.core.samples.Samples` and the
:class:`~zemosaic_xp.core.config.StackConfig`, and returns a
:class:`~zemosaic_xp.core.samples.Rejection`: which samples survive, how many were
rejected low / high, and how many iterations each pixel needed. Convergence is per
pixel, so results never depend on how the image is cut into bands.

Every algorithm keeps at least ``min(config.min_survivors, n_valid)`` samples: a pixel
whose next rejection would leave fewer keeps its current set and stops there.

Notation below: for one pixel, ``x`` are its valid samples, κl / κh the low / high
thresholds.
"""

from __future__ import annotations

from typing import Callable

from .config import StackConfig
from .reject_common import zeros_per_pixel
from .reject_fit import reject_linear_fit_clip
from .reject_order import reject_gesd, reject_minmax, reject_percentile
from .reject_pixinsight import reject_wsc_pixinsight
from .reject_robust import reject_mad
from .reject_sigma import kappa_sigma_ranges, reject_kappa_sigma
from .reject_winsor import reject_winsorized_quantile
from .reject_wsc import reject_wsc_zemosaic
from .samples import Rejection, Samples

__all__ = ["reject", "reject_winsorized_sigma_clip", "kappa_sigma_ranges", "REJECTORS",
           "WSC_REJECTORS"]


def _reject_none(samples: Samples, config: StackConfig) -> Rejection:
    """Keep every valid sample."""
    zeros = zeros_per_pixel(samples)
    return Rejection(samples.valid, zeros, zeros, zeros,
                     lo=samples.xp.zeros_like(samples.n_valid), hi=samples.n_valid)


#: The two flavours of ``winsorized_sigma_clip`` by ``config.wsc_impl``.
WSC_REJECTORS: dict[str, Callable[[Samples, StackConfig], Rejection]] = {
    "pixinsight": reject_wsc_pixinsight,
    "zemosaic": reject_wsc_zemosaic,
}


def reject_winsorized_sigma_clip(samples: Samples, config: StackConfig) -> Rejection:
    """Winsorised sigma clipping, PixInsight's (default) or ZeMosaic's (``config.wsc_impl``)."""
    return WSC_REJECTORS[config.wsc_impl](samples, config)


#: Rejection algorithms by public name; one module per family (reject_sigma, reject_pixinsight,
#: reject_wsc, reject_order, reject_robust, reject_fit, reject_winsor); docs/algorithms.md
#: describes each.
REJECTORS: dict[str, Callable[[Samples, StackConfig], Rejection]] = {
    "none": _reject_none,
    "kappa_sigma": reject_kappa_sigma,
    "winsorized_sigma_clip": reject_winsorized_sigma_clip,
    "winsorized_quantile": reject_winsorized_quantile,
    "linear_fit_clip": reject_linear_fit_clip,
    "percentile": reject_percentile,
    "mad": reject_mad,
    "gesd": reject_gesd,
    "minmax": reject_minmax,
}


def reject(samples: Samples, config: StackConfig) -> Rejection:
    """Run ``config.reject`` on one band's samples; see the module docstring."""
    return REJECTORS[config.reject](samples, config)
