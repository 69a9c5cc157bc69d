"""Astrophotography stacking on NumPy, CuPy and PyTorch (``zemosaic_xp``).

The stack core is written once against the Python array API standard; ``stack``
runs it on any backend. See ``StackConfig`` for the algorithms.

Public names are imported on first use (PEP 562), so ``import zemosaic_xp`` loads
neither astropy nor torch nor CuPy: stacking an in-memory NumPy array never pays for
the FITS, WCS or GPU machinery.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

__all__ = [
    "stack",
    "combine",
    "StackConfig",
    "StackResult",
    "stack_master_tile",
    "MasterTileResult",
    "write_master_tile",
    "GpuPolicy",
    "run_grid_mode",
    "GridConfig",
    "ResourceTelemetryController",
    "synthetic",
    "__version__",
]

#: Public name -> module that defines it.
_LAZY = {
    "stack": "zemosaic_xp.api",
    "combine": "zemosaic_xp.ccd_combine",
    "StackConfig": "zemosaic_xp.core.config",
    "StackResult": "zemosaic_xp.core.pipeline",
    "stack_master_tile": "zemosaic_xp.classic.master_tile",
    "MasterTileResult": "zemosaic_xp.classic.master_tile",
    "write_master_tile": "zemosaic_xp.classic.master_tile",
    "GpuPolicy": "zemosaic_xp.gpu.policy",
    "run_grid_mode": "zemosaic_xp.grid.runner",
    "GridConfig": "zemosaic_xp.grid.config",
    "ResourceTelemetryController": "zemosaic_xp.telemetry.controller",
}
_SUBMODULES = ("synthetic", "backends", "core", "classic", "grid", "gpu", "io", "telemetry", "cli", "nddata")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    msg = f"module 'zemosaic_xp' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
