"""Array backends: the one package that knows NumPy, CuPy, PyTorch and numba exist.

``select_backend`` turns a name into a :class:`Backend` (its array-API namespace,
device and whether it is a GPU); ``check_health`` is the one GPU health check;
``to_backend`` / ``to_host`` move data; ``device_memory_info``,
``default_memory_budget``, ``free_device_memory``, ``is_oom_error`` and
``synchronize`` deal with device memory; ``open_gpu_probe`` reads GPU memory for
telemetry without creating a CUDA context.

The core (``zemosaic_xp.core``) receives ``Backend.xp`` and arrays. Its native fast
paths are chosen in one place, :func:`zemosaic_xp.backends.native.native_ops`, which
``core.ops.ops_for`` imports when it first needs them (``ops_numpy``, ``ops_torch``,
``ops_gpu``, and the numba kernels in :mod:`zemosaic_xp.backends.numba`).

Importing this package imports NumPy but never CuPy, torch or numba: each is
imported when a backend or a kernel that needs it is first used.
``numpy_namespace`` gives array-api-compat's NumPy namespace without importing NumPy's
optional submodules (f2py, testing, ma, ...), which the array API does not use.
"""

from .gpu_probe import GpuMemoryReading, GpuProbe, open_gpu_probe
from .health import check_health, gpu_driver_present
from .memory import default_memory_budget, device_memory_info, free_device_memory, is_oom_error, synchronize
from .numpy_xp import numpy_namespace
from .selection import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailable,
    backend_of,
    clear_backend_cache,
    select_backend,
)
from .transfer import to_backend, to_host

# array-api-compat's NumPy namespace, imported now without NumPy's unused submodules, so that
# any later array_namespace(numpy_array) finds it imported (see numpy_namespace).
numpy_namespace()

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BACKEND_NAMES",
    "select_backend",
    "backend_of",
    "clear_backend_cache",
    "check_health",
    "gpu_driver_present",
    "to_backend",
    "to_host",
    "device_memory_info",
    "default_memory_budget",
    "is_oom_error",
    "free_device_memory",
    "synchronize",
    "open_gpu_probe",
    "GpuProbe",
    "GpuMemoryReading",
    "numpy_namespace",
]
