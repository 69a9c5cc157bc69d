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
    "ResourceTelemetryController",
    "synthetic",
    "__version__",
]
