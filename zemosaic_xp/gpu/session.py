"""One attempt of a unit of GPU work: the session a band driver stacks on, and its outcome.

A :class:`DeviceSession` is the :class:`~zemosaic_xp.core.band_driver.BandDevice` of one
attempt (GPU or CPU) of :meth:`~.policy.GpuPolicy.run`: it moves host arrays to the
backend and results back, times the transfers, and lets a fault injector corrupt
downloads. :class:`UnitRun` is what the policy returns; :func:`garbage_reason` is the
one check that a GPU result is garbage.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..backends import Backend, to_backend, to_host
from ..core.band_driver import BandDevice

__all__ = ["DeviceSession", "UnitRun", "GpuResultError", "garbage_reason"]


class GpuResultError(RuntimeError):
    """A GPU attempt returned garbage (all-NaN or all-zero where inputs have data)."""


def garbage_reason(image: np.ndarray, *, has_data: bool, has_nonzero: bool = False) -> str | None:
    """Say why a GPU image is garbage, or return None when it is plausible.

    Parameters
    ----------
    image : ndarray, float
        The GPU result on the host, any shape; NaN = no data.
    has_data : bool
        The inputs had at least one valid sample here: an all-NaN image is garbage.
    has_nonzero : bool
        The inputs had a non-zero valid sample: an image of only zeros and NaN is garbage.

    Returns
    -------
    str or None
        One line naming the problem (raise it as :class:`GpuResultError`), or None.
    """
    finite = np.isfinite(image)
    if has_data and not finite.any():
        return "GPU result is all-NaN although the inputs have data"
    if has_nonzero and not np.any(finite & (image != 0)):
        return "GPU result is all zero although the inputs have non-zero data"
    return None


class DeviceSession(BandDevice):
    """One attempt to stack a unit on one backend: its budget, transfers and timings.

    :meth:`GpuPolicy.run` creates the sessions; ``backend``, ``attempt``,
    ``budget_bytes`` and ``rows`` are kept as attributes of the same names.

    Parameters
    ----------
    backend : Backend
        Where this attempt computes.
    attempt : int
        Run-wide GPU attempt number (1, 2, ...), or 0 for a CPU session.
    budget_bytes : int
        Working memory of one band on the device.
    rows : int or None
        Band rows imposed by the policy (after an OOM); None lets the caller size
        bands from ``budget_bytes`` and store its choice in :attr:`rows`.
    faults : FaultInjector, optional
        Test seam that may corrupt downloads of GPU attempts; None in production.

    Attributes
    ----------
    seconds : dict of str to float
        Wall time of ``read`` (host I/O), ``upload``, ``compute`` and ``download``, in
        seconds.
    """

    def __init__(self, backend: Backend, *, attempt: int, budget_bytes: int, rows: int | None,
                 faults: Any = None) -> None:
        super().__init__(backend.xp, device=backend.device)
        self.backend = backend
        self.attempt = attempt
        self.budget_bytes = int(budget_bytes)
        self.rows = rows
        self.seconds = {"read": 0.0, "upload": 0.0, "compute": 0.0, "download": 0.0}
        self._faults = faults

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``seconds[key]``.

        Parameters
        ----------
        key : str
            Entry of :attr:`seconds` (``"read"``, ``"upload"``, ...); created at 0 if
            new.

        Yields
        ------
        None
            Control to the timed block; the time is added even when it raises.
        """
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0

    def upload(self, host: np.ndarray | None) -> Any:
        """Move a host array to this session's device as native float32.

        Parameters
        ----------
        host : ndarray or None
            Host array (timed as ``upload``).

        Returns
        -------
        array or None
            On the session's backend and device; None when ``host`` is None.
        """
        if host is None:
            return None
        with self.timed("upload"):
            order = _stored_order(host) if self.backend.is_gpu else None
            if order is None:
                return to_backend(host, self.backend)
            # A strided view (BandReader's frames-last view of its frames-first block): sent
            # in memory order (no copy for a whole block, runs of rows for part of one) and
            # transposed by the GPU, not by the host.
            device = to_backend(np.transpose(host, order), self.backend)
            return self.backend.xp.permute_dims(device, tuple(int(k) for k in np.argsort(order)))

    def download(self, array: Any) -> np.ndarray:
        """Copy a device array to the host.

        Parameters
        ----------
        array : array
            Result on the session's backend (timed as ``download``).

        Returns
        -------
        ndarray
            Host copy. On GPU attempts a fault injector may replace it with all-NaN or
            all-zero values (tests).
        """
        with self.timed("download"):
            host = np.asarray(to_host(array))
        if self._faults is not None and self.attempt > 0:
            host = self._faults.filter_download(host)
        return host

    def timings_ms(self) -> dict[str, float]:
        """Report :attr:`seconds` in milliseconds.

        Returns
        -------
        dict of str to float
            ``read_ms``, ``upload_ms``, ``compute_ms``, ``download_ms`` (and any other
            timed key with ``_ms``), rounded to 0.1 ms.
        """
        return {f"{k}_ms": round(v * 1e3, 1) for k, v in self.seconds.items()}


@dataclass
class UnitRun:
    """Outcome of :meth:`GpuPolicy.run` for one unit (a tile or a block).

    Attributes
    ----------
    value : object
        What the work function returned on the successful session.
    used_gpu : bool
        The successful session was a GPU attempt.
    session : DeviceSession
        The successful session (backend, rows, budget, timings).
    attempts : list of dict
        One entry per session tried: ``attempt``, ``backend``, ``rows``,
        ``budget_bytes``, ``ok``, ``error``, ``oom``.
    """

    value: Any
    used_gpu: bool
    session: DeviceSession
    attempts: list[dict] = field(default_factory=list)

    @property
    def fallbacks(self) -> int:
        """Number of failed GPU tries of this unit.

        Returns
        -------
        int
            Entries of :attr:`attempts` with ``ok`` False.
        """
        return sum(1 for a in self.attempts if not a["ok"])


def _stored_order(array: np.ndarray) -> tuple[int, ...] | None:
    """``array``'s axes from the largest stride to the smallest, or None when in that order already."""
    if array.flags.c_contiguous or array.ndim < 2:
        return None
    order = tuple(sorted(range(array.ndim), key=lambda k: -abs(array.strides[k])))
    return None if order == tuple(range(array.ndim)) else order
