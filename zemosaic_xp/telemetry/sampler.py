"""One cheap snapshot of CPU, RAM and GPU use, for the telemetry controller.

:func:`sample_runtime_resources` reads psutil (optional) and one GPU source: NVML
through ``pynvml`` (nvidia-ml-py), else CuPy's ``memGetInfo``, else torch's
``cuda.mem_get_info``. Every library is optional and every call is guarded: a missing
library, a missing driver or a library that raises gives None values, never an
exception.

Which GPU source works is found once per process and remembered. A source that
raises (at detection or on a later read) is dropped for the rest of the process, so
a machine with CuPy installed but no driver pays the failed probe once, not on every
sample; :func:`reset_resource_probes` forgets all of this (a driver came back, tests).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
from typing import Any, Callable

__all__ = ["SAMPLE_KEYS", "GPU_KEYS", "sample_runtime_resources", "reset_resource_probes",
           "prime_cpu_percent"]

logger = logging.getLogger(__name__)

#: GPU keys of a sample; all None when no GPU source works.
GPU_KEYS = (
    "gpu_used_mb",
    "gpu_total_mb",
    "gpu_free_mb",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_name",
    "gpu_backend",
    "sample_source",
)

#: Keys of :func:`sample_runtime_resources`, in CSV order.
SAMPLE_KEYS = ("cpu_percent", "ram_used_mb", "ram_total_mb", "ram_available_mb") + GPU_KEYS

_MIB = float(2**20)
_SOURCE_ORDER = ("nvml", "cupy", "torch")

_lock = threading.Lock()
_psutil_module: Any = None  # the module, False once known missing, None before the first look
_gpu_reader: Callable[[], dict[str, Any]] | None = None
_gpu_reader_name: str | None = None
_dropped_sources: set[str] = set()  # absent or failed: never probed again in this process
_nvml_module: Any = None  # set once nvmlInit() succeeded, for the shutdown


def sample_runtime_resources() -> dict[str, Any]:
    """Sample CPU, RAM and GPU use now.

    Returns
    -------
    dict
        ``cpu_percent`` (float, % of all cores since the previous psutil call, 0.0 on
        the very first call), ``ram_used_mb``, ``ram_total_mb``, ``ram_available_mb``
        (float, MiB = 2**20 bytes; used = total - available), ``gpu_used_mb``,
        ``gpu_total_mb``, ``gpu_free_mb`` (float, MiB, device 0 or the first device of
        ``CUDA_VISIBLE_DEVICES``), ``gpu_util_percent``, ``gpu_mem_util_percent``
        (float, %, NVML only), ``gpu_name`` (str), ``gpu_backend`` (``"nvml"``,
        ``"cupy"`` or ``"torch"``) and ``sample_source`` (``"nvml"``,
        ``"cupy_meminfo"`` or ``"torch_mem_get_info"``). Keys whose source is missing
        or failed are None: CPU/RAM without psutil, all GPU keys without a working
        GPU source.

    Notes
    -----
    Never raises. A typical call costs tens of microseconds (psutil reads
    ``/proc``; NVML queries the driver); the first call also detects the GPU source
    (imports ``pynvml`` or ``cupy``, a few hundred milliseconds at most, once).

    CuPy's and torch's ``mem_get_info`` create a CUDA context on the device if the
    process has none. CuPy is used as upstream ZeMosaic does (a CuPy install means
    the run uses the GPU). torch is only consulted when it is already imported *and*
    has initialised CUDA: sampling never imports torch or wakes up a GPU that torch
    is not using.
    """
    sample: dict[str, Any] = dict.fromkeys(SAMPLE_KEYS)
    try:
        sample.update(_sample_cpu_ram())
    except Exception as exc:  # noqa: BLE001 - telemetry must never break a run
        logger.debug("[TELEMETRY] psutil sample failed: %s", exc)
    try:
        sample.update(_sample_gpu())
    except Exception as exc:  # noqa: BLE001 - same reason
        logger.debug("[TELEMETRY] GPU sample failed: %s", exc)
    return sample


def reset_resource_probes() -> None:
    """Forget which of psutil and the GPU sources work, so the next sample probes again.

    Use it after installing a library or recovering a driver in a live process, and
    in tests. Shuts NVML down if this module had initialised it.
    """
    global _psutil_module, _gpu_reader, _gpu_reader_name, _nvml_module
    with _lock:
        if _nvml_module is not None:
            try:
                _nvml_module.nvmlShutdown()
            except Exception:  # noqa: BLE001 - best effort
                pass
        _psutil_module = None
        _gpu_reader = None
        _gpu_reader_name = None
        _nvml_module = None
        _dropped_sources.clear()


def prime_cpu_percent() -> None:
    """Start psutil's CPU-percent interval now (its first reading is otherwise 0.0)."""
    psutil = _psutil()
    if psutil is not None:
        try:
            psutil.cpu_percent(interval=None)
        except Exception:  # noqa: BLE001 - telemetry must never break a run
            pass


def _psutil() -> Any:
    global _psutil_module
    if _psutil_module is None:
        try:
            import psutil
        except ImportError:
            logger.debug("[TELEMETRY] psutil is not installed: CPU/RAM values will be None")
            _psutil_module = False
        else:
            _psutil_module = psutil
    return _psutil_module or None


def _sample_cpu_ram() -> dict[str, Any]:
    psutil = _psutil()
    if psutil is None:
        return {}
    out: dict[str, Any] = {"cpu_percent": float(psutil.cpu_percent(interval=None))}
    mem = psutil.virtual_memory()
    total, available = float(mem.total), float(mem.available)
    out["ram_total_mb"] = total / _MIB
    out["ram_available_mb"] = available / _MIB
    out["ram_used_mb"] = (total - available) / _MIB
    return out


