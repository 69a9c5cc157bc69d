"""Array backends: the one module that knows NumPy, CuPy and PyTorch exist.

``select_backend`` turns a name into a :class:`Backend` (its array-API namespace,
device and whether it is a GPU). CuPy and torch are imported lazily, only when a
backend that needs them is asked for; ``"auto"`` picks a GPU only after a tiny
kernel really ran on it, and falls back to NumPy otherwise (never an error).

The core (``zemosaic_xp.core``) receives ``Backend.xp`` and arrays; moving data
between host and device, querying free memory and recognising out-of-memory errors
happen here, in the adapters' hands.
"""

from __future__ import annotations

import gc
import importlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core.ops import register_ops
from .fastpaths import native_ops

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BACKEND_NAMES",
    "select_backend",
    "to_backend",
    "to_host",
    "device_memory_info",
    "is_oom_error",
    "free_device_memory",
    "backend_of",
    "synchronize",
    "check_health",
    "default_memory_budget",
]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`select_backend`.
BACKEND_NAMES = ("auto", "numpy", "cupy", "torch", "torch:cpu", "torch:cuda", "array_api_strict")

_OOM_PHRASES = (
    "out of memory",
    "cudaerrormemoryallocation",
    "cuda_error_out_of_memory",
    "cudaerroroutofmemory",
    "can't allocate memory",
    "unable to allocate",
)


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (library missing or device unusable)."""


@dataclass(frozen=True)
class Backend:
    """An array backend ready for use by the core.

    Attributes
    ----------
    name : str
        Canonical name: ``"numpy"``, ``"cupy"``, ``"torch:cpu"``, ``"torch:cuda"`` or
        ``"array_api_strict"``.
    xp : module
        The array-API namespace (array-api-compat wrapper) that core functions use.
    device : object
        Device on which arrays of this backend live (``"cpu"`` for NumPy).
    is_gpu : bool
        True for CuPy and torch CUDA.
    """

    name: str
    xp: Any = field(repr=False, compare=False)
    device: Any = None
    is_gpu: bool = False

    @property
    def library(self) -> str:
        """The underlying library name (``"numpy"``, ``"cupy"``, ``"torch"``, ...)."""
        return self.name.split(":", 1)[0]


_HEALTH_CACHE: dict[str, Backend | BaseException] = {}

# The core finds the native fast paths of each namespace through this hook
# (core/ops.py); the core itself never imports NumPy, CuPy or torch.
register_ops(native_ops)


def _import_optional(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # includes broken installs raising on import
        msg = (
            f"backend needs the '{module}' package, which cannot be imported ({exc}); "
            f"install it with `pip install zemosaic-xp[{extra}]`"
        )
        raise BackendUnavailable(msg) from exc
    except Exception as exc:  # noqa: BLE001 - e.g. a CUDA library missing at import time
        msg = f"importing '{module}' failed: {exc}"
        raise BackendUnavailable(msg) from exc


def _numpy_backend() -> Backend:
    import array_api_compat.numpy as xp_np

    return Backend("numpy", xp_np, "cpu", False)


def _strict_backend() -> Backend:
    xps = _import_optional("array_api_strict", "test")
    return Backend("array_api_strict", xps, xps.Device("CPU_DEVICE") if hasattr(xps, "Device") else None, False)


def _cupy_backend() -> Backend:
    cp = _import_optional("cupy", "gpu")
    try:
        # The health check: the driver answers *and* a real kernel runs (a missing
        # NVRTC or driver only shows up here, not at import).
        if not cp.cuda.is_available():
            raise BackendUnavailable("cupy is installed but no CUDA device is available")
        probe = cp.arange(16, dtype=cp.float32).reshape(4, 4)
        value = float((probe * 2.0).sum())
        if value != 240.0:
            raise BackendUnavailable(f"cupy health check returned {value}, expected 240.0")
    except BackendUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver/runtime error means "unusable"
        raise BackendUnavailable(f"cupy health check failed: {exc}") from exc
    import array_api_compat.cupy as xp_cp

    return Backend("cupy", xp_cp, cp.cuda.Device(), True)


def _torch_backend(device_type: str) -> Backend:
    torch = _import_optional("torch", "torch")
    import array_api_compat.torch as xp_torch

    if device_type == "cuda":
        try:
            if not torch.cuda.is_available():
                raise BackendUnavailable("torch is installed but CUDA is not available")
            dev = torch.device("cuda")
            probe = torch.arange(16, dtype=torch.float32, device=dev).reshape(4, 4)
            value = float((probe * 2.0).sum())
            if value != 240.0:
                raise BackendUnavailable(f"torch CUDA health check returned {value}, expected 240.0")
        except BackendUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BackendUnavailable(f"torch CUDA health check failed: {exc}") from exc
        return Backend("torch:cuda", xp_torch, dev, True)
    return Backend("torch:cpu", xp_torch, torch.device("cpu"), False)


def _build(name: str) -> Backend:
    if name == "numpy":
        return _numpy_backend()
    if name == "array_api_strict":
        return _strict_backend()
    if name == "cupy":
        return _cupy_backend()
    if name in ("torch", "torch:cpu"):
        return _torch_backend("cpu")
    if name == "torch:cuda":
        return _torch_backend("cuda")
    msg = f"`backend` must be one of {BACKEND_NAMES}, got {name!r}"
    raise ValueError(msg)


def select_backend(name: str | Backend | None = "auto") -> Backend:
    """Return a ready :class:`Backend` for ``name``.

    Parameters
    ----------
    name : {"auto", "numpy", "cupy", "torch", "torch:cpu", "torch:cuda", "array_api_strict"} or Backend
        ``"auto"`` (or None) tries CuPy, then torch CUDA, each with a health check (a
        tiny kernel must run), and returns NumPy when neither works. ``"torch"``
        means torch on the CPU. A :class:`Backend` is returned unchanged.

    Returns
    -------
    Backend

    Raises
    ------
    BackendUnavailable
        An explicitly requested backend cannot run here; the message says which
        extra to install or what the device reported.
    ValueError
        Unknown name.
    """
    if isinstance(name, Backend):
        return name
    if name is None:
        name = "auto"
    if not isinstance(name, str):
        msg = f"`backend` must be a backend name or Backend, got {type(name).__name__}"
        raise TypeError(msg)
    key = name.strip().lower()
    if key == "auto":
        for candidate in ("cupy", "torch:cuda"):
            try:
                return _cached(candidate)
            except BackendUnavailable as exc:
                logger.debug("[GPU] auto backend: %s unusable (%s)", candidate, exc)
        return _cached("numpy")
    return _cached(key)


def _cached(key: str) -> Backend:
    if key not in BACKEND_NAMES:
        msg = f"`backend` must be one of {BACKEND_NAMES}, got {key!r}"
        raise ValueError(msg)
    hit = _HEALTH_CACHE.get(key)
    if hit is None:
        try:
            hit = _build(key)
        except BackendUnavailable as exc:
            hit = exc
        _HEALTH_CACHE[key] = hit
    if isinstance(hit, BaseException):
        raise BackendUnavailable(str(hit)) from hit
    return hit


def clear_backend_cache() -> None:
    """Forget health-check results (tests use this after simulating a device)."""
    _HEALTH_CACHE.clear()


def backend_of(array: Any) -> Backend:
    """Return the :class:`Backend` an existing array belongs to.

    Raises
    ------
    TypeError
        The object is not an array of a supported library.
    """
    from array_api_compat import (
        is_array_api_strict_namespace,
        is_cupy_array,
        is_numpy_array,
        is_torch_array,
        array_namespace,
    )

    if is_numpy_array(array):
        return _cached("numpy")
    if is_cupy_array(array):
        import array_api_compat.cupy as xp_cp

        return Backend("cupy", xp_cp, array.device, True)
    if is_torch_array(array):
        import array_api_compat.torch as xp_torch

        is_cuda = array.device.type == "cuda"
        return Backend("torch:cuda" if is_cuda else "torch:cpu", xp_torch, array.device, is_cuda)
    try:
        xp = array_namespace(array)
    except TypeError as exc:
        msg = f"expected a NumPy, CuPy or torch array, got {type(array).__name__}"
        raise TypeError(msg) from exc
    if is_array_api_strict_namespace(xp):
        return Backend("array_api_strict", xp, array.device, False)
    msg = f"unsupported array type {type(array).__name__}"
    raise TypeError(msg)


def to_host(array: Any) -> np.ndarray:
    """Copy (or view) any supported array as a NumPy array on the host.

    Big-endian or non-contiguous inputs are returned as they are; callers that upload
    to a GPU go through :func:`to_backend`, which normalises the byte order.
    """
    if isinstance(array, np.ndarray):
        return array
    from array_api_compat import is_cupy_array, is_torch_array

    if is_cupy_array(array):
        return array.get()
    if is_torch_array(array):
        return array.detach().to("cpu").numpy()
    if hasattr(array, "__dlpack__") or hasattr(array, "__array__"):
        return np.asarray(array)
    return np.asarray(array)


def _native_float32(host: np.ndarray) -> np.ndarray:
    # Load-bearing: FITS arrays are big-endian; CuPy silently computes garbage on them
    # and torch.from_numpy refuses them (reference/arrayapi.md §0.6).
    if host.dtype.kind == "f" and host.dtype.itemsize <= 4 and host.dtype.isnative:
        return np.ascontiguousarray(host, dtype=np.float32)
    return np.ascontiguousarray(host.astype(np.float32))


def to_backend(array: Any, backend: Backend | str, *, dtype_float32: bool = True) -> Any:
    """Move ``array`` onto ``backend``'s device, as native-endian float32 by default.

    Parameters
    ----------
    array : array-like
        NumPy, CuPy or torch array (any device), or a nested sequence.
    backend : Backend or str
        Target backend (a name is resolved with :func:`select_backend`).
    dtype_float32 : bool
        Convert to native float32 (the core's working dtype). False keeps the dtype
        (booleans, integers), still byte-swapped to native order.

    Returns
    -------
    array on the target backend and device.
    """
    backend = select_backend(backend)
    try:
        same = backend_of(array).name == backend.name
    except TypeError:
        same = False
    native = not isinstance(array, np.ndarray) or array.dtype.isnative
    if same and native and (not dtype_float32 or str(getattr(array, "dtype", "")).endswith("float32")):
        return array
    host = to_host(array) if not isinstance(array, np.ndarray) else array
    host = np.asarray(host)
    if dtype_float32:
        host = _native_float32(host)
    elif not host.dtype.isnative:
        host = host.astype(host.dtype.newbyteorder("="))
    lib = backend.library
    if lib == "numpy":
        return host
    if lib == "cupy":
        import cupy as cp

        with backend.device:
            return cp.asarray(host)
    if lib == "torch":
        import torch

        return torch.from_numpy(np.ascontiguousarray(host)).to(backend.device)
    if lib == "array_api_strict":
        return backend.xp.asarray(host)
    msg = f"cannot move arrays to backend {backend.name!r}"
    raise ValueError(msg)


def device_memory_info(backend: Backend | str) -> tuple[int, int]:
    """Return ``(free_bytes, total_bytes)`` of the backend's memory.

    GPU backends report device memory; CPU backends report host RAM
    (``psutil.virtual_memory()``: available, total). When nothing can be queried,
    a conservative ``(2 GiB, 4 GiB)`` is returned.
    """
    backend = select_backend(backend)
    try:
        if backend.library == "cupy":
            import cupy as cp

            with backend.device:
                free, total = cp.cuda.runtime.memGetInfo()
            return int(free), int(total)
        if backend.name == "torch:cuda":
            import torch

            free, total = torch.cuda.mem_get_info(backend.device)
            return int(free), int(total)
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)
    except Exception as exc:  # noqa: BLE001 - sizing must never crash a run
        logger.debug("device_memory_info(%s) failed: %s", backend.name, exc)
        return 2 * 1024**3, 4 * 1024**3


def is_oom_error(exc: BaseException | None) -> bool:
    """True when ``exc`` (or its ``__cause__`` / ``__context__`` chain) is an out-of-memory error.

    Recognises NumPy's ``MemoryError`` (also CuPy's ``OutOfMemoryError``, a subclass),
    ``torch.OutOfMemoryError`` (a RuntimeError) and runtime errors whose message says
    "out of memory" (driver-level CUDA errors, cuBLAS, DefaultCPUAllocator).
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError):
            return True
        if type(exc).__name__ in ("OutOfMemoryError", "CudaOutOfMemoryError"):
            return True
        text = str(exc).lower()
        if any(phrase in text for phrase in _OOM_PHRASES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_device_memory(backend: Backend | str | None = None) -> None:
    """Release cached device memory (CuPy pools, torch CUDA cache) and run the GC.

    Safe to call for any backend, including CPU ones (only ``gc.collect()`` runs).
    """
    gc.collect()
    if backend is None:
        return
    try:
        backend = select_backend(backend)
    except (BackendUnavailable, ValueError):
        return
    try:
        if backend.library == "cupy":
            import cupy as cp

            cp.get_default_memory_pool().free_all_blocks()
            cp.get_default_pinned_memory_pool().free_all_blocks()
        elif backend.name == "torch:cuda":
            import torch

            torch.cuda.empty_cache()
    except Exception as exc:  # noqa: BLE001 - freeing is best effort
        logger.debug("free_device_memory(%s) failed: %s", backend.name, exc)


def synchronize(backend: Backend | str | None = None) -> None:
    """Wait until every kernel queued on ``backend``'s device has finished.

    A no-op on CPU backends. Time GPU work only around a call to this: kernels are
    asynchronous, so without it a timer measures the launches, not the work.
    """
    if backend is None:
        return
    backend = select_backend(backend)
    if backend.library == "cupy":
        import cupy as cp

        with backend.device:
            cp.cuda.Device().synchronize()
    elif backend.name == "torch:cuda":
        import torch

        torch.cuda.synchronize(backend.device)


def check_health(backend: Backend) -> tuple[bool, str]:
    """Run a tiny kernel on ``backend``: ``(True, "")`` when it computes, else ``(False, reason)``."""
    try:
        xp = backend.xp
        probe = xp.arange(16, dtype=xp.float32, device=backend.device)
        value = float(xp.sum(probe * 2.0))
    except Exception as exc:  # noqa: BLE001 - any device error means "unusable"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return False, f"{backend.name} health check failed ({type(exc).__name__}: {text})"
    if value != 240.0:
        return False, f"{backend.name} health check returned {value}, expected 240.0"
    return True, ""


_BUDGET_FRACTION = 0.25
_CPU_BUDGET_CAP = 256 * 1024**2
_GPU_BUDGET_CAP = 4 * 1024**3


def default_memory_budget(backend: Backend) -> int:
    """Bytes one band may use on ``backend``: 25 % of free memory, capped (256 MiB CPU, 4 GiB GPU)."""
    free, _ = device_memory_info(backend)
    cap = _GPU_BUDGET_CAP if backend.is_gpu else _CPU_BUDGET_CAP
    return int(max(16 * 1024**2, min(cap, free * _BUDGET_FRACTION)))
