"""One cheap snapshot of CPU, RAM and GPU use, for the telemetry controller.

:func:`sample_runtime_resources` reads psutil (optional) and one GPU source through
:func:`zemosaic_xp.backends.open_gpu_probe`: NVML (``pynvml``, nvidia-ml-py), else
the ``memGetInfo`` of a CuPy the process already uses, else the ``mem_get_info`` of a
torch that has already initialised CUDA. Sampling never imports CuPy or torch and
never creates a CUDA context. Every library is optional and every call is guarded: a
missing library, a missing driver or a library that raises gives None values, never
an exception.

Which GPU source works is found once per process and remembered. A source that
cannot work here, or raises (at detection or on a later read), is dropped for the
rest of the process, so a machine with CuPy installed but no driver pays the failed
probe once, not on every sample; :func:`reset_resource_probes` forgets all of this (a
driver came back, tests).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..backends import BackendUnavailable, GpuMemoryReading, GpuProbe, open_gpu_probe
from .cpu import CpuMeter

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
    "gpu_sample_source",
)

#: Keys of :func:`sample_runtime_resources`, in CSV order.
SAMPLE_KEYS = ("cpu_percent", "ram_used_mb", "ram_total_mb", "ram_available_mb") + GPU_KEYS

_MIB = float(2**20)
_SOURCE_ORDER = ("nvml", "cupy", "torch")
# gpu_backend and gpu_sample_source of each probe source, as upstream ZeMosaic names them.
_SOURCE_NAMES = {"nvml": ("nvml", "nvml"), "cupy": ("cupy", "cupy_meminfo"),
                 "torch": ("torch", "torch_mem_get_info")}

_lock = threading.Lock()
_psutil_module: Any = None  # the module, False once known missing, None before the first look
_gpu_probe: GpuProbe | None = None
_dropped_sources: set[str] = set()  # absent or failed: never probed again in this process
_cpu_meter = CpuMeter()  # machine-wide, shared by every thread and controller of the process


def sample_runtime_resources() -> dict[str, Any]:
    """Sample CPU, RAM and GPU use now.

    Returns
    -------
    dict
        ``cpu_percent`` (float, % of all cores since the previous sample of this
        process, over at least 0.1 s: :class:`~.cpu.CpuMeter`; never psutil's false
        0.0 of a first call), ``ram_used_mb``, ``ram_total_mb``, ``ram_available_mb``
        (float, MiB = 2**20 bytes; used = total - available), ``gpu_used_mb``,
        ``gpu_total_mb``, ``gpu_free_mb`` (float, MiB, device 0 or the first device of
        ``CUDA_VISIBLE_DEVICES``), ``gpu_util_percent``, ``gpu_mem_util_percent``
        (float, %, NVML only), ``gpu_name`` (str), ``gpu_backend`` (``"nvml"``,
        ``"cupy"`` or ``"torch"``) and ``gpu_sample_source`` (``"nvml"``,
        ``"cupy_meminfo"`` or ``"torch_mem_get_info"``). Keys whose source is missing
        or failed are None: CPU/RAM without psutil, all GPU keys without a working
        GPU source.

    Notes
    -----
    Never raises. A typical call costs tens of microseconds (psutil reads
    ``/proc``; NVML queries the driver); the first call also detects the GPU source
    (imports ``pynvml`` or ``cupy``, a few hundred milliseconds at most, once).

    CuPy's and torch's ``mem_get_info`` create a CUDA context on the device if the
    process has none, so they are only consulted once the run uses them: CuPy when
    it is already imported, torch when it is already imported *and* has initialised
    CUDA. Sampling never imports either or wakes up a GPU that the run is not using.
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
    in tests. Closes the GPU probe in use (NVML is shut down if it was initialised here).
    """
    global _psutil_module, _gpu_probe, _cpu_meter
    with _lock:
        if _gpu_probe is not None:
            _gpu_probe.close()
        _psutil_module = None
        _gpu_probe = None
        _dropped_sources.clear()
        _cpu_meter = CpuMeter()


def prime_cpu_percent() -> None:
    """Open the CPU-percent window now, so that the first sample measures from here.

    Without it, the first sample waits 0.1 s to measure a window of its own
    (:class:`~.cpu.CpuMeter`); it never reports psutil's false 0.0.
    """
    psutil = _psutil()
    if psutil is not None:
        try:
            _cpu_meter.prime(psutil)
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
    mem = psutil.virtual_memory()
    out: dict[str, Any] = {"cpu_percent": float(_cpu_meter.read(psutil))}
    total, available = float(mem.total), float(mem.available)
    out["ram_total_mb"] = total / _MIB
    out["ram_available_mb"] = available / _MIB
    out["ram_used_mb"] = (total - available) / _MIB
    return out


def _sample_gpu() -> dict[str, Any]:
    global _gpu_probe
    with _lock:
        if _gpu_probe is None:
            _gpu_probe, first = _detect_gpu_probe()
            return first
        try:
            return _gpu_values(_gpu_probe.read())
        except Exception as exc:  # noqa: BLE001 - a driver can fail at any time
            logger.warning("[TELEMETRY] GPU sampling through %s failed (%s); it is disabled "
                           "for the rest of this process", _gpu_probe.source, exc)
            _drop(_gpu_probe)
            _gpu_probe = None
            return {}


def _detect_gpu_probe() -> tuple[GpuProbe | None, dict[str, Any]]:
    """First source, in ``_SOURCE_ORDER``, whose probe opens and reads once without error.

    Returns the probe and its trial read (None / empty when no source works now).
    Load-bearing: the trial read happens here, so a library that imports and reports
    a device but fails on use (CuPy without a driver) is dropped at once.
    """
    for name in _SOURCE_ORDER:
        if name in _dropped_sources:
            continue
        probe = None
        try:
            probe = open_gpu_probe(name, new_context=False)
            if probe is None:  # not in use yet: ask again at the next sample
                continue
            first = _gpu_values(probe.read())
        except BackendUnavailable as exc:
            logger.debug("[TELEMETRY] GPU source %s absent (%s)", name, exc)
            _dropped_sources.add(name)
            continue
        except Exception as exc:  # noqa: BLE001 - any failure means "not this source"
            logger.info("[TELEMETRY] GPU source %s unusable (%s); not retried in this process",
                        name, exc)
            if probe is not None:
                _drop(probe)
            else:
                _dropped_sources.add(name)
            continue
        logger.debug("[TELEMETRY] GPU telemetry through %s (%s)", name, first.get("gpu_name"))
        return probe, first
    return None, {}


def _drop(probe: GpuProbe) -> None:
    """Never use ``probe``'s source again in this process, and release it."""
    _dropped_sources.add(probe.source)
    probe.close()


def _gpu_values(reading: GpuMemoryReading) -> dict[str, Any]:
    backend, source = _SOURCE_NAMES[reading.source]
    total, used = float(reading.total_bytes), float(reading.used_bytes)
    return {
        "gpu_total_mb": total / _MIB,
        "gpu_used_mb": used / _MIB,
        "gpu_free_mb": (total - used) / _MIB,
        "gpu_util_percent": None if reading.util_percent is None else float(reading.util_percent),
        "gpu_mem_util_percent": None if reading.mem_util_percent is None else float(reading.mem_util_percent),
        "gpu_name": reading.name,
        "gpu_backend": backend,
        "gpu_sample_source": source,
    }
