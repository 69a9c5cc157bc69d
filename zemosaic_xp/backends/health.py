"""The GPU health check: a tiny kernel must really run and give the right answer.

A CUDA library can import, and even report a device, yet fail on first use (a
missing NVRTC, a driver older than the toolkit, a device in a bad state). The only
proof that a backend works is a kernel that ran: :func:`check_health` is that proof,
used by :func:`~zemosaic_xp.backends.select_backend` for CuPy and torch CUDA and by
the GPU policy of a run.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .selection import Backend

__all__ = ["check_health", "gpu_driver_present", "error_text", "HEALTH_EXPECTED", "GPU_PROBE_ENV"]

#: Set to ``0`` to skip :func:`gpu_driver_present` (always try to import the GPU libraries).
GPU_PROBE_ENV = "ZEMOSAIC_XP_GPU_PROBE"

# Where a GPU driver shows itself without importing anything: NVIDIA's kernel module and
# device nodes (also inside containers run with the NVIDIA runtime), WSL2's CUDA
# library, AMD's ROCm node (torch's "cuda" device on ROCm builds).
_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/usr/lib/wsl/lib/libcuda.so", "/dev/kfd")
_DRIVER_GLOBS = ("/dev/nvidia[0-9]*",)

#: What the health kernel must return: ``sum(arange(16) * 2) = 2 · (0 + … + 15)``.
HEALTH_EXPECTED = 240.0


def check_health(backend: Backend) -> tuple[bool, str]:
    """Run a tiny kernel on ``backend``'s device and check its result.

    Parameters
    ----------
    backend : Backend
        Any backend; its namespace ``xp`` and ``device`` are used as they are (nothing
        is imported or selected here).

    Returns
    -------
    ok : bool
        True when ``sum(arange(16, float32) * 2)`` computed on the device equals 240.0.
    reason : str
        What happened, starting with the backend's name: the wrong value, or the
        error the kernel raised (type and first line), or that it passed.

    Notes
    -----
    Never raises: any exception from the library is a failed check. The ``float()``
    of the sum synchronises with the device, so an asynchronous kernel error surfaces
    here rather than in the caller's first real kernel.
    """
    xp = backend.xp
    try:
        probe = xp.arange(16, dtype=xp.float32, device=backend.device)
        value = float(xp.sum(probe * 2.0))
    except Exception as exc:  # noqa: BLE001 - any device or driver error means "unusable"
        return False, f"{backend.name} health check failed ({error_text(exc)})"
    if value != HEALTH_EXPECTED:
        return False, f"{backend.name} health check returned {value}, expected {HEALTH_EXPECTED}"
    return True, f"{backend.name} health check passed"


def gpu_driver_present() -> tuple[bool, str]:
    """Whether this machine could run CuPy or torch CUDA, judged without importing them.

    Importing torch only to learn that CUDA is unavailable costs about 2 s; this probe
    costs a few ``stat`` calls. It looks for NVIDIA's kernel module or device nodes,
    WSL2's ``libcuda.so``, AMD's ROCm node (``/dev/kfd``) on Linux, and ``nvcuda.dll``
    on Windows. macOS has no CUDA.

    Returns
    -------
    present : bool
        A driver was found, or the probe is switched off (``ZEMOSAIC_XP_GPU_PROBE=0``)
        or cannot judge this platform: then the libraries are imported and health-
        checked as usual.
    reason : str
        What was found, or why no GPU library is worth importing.
    """
    if os.environ.get(GPU_PROBE_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return True, f"driver probe off ({GPU_PROBE_ENV}=0)"
    if sys.platform == "darwin":
        return False, "no CUDA on macOS"
    if sys.platform.startswith("win"):
        dll = os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32", "nvcuda.dll")
        return (True, dll) if os.path.exists(dll) else (False, f"no NVIDIA driver ({dll} not found)")
    if not sys.platform.startswith("linux"):
        return True, f"driver probe cannot judge {sys.platform}"
    for path in _DRIVER_FILES:
        if os.path.exists(path):
            return True, path
    for pattern in _DRIVER_GLOBS:
        found = glob.glob(pattern)
        if found:
            return True, found[0]
    return False, "no NVIDIA or ROCm driver (no /proc/driver/nvidia, /dev/nvidia*, /dev/kfd)"


def error_text(exc: BaseException) -> str:
    """``"Type: first line"`` of an exception (driver messages can run over many lines).

    Parameters
    ----------
    exc : BaseException
        The error.

    Returns
    -------
    str
        Its type name, with the first line of its message when it has one.
    """
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
