"""GPU use of a run: the one :class:`GpuPolicy` (mode C, breaker, device lock) and its fault injector."""

from .policy import DISABLED_MESSAGE, GPU_MODES, GpuPolicy
from .session import DeviceSession, GpuResultError, UnitRun, garbage_reason

__all__ = ["GpuPolicy", "DeviceSession", "UnitRun", "GpuResultError", "GPU_MODES", "DISABLED_MESSAGE",
           "garbage_reason"]
