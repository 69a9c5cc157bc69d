"""GPU memory probes for telemetry: read a GPU's memory without taking it over.

A telemetry sampler asks every second or so how much GPU memory the run uses. It
must not import a GPU library nor create a CUDA context (hundreds of MiB of device
memory, and a GPU "in use" that the run never asked for). :func:`open_gpu_probe`
opens one reader per source:

- ``"nvml"``: the driver's management library (``pynvml``, nvidia-ml-py), which
  needs no CUDA context and also gives the utilisation;
- ``"cupy"``: ``memGetInfo`` of a CuPy that the process has already imported;
- ``"torch"``: ``cuda.mem_get_info`` of a torch that has already initialised CUDA.

The CUDA memory calls themselves are :func:`~zemosaic_xp.backends.memory.cuda_free_total`,
the ones band sizing uses. Which source to use, and what to do when one fails, is
the caller's policy (:mod:`zemosaic_xp.telemetry.sampler`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from .memory import cuda_free_total
from .selection import BackendUnavailable

__all__ = ["GPU_PROBE_SOURCES", "GpuMemoryReading", "GpuProbe", "open_gpu_probe"]

#: Sources :func:`open_gpu_probe` knows, in the order a sampler should try them.
GPU_PROBE_SOURCES = ("nvml", "cupy", "torch")


@dataclass(frozen=True)
class GpuMemoryReading:
    """One reading of a GPU's memory.

    Attributes
    ----------
    source : str
        ``"nvml"``, ``"cupy"`` or ``"torch"``.
    total_bytes, used_bytes : int
        Device memory; used = total − free (NVML: its own ``used``, since its ``free``
        leaves out reserved memory).
    name : str or None
        The device name, when the library gives it.
    util_percent, mem_util_percent : float or None
        GPU and memory-controller utilisation over the driver's last sample period
        (NVML only, and not on every board).
    """

    source: str
    total_bytes: int
    used_bytes: int
    name: str | None = None
    util_percent: float | None = None
    mem_util_percent: float | None = None

    @property
    def free_bytes(self) -> int:
        """Free device memory at the time of the reading.

        Returns
        -------
        int
            ``total_bytes − used_bytes``, in bytes.
        """
        return self.total_bytes - self.used_bytes


class GpuProbe:
    """A reader of one GPU's memory through one source (see :func:`open_gpu_probe`).

    Parameters
    ----------
    source : str
        The source name.
    read : callable() -> GpuMemoryReading
        Reads the device now; may raise when the driver fails.
    close : callable(), optional
        Releases what opening the probe acquired (NVML's ``nvmlShutdown``).
    """

    def __init__(self, source: str, read: Callable[[], GpuMemoryReading],
                 close: Callable[[], None] | None = None) -> None:
        self.source = source
        self._read = read
        self._close = close

    def read(self) -> GpuMemoryReading:
        """Read the device's memory now.

        Returns
        -------
        GpuMemoryReading
            Memory in use and in total, with the device name and utilisation where known.

        Raises
        ------
        Exception
            Whatever the library raises (driver lost, device reset).
        """
        return self._read()

    def close(self) -> None:
        """Release the source (idempotent, never raises)."""
        close, self._close = self._close, None
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass


def open_gpu_probe(source: str, *, new_context: bool = False) -> GpuProbe | None:
    """Open a reader of GPU memory through ``source``.

    Parameters
    ----------
    source : {"nvml", "cupy", "torch"}
        Which library to read through (:data:`GPU_PROBE_SOURCES`).
    new_context : bool
        False (the default, for telemetry): never import CuPy or torch and never
        create a CUDA context; CuPy is read only once the process has imported it, torch
        only once it has initialised CUDA. True: import the library and let the first
        read create a context if there is none. NVML never needs a context.

    Returns
    -------
    GpuProbe or None
        None means "not yet": the library is not in use now and may be later, so ask
        again.

    Raises
    ------
    BackendUnavailable
        The source cannot work in this process (library missing or blocked, no CUDA
        device): no need to ask again.
    ValueError
        Unknown ``source``.
    Exception
        What the library raised while opening (NVML without a driver).
    """
    opener = _OPENERS.get(source)
    if opener is None:
        msg = f"`source` must be one of {GPU_PROBE_SOURCES}, got {source!r}"
        raise ValueError(msg)
    return opener(new_context)


def _decoded(name: Any) -> str | None:
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return None if name is None else str(name)


def _optional(getter: Callable[[], Any]) -> Any:
    """``getter()``, or None when it raises (device names are optional)."""
    try:
        return getter()
    except Exception:  # noqa: BLE001 - the value is optional
        return None


def _imported(module: str, new_context: bool) -> Any:
    """The module if imported (or, with ``new_context``, importable); None = not yet.

    Raises BackendUnavailable when it is blocked (``sys.modules[module] is None``) or
    not installed.
    """
    if module in sys.modules:
        loaded = sys.modules[module]
        if loaded is None:
            msg = f"{module} is blocked in this process"
            raise BackendUnavailable(msg)
        return loaded
    try:
        installed = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        msg = f"{module} is not installed"
        raise BackendUnavailable(msg)
    return importlib.import_module(module) if new_context else None


def _open_nvml(new_context: bool) -> GpuProbe:
    pynvml = _imported("pynvml", True)  # NVML needs no CUDA context: always usable
    pynvml.nvmlInit()
    try:
        handle = _nvml_handle(pynvml)
    except Exception:
        pynvml.nvmlShutdown()
        raise
    name = _decoded(_optional(lambda: pynvml.nvmlDeviceGetName(handle)))
    util_supported = [True]

    def read() -> GpuMemoryReading:
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        util = mem_util = None
        if util_supported[0]:
            try:
                rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
                util, mem_util = float(rates.gpu), float(rates.memory)
            except Exception:  # noqa: BLE001 - unsupported on some boards: memory only
                util_supported[0] = False
        return GpuMemoryReading("nvml", int(mem.total), int(mem.used), name, util, mem_util)

    return GpuProbe("nvml", read, pynvml.nvmlShutdown)


def _nvml_handle(pynvml: Any) -> Any:
    """NVML handle of the GPU CUDA calls device 0 (NVML ignores ``CUDA_VISIBLE_DEVICES``)."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if first.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(first))
    if first.startswith(("GPU-", "MIG-")):
        return pynvml.nvmlDeviceGetHandleByUUID(first)
    return pynvml.nvmlDeviceGetHandleByIndex(0)


def _open_cupy(new_context: bool) -> GpuProbe | None:
    cupy = _imported("cupy", new_context)
    if cupy is None:
        return None
    if not cupy.cuda.is_available():
        msg = "cupy reports no CUDA device"
        raise BackendUnavailable(msg)
    runtime = cupy.cuda.runtime
    name = _decoded(_optional(lambda: runtime.getDeviceProperties(runtime.getDevice())["name"]))
    return _cuda_probe("cupy", cupy, name)


def _open_torch(new_context: bool) -> GpuProbe | None:
    torch = sys.modules.get("torch")
    if torch is None and new_context:
        torch = _imported("torch", True)
    # None too while torch is half-imported (no .cuda yet): "not yet", never "never".
    cuda = getattr(torch, "cuda", None)
    if cuda is None:
        return None
    if not cuda.is_initialized():
        if not cuda.is_available():
            msg = "torch reports no CUDA device"
            raise BackendUnavailable(msg)
        if not new_context:
            return None
    name = _decoded(_optional(cuda.get_device_name))
    return _cuda_probe("torch", torch, name)


def _cuda_probe(source: str, library: Any, name: str | None) -> GpuProbe:
    def read() -> GpuMemoryReading:
        free, total = cuda_free_total(library)
        return GpuMemoryReading(source, total, total - free, name)

    return GpuProbe(source, read)


_OPENERS: dict[str, Callable[[bool], GpuProbe | None]] = {
    "nvml": _open_nvml,
    "cupy": _open_cupy,
    "torch": _open_torch,
}
