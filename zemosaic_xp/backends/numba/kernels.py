"""Every numba kernel the NumPy ops call, in one namespace (imports numba).

This is what :func:`zemosaic_xp.backends.numba.numba_kernels` returns: one import
point, so that the ops ask once whether numba works and then call
``kernels.<name>``. The kernels themselves live in the topic modules; the row kernels
of the rejections are imported on first access (a module ``__getattr__``), so that a
stack imports only the kernels it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .band import stack_band, stack_block, supports
from .common import NO_SUMS
from .sorting import merge_network, nan_to_inf_rows, sort_network_rows

if TYPE_CHECKING:  # pragma: no cover - imported on first access at run time (__getattr__)
    from .kappa_sigma import kappa_sigma_rows
    from .pairfit import bright_kept, clip_weights, deming_sums, deviations_kept, residuals_kept
    from .wsc_pixinsight import wsc_pixinsight_rows
    from .wsc_zemosaic import wsc_rows, wsc_weighted_rows

__all__ = ["NO_SUMS", "bright_kept", "clip_weights", "deming_sums", "deviations_kept", "kappa_sigma_rows",
           "merge_network", "nan_to_inf_rows", "residuals_kept", "sort_network_rows", "stack_band", "stack_block",
           "supports", "wsc_pixinsight_rows", "wsc_rows", "wsc_weighted_rows"]

# Kernels imported on first access: name -> the module (in this package) that defines it.
_LAZY = {"kappa_sigma_rows": "kappa_sigma", "wsc_pixinsight_rows": "wsc_pixinsight", "wsc_rows": "wsc_zemosaic",
         "wsc_weighted_rows": "wsc_zemosaic", **{name: "pairfit" for name in (
             "residuals_kept", "deviations_kept", "bright_kept", "clip_weights", "deming_sums")}}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
