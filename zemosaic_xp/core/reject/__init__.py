"""Pixel rejection along the sample axis, per pixel, NaN-aware, asymmetric κ.

:func:`reject` runs the algorithm that ``config.reject`` names. Each one lives in the
module of the same name (``gesd`` in :mod:`.gesd`, the default
``winsorized_sigma_clip`` in :mod:`.winsorized_sigma_clip`), takes a band's
:class:`~zemosaic_xp.core.samples.Samples` and the
:class:`~zemosaic_xp.core.config.StackConfig`, and returns a
:class:`~zemosaic_xp.core.samples.Rejection`: which samples survive, how many were
rejected low / high, and how many iterations each pixel needed. Convergence is per
pixel, so results never depend on how the image is cut into bands. docs/algorithms.md
describes each algorithm.

Every algorithm keeps at least ``min(config.min_survivors, n_valid − 1)`` samples of a
pixel with 3 or more, ``min(config.min_survivors, n_valid)`` below (``_common.min_keep``):
a pixel whose next rejection would leave fewer keeps its current set and stops there.

The algorithms are chosen by their public strings (``config.REJECT_METHODS``) through
:data:`REJECTORS`; their functions are private to this package (callers pass a
string, never a function). The helpers on sorted rows they share are in
:mod:`zemosaic_xp.core.sorted_rows`, those on rejections in :mod:`._common`.
"""

from __future__ import annotations

from typing import Callable

from array_api_compat import device as _device

from ..config import StackConfig
from ..samples import Rejection, Samples
from .auto import _reject_auto
from .gesd import _reject_gesd
from .kappa_sigma import _reject_kappa_sigma, kappa_sigma_ranges
from .linear_fit_clip import _reject_linear_fit_clip
from .mad import _reject_mad
from .minmax import _reject_minmax
from .percentile import _reject_percentile
from .winsorized_quantile import _reject_winsorized_quantile
from .winsorized_sigma_clip import _reject_winsorized_sigma_clip

# kappa_sigma_ranges is re-exported for the frame statistics (core/framestats.py).
__all__ = ["reject", "REJECTORS", "kappa_sigma_ranges"]


def _reject_none(samples: Samples, config: StackConfig) -> Rejection:
    """Keep every valid sample."""
    xp = samples.xp
    zeros = xp.zeros((samples.n_pixels,), dtype=xp.int64, device=_device(samples.x))
    return Rejection(samples.valid, zeros, zeros, zeros, lo=xp.zeros_like(samples.n_valid),
                     hi=samples.n_valid)


#: Rejection algorithms by public name (``config.REJECT_METHODS``).
REJECTORS: dict[str, Callable[[Samples, StackConfig], Rejection]] = {
    "none": _reject_none,
    "kappa_sigma": _reject_kappa_sigma,
    "winsorized_sigma_clip": _reject_winsorized_sigma_clip,
    "winsorized_quantile": _reject_winsorized_quantile,
    "linear_fit_clip": _reject_linear_fit_clip,
    "percentile": _reject_percentile,
    "mad": _reject_mad,
    "gesd": _reject_gesd,
    "minmax": _reject_minmax,
    "auto": _reject_auto,
}


def reject(samples: Samples, config: StackConfig) -> Rejection:
    """Run the rejection ``config.reject`` on one band's samples.

    Parameters
    ----------
    samples : Samples
        The band's ``(P, N)`` samples (values, validity, weights, cached sort).
    config : StackConfig
        ``reject`` names the algorithm; its parameters come from the same object.

    Returns
    -------
    Rejection
        Keep mask (or the sorted range it is built from), per-pixel ``n_low``,
        ``n_high`` and ``iterations``, on the device of ``samples``.
    """
    return REJECTORS[config.reject](samples, config)
