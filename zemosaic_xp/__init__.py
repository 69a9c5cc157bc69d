"""zemosaic_xp: astrophotography stacking on NumPy, CuPy and PyTorch.

The stack core is written once against the Python array API standard; ``stack``
runs it on any backend. See ``StackConfig`` for the algorithms.
"""

from ._version import __version__
from .core.config import StackConfig
from .core.stack import StackResult
from .stacking import stack
from .telemetry import ResourceTelemetryController
from . import synthetic

__all__ = ["stack", "StackConfig", "StackResult", "ResourceTelemetryController", "synthetic", "__version__"]