def _sample_gpu() -> dict[str, Any]:
    global _gpu_reader, _gpu_reader_name
    with _lock:
        if _gpu_reader is None:
            _gpu_reader, _gpu_reader_name, first = _detect_gpu_reader()
            return first
        try:
            return _gpu_reader()
        except Exception as exc:  # noqa: BLE001 - a driver can fail at any time
            logger.warning("[TELEMETRY] GPU sampling through %s failed (%s); it is disabled "
                           "for the rest of this process", _gpu_reader_name, exc)
            _dropped_sources.add(_gpu_reader_name)
            _gpu_reader, _gpu_reader_name = None, None
            return {}


def _detect_gpu_reader() -> tuple[Callable[[], dict[str, Any]] | None, str | None, dict[str, Any]]:
    """First source, in ``_SOURCE_ORDER``, whose reader builds and reads once without error.

    Returns the reader, its source name and the trial read (all None / empty when no
    source works). Load-bearing: the trial read happens here, so a library that imports
    and reports a device but fails on use (CuPy without a driver) is dropped at once.
    """
    for name in _SOURCE_ORDER:
        if name in _dropped_sources:
            continue
        try:
            reader = _READER_FACTORIES[name]()
            if reader is None:
                continue
            first = reader()
        except Exception as exc:  # noqa: BLE001 - any failure means "not this source"
            logger.info("[TELEMETRY] GPU source %s unusable (%s); not retried in this process",
                        name, exc)
            _dropped_sources.add(name)
            continue
        logger.debug("[TELEMETRY] GPU telemetry through %s (%s)", name, first.get("gpu_name"))
        return reader, name, first
    return None, None, {}


def _module_present(name: str) -> bool:
    """Cheap presence check: already imported, or findable without importing it."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _gpu_values(backend: str, source: str, name: Any, total_b: float, used_b: float,
                util: Any = None, mem_util: Any = None) -> dict[str, Any]:
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return {
        "gpu_total_mb": float(total_b) / _MIB,
        "gpu_used_mb": float(used_b) / _MIB,
        "gpu_free_mb": float(total_b - used_b) / _MIB,
        "gpu_util_percent": None if util is None else float(util),
        "gpu_mem_util_percent": None if mem_util is None else float(mem_util),
        "gpu_name": None if name is None else str(name),
        "gpu_backend": backend,
        "sample_source": source,
    }


def _nvml_reader() -> Callable[[], dict[str, Any]] | None:
    global _nvml_module
    if not _module_present("pynvml"):
        _dropped_sources.add("nvml")
        return None
    pynvml = importlib.import_module("pynvml")
    pynvml.nvmlInit()
    _nvml_module = pynvml
    handle = _nvml_handle(pynvml)
    try:
        name = pynvml.nvmlDeviceGetName(handle)
    except Exception:  # noqa: BLE001 - the name is optional
        name = None
    util_state = {"ok": True}

    def read() -> dict[str, Any]:
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        util = mem_util = None
        if util_state["ok"]:
            try:
                rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
                util, mem_util = rates.gpu, rates.memory
            except Exception:  # noqa: BLE001 - unsupported on some boards: memory only
                util_state["ok"] = False
        # free = total - used, as upstream: NVML's own `free` leaves out reserved memory.
        return _gpu_values("nvml", "nvml", name, float(mem.total), float(mem.used), util, mem_util)

    return read


def _nvml_handle(pynvml: Any) -> Any:
    """NVML handle of the GPU CUDA calls device 0 (NVML ignores ``CUDA_VISIBLE_DEVICES``)."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if first.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(first))
    if first.startswith(("GPU-", "MIG-")):
        return pynvml.nvmlDeviceGetHandleByUUID(first)
    return pynvml.nvmlDeviceGetHandleByIndex(0)


def _cupy_reader() -> Callable[[], dict[str, Any]] | None:
    if not _module_present("cupy"):
        _dropped_sources.add("cupy")
        return None
    cupy = importlib.import_module("cupy")
    if not cupy.cuda.is_available():
        _dropped_sources.add("cupy")
        return None
    runtime = cupy.cuda.runtime
    try:
        name = runtime.getDeviceProperties(runtime.getDevice())["name"]
    except Exception:  # noqa: BLE001 - the name is optional
        name = None

    def read() -> dict[str, Any]:
        free_b, total_b = runtime.memGetInfo()
        return _gpu_values("cupy", "cupy_meminfo", name, float(total_b), float(total_b) - float(free_b))

    return read


def _torch_reader() -> Callable[[], dict[str, Any]] | None:
    # Never import torch to sample, nor create a CUDA context it does not already have.
    # "Not yet" is not cached (a dict lookup and a flag are cheap to re-check);
    # "no CUDA at all" is.
    cuda = getattr(sys.modules.get("torch"), "cuda", None)  # None too while torch is half-imported
    if cuda is None or not cuda.is_initialized():
        if cuda is not None and not cuda.is_available():
            _dropped_sources.add("torch")
        return None
    try:
        name = cuda.get_device_name()
    except Exception:  # noqa: BLE001 - the name is optional
        name = None

    def read() -> dict[str, Any]:
        free_b, total_b = cuda.mem_get_info()
        return _gpu_values("torch", "torch_mem_get_info", name, float(total_b), float(total_b) - float(free_b))

    return read


_READER_FACTORIES: dict[str, Callable[[], Callable[[], dict[str, Any]] | None]] = {
    "nvml": _nvml_reader,
    "cupy": _cupy_reader,
    "torch": _torch_reader,
}
