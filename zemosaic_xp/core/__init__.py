"""Pure array-API stack core: never imports NumPy, CuPy or torch.

It receives an ``xp`` namespace (from array-api-compat) and arrays, and returns
arrays on the same namespace and device. Selecting a backend, moving data, catching
out-of-memory errors and touching files belong to the adapters.
"""

from .config import StackConfig
from .in_memory import stack_frames
from .pipeline import StackResult

__all__ = ["StackConfig", "StackResult", "stack_frames"]
