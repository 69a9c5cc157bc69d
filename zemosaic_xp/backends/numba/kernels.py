"""Every numba kernel the NumPy ops call, in one namespace (imports no numba itself).

This is what :func:`zemosaic_xp.backends.numba.numba_kernels` returns: one import
point, so that the ops ask once whether the kernels work and then call
``kernels.<name>``. The band glue (:func:`stack_band`, :func:`stack_block`,
:func:`supports`) and the constants are here; every kernel of
:data:`~.aot.ENTRY_POINTS` is taken on first access from :func:`~.aot.entry` (a
module ``__getattr__``): compiled ahead of time where built, else numba's JIT, whose
module (and numba) is then imported — a stack imports only the kernels it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import aot
from .band import stack_band, stack_block, supports
from .constants import NO_SUMS, merge_network

if TYPE_CHECKING:  # pragma: no cover - taken on first access at run time (__getattr__)
    from .bilinear import bilinear_sample
    from .kappa_sigma import kappa_sigma_rows
    from .pairfit import bright_kept, clip_weights, deming_sums, deviations_kept, residuals_kept
    from .select import split_row
    from .sorting import nan_to_inf_rows, sort_network_rows
    from .wsc_pixinsight import wsc_pixinsight_rows
    from .wsc_zemosaic import wsc_rows, wsc_weighted_rows

__all__ = ["NO_SUMS", "bilinear_sample", "bright_kept", "clip_weights", "deming_sums", "deviations_kept",
           "kappa_sigma_rows", "merge_network", "nan_to_inf_rows", "residuals_kept", "sort_network_rows", "split_row",
           "stack_band", "stack_block", "supports", "wsc_pixinsight_rows", "wsc_rows", "wsc_weighted_rows"]


def __getattr__(name: str) -> Any:
    if name not in aot.ENTRY_POINTS:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return aot.entry(name)  # not cached here: aot.use() may switch it


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(aot.ENTRY_POINTS))
