"""Device memory: how much is free, how to free it, how to recognise running out.

:func:`device_memory_info` and :func:`default_memory_budget` size row bands;
:func:`is_oom_error` and :func:`free_device_memory` serve the GPU policy's retry
after an out-of-memory error; :func:`synchronize` makes GPU timings honest. The
CuPy and torch calls that read a CUDA device's memory are written once here
(:func:`cuda_free_total`), for band sizing and for the telemetry probes of
:mod:`~zemosaic_xp.backends.gpu_probe`.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from .selection import Backend, BackendUnavailable, select_backend

__all__ = ["device_memory_info", "host_memory_info", "default_memory_budget", "is_oom_error",
           "free_device_memory", "synchronize", "cuda_free_total"]

logger = logging.getLogger(__name__)

_OOM_PHRASES = (
    "out of memory",
    "cudaerrormemoryallocation",
    "cuda_error_out_of_memory",
    "cudaerroroutofmemory",
    "can't allocate memory",
    "unable to allocate",
)

# Returned by device_memory_info when nothing can be queried: small enough to be safe.
_FALLBACK_FREE_BYTES = 2 * 1024**3
_FALLBACK_TOTAL_BYTES = 4 * 1024**3

# Default band budget: a quarter of free memory, capped so that CPU bands stay small
# enough to be cache-friendly and GPU bands leave room for the sort's temporaries.
_BUDGET_FRACTION = 0.25
_MIN_BUDGET_BYTES = 16 * 1024**2
_CPU_BUDGET_CAP = 256 * 1024**2
_GPU_BUDGET_CAP = 4 * 1024**3


def cuda_free_total(library: Any, device: Any = None) -> tuple[int, int]:
    """``(free_bytes, total_bytes)`` of a CUDA device, through an imported CuPy or torch.

    Parameters
    ----------
    library : module
        The ``cupy`` or ``torch`` module itself (already imported by the caller).
    device : object, optional
        A ``cupy.cuda.Device`` or ``torch.device``; None = the library's current device.

    Returns
    -------
    tuple of int
        Free and total bytes as the CUDA runtime reports them.

    Raises
    ------
    Exception
        Whatever the library raises (no driver, device lost); callers decide.

    Notes
    -----
    Both calls create a CUDA context on the device if the process has none: callers
    that must not do that (telemetry) check first that the library is in use.
    """
    if library.__name__ == "cupy":
        runtime = library.cuda.runtime
        if device is None:
            free, total = runtime.memGetInfo()
        else:
            with device:
                free, total = runtime.memGetInfo()
    else:
        cuda = library.cuda
        free, total = cuda.mem_get_info() if device is None else cuda.mem_get_info(device)
    return int(free), int(total)


def _meminfo() -> tuple[int, int] | None:
    """``(MemAvailable, MemTotal)`` of ``/proc/meminfo`` in bytes (Linux), else None."""
    found = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("MemAvailable", "MemTotal"):
                    found[key] = int(rest.split()[0]) * 1024
                    if len(found) == 2:
                        return found["MemAvailable"], found["MemTotal"]
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_memory_info() -> tuple[int, int] | None:
    """Return ``(available_bytes, total_bytes)`` of the host's RAM, or None when unknown.

    Returns
    -------
    tuple of int or None
        ``MemAvailable`` and ``MemTotal`` of ``/proc/meminfo`` on Linux (what
        ``psutil.virtual_memory()`` reports there, without importing psutil: a
        twentieth of a second at start-up); elsewhere psutil's, then ``sysconf``'s.
    """
    found = _meminfo()
    if found is not None:
        return found
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)
    except Exception:  # noqa: BLE001 - no psutil: sysconf
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return int(os.sysconf("SC_AVPHYS_PAGES") * page), int(os.sysconf("SC_PHYS_PAGES") * page)
    except (AttributeError, ValueError, OSError):
        return None


def device_memory_info(backend: Backend | str) -> tuple[int, int]:
    """Return ``(free_bytes, total_bytes)`` of the backend's memory.

    Parameters
    ----------
    backend : Backend or str
        A backend or its name (resolved with :func:`~zemosaic_xp.backends.select_backend`).

    Returns
    -------
    tuple of int
        GPU backends report device memory; CPU backends report host RAM
        (:func:`host_memory_info`: available, total). When nothing can be queried,
        a conservative ``(2 GiB, 4 GiB)``.
    """
    backend = select_backend(backend)
    try:
        if backend.library == "cupy":
            import cupy

            return cuda_free_total(cupy, backend.device)
        if backend.name == "torch:cuda":
            import torch

            return cuda_free_total(torch, backend.device)
        host = host_memory_info()
        if host is not None:
            return host
    except Exception as exc:  # noqa: BLE001 - sizing must never crash a run
        logger.debug("device_memory_info(%s) failed: %s", backend.name, exc)
    return _FALLBACK_FREE_BYTES, _FALLBACK_TOTAL_BYTES


def default_memory_budget(backend: Backend) -> int:
    """Return how many bytes one row band may use on ``backend``.

    Parameters
    ----------
    backend : Backend
        Where the band is stacked.

    Returns
    -------
    int
        25 % of the free memory (:func:`device_memory_info`), capped at 256 MiB on a
        CPU and 4 GiB on a GPU, and at least 16 MiB.
    """
    free, _ = device_memory_info(backend)
    cap = _GPU_BUDGET_CAP if backend.is_gpu else _CPU_BUDGET_CAP
    return int(max(_MIN_BUDGET_BYTES, min(cap, free * _BUDGET_FRACTION)))


def is_oom_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or its ``__cause__`` / ``__context__`` chain) is an out-of-memory error.

    Parameters
    ----------
    exc : BaseException or None
        The error to classify; None gives False.

    Returns
    -------
    bool
        True for NumPy's ``MemoryError`` (also CuPy's ``OutOfMemoryError``, a
        subclass), ``torch.OutOfMemoryError`` (a RuntimeError) and runtime errors whose
        message says "out of memory" (driver-level CUDA errors, cuBLAS,
        DefaultCPUAllocator).
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

    Parameters
    ----------
    backend : Backend or str, optional
        Whose caches to free; None (or a CPU backend) only runs ``gc.collect()``.

    Notes
    -----
    Best effort: never raises, also for a name that cannot be selected here.
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

    Parameters
    ----------
    backend : Backend or str, optional
        The device to wait for; a no-op for None and CPU backends.

    Notes
    -----
    Time GPU work only around a call to this: kernels are asynchronous, so without
    it a timer measures the launches, not the work.
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
