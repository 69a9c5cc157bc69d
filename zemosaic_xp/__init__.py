"""zemosaic_xp: astrophotography stacking on NumPy, CuPy and PyTorch.

The stack core is written once against the Python array API standard; ``stack``
runs it on any backend. See ``StackConfig`` for the algorithms.
"""

from ._version import __version__
from .core.config import StackConfig
from .core.stack import StackResult
from .stacking import stack
from .classic import GpuPolicy, MasterTileResult, stack_master_tile, write_master_tile
from .telemetry import ResourceTelemetryController
from . import synthetic

__all__ = [
    "stack",
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

# Grid mode pulls in astropy.wcs and reproject: loaded on first use, not on `import zemosaic_xp`.
_LAZY = {"run_grid_mode": "zemosaic_xp.grid.runner", "GridConfig": "zemosaic_xp.grid.config"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module 'zemosaic_xp' has no attribute {name!r}"
    raise AttributeError(msg)
