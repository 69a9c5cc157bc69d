"""The GPU health check: a tiny kernel must really run and give the right answer.

A CUDA library can import, and even report a device, yet fail on first use (a
missing NVRTC, a driver older than the toolkit, a device in a bad state). The only
proof that a backend works is a kernel that ran: :func:`check_health` is that proof,
used by :func:`~zemosaic_xp.backends.select_backend` for CuPy and torch CUDA and by
the GPU policy of a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .selection import Backend

__all__ = ["check_health", "HEALTH_EXPECTED"]

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
        return False, f"{backend.name} health check failed ({_error_text(exc)})"
    if value != HEALTH_EXPECTED:
        return False, f"{backend.name} health check returned {value}, expected {HEALTH_EXPECTED}"
    return True, f"{backend.name} health check passed"


def _error_text(exc: BaseException) -> str:
    """``"Type: first line"`` of an exception (driver messages can run over many lines)."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
