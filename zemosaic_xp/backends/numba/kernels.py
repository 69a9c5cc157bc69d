"""Every numba kernel the NumPy ops call, in one namespace (imports numba).

This is what :func:`zemosaic_xp.backends.numba.numba_kernels` returns: one import
point, so that the ops ask once whether numba works and then call
``kernels.<name>``. The kernels themselves live in the topic modules.
"""

from __future__ import annotations

from .band import stack_band, stack_block, supports
from .common import NO_SUMS
from .kappa_sigma import kappa_sigma_rows
from .sorting import merge_network, nan_to_inf_rows, sort_network_rows
from .wsc_pixinsight import wsc_pixinsight_rows
from .wsc_zemosaic import wsc_rows, wsc_weighted_rows

__all__ = ["NO_SUMS", "kappa_sigma_rows", "merge_network", "nan_to_inf_rows", "sort_network_rows", "stack_band",
           "stack_block", "supports", "wsc_pixinsight_rows", "wsc_rows", "wsc_weighted_rows"]
