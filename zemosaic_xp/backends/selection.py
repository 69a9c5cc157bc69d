"""Backend selection: a name becomes a :class:`Backend` that the core can use.

CuPy and torch are imported lazily, only when a backend that needs them is asked
for. ``"auto"`` picks a GPU only after :func:`~zemosaic_xp.backends.health.check_health`
ran a tiny kernel on it, and falls back to NumPy otherwise (never an error). What a
name resolved to is remembered per process (a device does not come and go within a
run); :func:`clear_backend_cache` forgets it.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from .health import check_health, gpu_driver_present

__all__ = ["Backend", "BackendUnavailable", "BACKEND_NAMES", "select_backend", "backend_of",
           "clear_backend_cache"]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`select_backend`.
BACKEND_NAMES = ("auto", "numpy", "cupy", "torch", "torch:cpu", "torch:cuda", "array_api_strict")

#: GPU backends that ``"auto"`` tries, in order, before NumPy.
_AUTO_GPU_ORDER = ("cupy", "torch:cuda")


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
        """Name of the underlying library.

        Returns
        -------
        str
            ``name`` without its device suffix: ``"numpy"``, ``"cupy"``, ``"torch"``
            or ``"array_api_strict"``.
        """
        return self.name.split(":", 1)[0]


# What each name resolved to in this process: the Backend, or why it cannot run.
_HEALTH_CACHE: dict[str, Backend | BaseException] = {}


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


def _gpu_backend(library: str, start: Callable[[], Backend]) -> Backend:
    """The GPU backend ``start()`` builds, once a kernel really ran on it.

    ``start`` checks that the driver reports a device and builds the :class:`Backend`;
    any error it raises means "unusable". The health check comes last: a missing
    NVRTC or a driver older than the toolkit only shows when a kernel runs.
    """
    try:
        backend = start()
    except BackendUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver/runtime error means "unusable"
        msg = f"{library} cannot start: {exc}"
        raise BackendUnavailable(msg) from exc
    ok, reason = check_health(backend)
    if not ok:
        raise BackendUnavailable(reason)
    return backend


def _numpy_backend() -> Backend:
    from .numpy_xp import numpy_namespace

    return Backend("numpy", numpy_namespace(), "cpu", False)


def _strict_backend() -> Backend:
    xps = _import_optional("array_api_strict", "test")
    return Backend("array_api_strict", xps, xps.Device("CPU_DEVICE") if hasattr(xps, "Device") else None, False)


def _require_gpu_driver(library: str) -> None:
    """Fail fast, before importing ``library``, on a machine with no GPU driver."""
    present, reason = gpu_driver_present()
    if not present:
        msg = f"{library} not tried: {reason}"
        raise BackendUnavailable(msg)


def _cupy_backend() -> Backend:
    _require_gpu_driver("cupy")
    cp = _import_optional("cupy", "gpu")

    def start() -> Backend:
        if not cp.cuda.is_available():
            msg = "cupy is installed but no CUDA device is available"
            raise BackendUnavailable(msg)
        return Backend("cupy", importlib.import_module("array_api_compat.cupy"), cp.cuda.Device(), True)

    return _gpu_backend("cupy", start)


def _torch_backend(device_type: str) -> Backend:
    if device_type == "cuda":
        _require_gpu_driver("torch CUDA")
    torch = _import_optional("torch", "torch")
    import array_api_compat.torch as xp_torch

    if device_type != "cuda":
        return Backend("torch:cpu", xp_torch, torch.device("cpu"), False)

    def start() -> Backend:
        if not torch.cuda.is_available():
            msg = "torch is installed but CUDA is not available"
            raise BackendUnavailable(msg)
        # With its index: tensors report "cuda:0", and torch.device("cuda") equals no tensor's device.
        return Backend("torch:cuda", xp_torch, torch.device("cuda", torch.cuda.current_device()), True)

    return _gpu_backend("torch CUDA", start)


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
        The backend, its library imported; for a GPU, a kernel has run on it.

    Raises
    ------
    BackendUnavailable
        An explicitly requested backend cannot run here; the message says which
        extra to install or what the device reported.
    TypeError
        ``name`` is neither a string nor a :class:`Backend`.
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
        for candidate in _AUTO_GPU_ORDER:
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
    """Forget what each backend name resolved to (tests use this after simulating a device)."""
    _HEALTH_CACHE.clear()


def backend_of(array: Any) -> Backend:
    """Return the :class:`Backend` an existing array belongs to.

    Parameters
    ----------
    array : array
        A NumPy, CuPy, torch or array-api-strict array.

    Returns
    -------
    Backend
        Its backend, on the array's own device; no health check runs.

    Raises
    ------
    TypeError
        The object is not an array of a supported library.
    """
    from array_api_compat import (
        array_namespace,
        is_array_api_strict_namespace,
        is_cupy_array,
        is_numpy_array,
        is_torch_array,
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
