"""The one GPU fault injector — for tests and rehearsals, usable on CPU-only machines.

:class:`FaultInjector` builds a backend that *behaves like a GPU backend*
(``is_gpu=True``) on top of a real one (NumPy by default, or a real CuPy / torch CUDA
backend on a GPU machine), and schedules what happens on each GPU attempt of a run
(a master tile in classic mode, a block in grid mode; attempts are counted by the
:class:`~zemosaic_xp.gpu.policy.GpuPolicy` across the run):

======== ===================================================================
fault    effect on that attempt
======== ===================================================================
"ok"     nothing (the default for attempts beyond the schedule)
"oom"    the ``at_call``-th call into the array namespace raises an
         out-of-memory ``MemoryError`` subclass, as CuPy does
"oom_rt" same, as a ``RuntimeError("CUDA error: out of memory")`` (torch/driver)
"error"  same call raises a non-OOM ``RuntimeError`` (a crashed kernel)
"nan"    every floating-point download is all NaN (garbage result)
"zero"   every floating-point download is all zero (garbage result)
======== ===================================================================

Errors are raised from *inside* the core's computation (the namespace wraps every
function of the backend's ``xp``), so the real error paths of
:func:`~zemosaic_xp.classic.stack_master_tile` and of grid tiles are exercised.
``health="error"`` makes the policy's health check fail. On top of NumPy the fake GPU
takes NumPy's code paths, so its successful results are bit-identical to a CPU run.

Examples
--------
>>> injector = FaultInjector(["oom", "ok"])
>>> policy = injector.policy("auto")          # GpuPolicy on the fake GPU
>>> # stack_master_tile(paths, config, gpu_policy=policy) -> attempt 1 OOM, attempt 2 ok
>>> grid_policy = FaultInjector(then="error").policy(grid=True)   # every GPU block fails
>>> # run_grid_mode(folder, out, gpu_policy=grid_policy) -> 3 CPU fallbacks, then GPU off

Not for production use: nothing in the library creates an injector.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backends import Backend, select_backend
from .policy import GpuPolicy

__all__ = ["FaultInjector", "InjectedOutOfMemoryError", "InjectedGpuError", "FAULTS"]

#: Fault names accepted by :class:`FaultInjector`.
FAULTS = ("ok", "oom", "oom_rt", "error", "nan", "zero")


class InjectedOutOfMemoryError(MemoryError):
    """Injected device OOM (a ``MemoryError`` subclass, like CuPy's ``OutOfMemoryError``)."""


class InjectedGpuError(RuntimeError):
    """Injected non-OOM device failure."""


class _FaultyNamespace:
    """An array namespace that forwards to ``xp`` and asks the injector before each call."""

    def __init__(self, injector: FaultInjector, xp: Any) -> None:
        self._injector = injector
        self._xp = xp

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._xp, name)
        # Wrap functions only: dtypes (classes), constants and sub-modules pass through.
        if inspect.isclass(attr) or inspect.ismodule(attr) or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._injector.before_call(name)
            return attr(*args, **kwargs)

        call.__name__ = name
        return call


class FaultInjector:
    """Schedule GPU faults per attempt; see the module docstring.

    Parameters
    ----------
    faults : sequence of str or BaseException
        Fault of GPU attempt 1, 2, ... of the run (counted across units, as
        :attr:`GpuPolicy.attempts` counts them). An exception instance is raised
        as is.
    then : str
        Fault of every attempt beyond ``faults`` (default ``"ok"``; ``"error"`` = a GPU
        that always fails).
    health : {"ok", "error"}
        Outcome of the policy's health check.
    at_call : int
        Which call into the namespace (1 = the first) raises, counted from the
        start of the attempt.
    base : str or Backend
        Real backend underneath (``"numpy"``; ``"cupy"`` or ``"torch:cuda"`` on a GPU
        machine to inject faults into a real GPU run).

    Attributes
    ----------
    backend : Backend
        The GPU-like backend to give to :class:`GpuPolicy`.
    log : list of (attempt, fault)
        Attempts seen, with the fault each received (0 = health check).
    """

    def __init__(self, faults: Sequence[str | BaseException] = (), *, then: str = "ok", health: str = "ok",
                 at_call: int = 1, base: str | Backend = "numpy") -> None:
        for fault in (*faults, then):
            if not isinstance(fault, BaseException) and fault not in FAULTS:
                msg = f"fault must be one of {FAULTS} or an exception, got {fault!r}"
                raise ValueError(msg)
        if health not in ("ok", "error"):
            msg = f"`health` must be 'ok' or 'error', got {health!r}"
            raise ValueError(msg)
        if isinstance(at_call, bool) or not isinstance(at_call, int) or at_call < 1:
            msg = f"`at_call` must be an integer >= 1, got {at_call!r}"
            raise ValueError(msg)
        self.faults = list(faults)
        self.then = then
        self.health = health
        self.at_call = at_call
        real = select_backend(base)
        name = real.name if real.is_gpu else f"{real.name}:fake-gpu"
        self.backend = Backend(name, _FaultyNamespace(self, real.xp), real.device, True)
        self.log: list[tuple[int, Any]] = []
        self._fault: Any = None
        self._calls = 0

    def policy(self, mode: str = "auto", *, grid: bool = False, **kwargs: Any) -> GpuPolicy:
        """Build a :class:`GpuPolicy` on this injector's fake GPU, wired to the injector.

        Parameters
        ----------
        mode : {"auto", "gpu", "cpu"}
            The policy's mode.
        grid : bool
            Use grid mode's settings (:meth:`GpuPolicy.for_grid`) instead of the
            master-tile ones.
        **kwargs
            Other :class:`GpuPolicy` keywords (``cpu_backend``, ``attempts``, ...).

        Returns
        -------
        GpuPolicy
            A new policy whose GPU is :attr:`backend`.
        """
        make = GpuPolicy.for_grid if grid else GpuPolicy
        return make(mode, self.backend, fault_injector=self, **kwargs)

    @property
    def gpu_attempts(self) -> list[tuple[int, Any]]:
        """GPU attempts seen so far (health check excluded), with their faults.

        Returns
        -------
        list of (int, str or BaseException)
            ``(attempt, fault)`` pairs of :attr:`log` with ``attempt > 0``.
        """
        return [(a, f) for a, f in self.log if a > 0]

    def fault_for(self, attempt: int) -> Any:
        """Look up the fault scheduled for one attempt.

        Parameters
        ----------
        attempt : int
            Run-wide GPU attempt number (1 = the first); 0 = the health check.

        Returns
        -------
        str or BaseException
            A name of :data:`FAULTS` (``"ok"`` or ``"error"`` for the health check),
            or the exception to raise.
        """
        if attempt == 0:
            return "ok" if self.health == "ok" else "error"
        return self.faults[attempt - 1] if attempt <= len(self.faults) else self.then

    # -- hooks called by GpuPolicy / DeviceSession --------------------------
    def begin_attempt(self, attempt: int) -> None:
        """Arm the fault of ``attempt`` and log it (called by the policy).

        Parameters
        ----------
        attempt : int
            Run-wide GPU attempt number; 0 = the health check.
        """
        self._fault = self.fault_for(attempt)
        self._calls = 0
        self.log.append((attempt, self._fault))

    def end_attempt(self) -> None:
        """Disarm the current fault (called by the policy after each attempt)."""
        self._fault = None

    def before_call(self, name: str) -> None:
        """Count a call into the namespace and raise the armed fault at ``at_call``.

        Parameters
        ----------
        name : str
            Name of the namespace function being called (quoted in the message).

        Raises
        ------
        InjectedOutOfMemoryError
            Fault ``"oom"``.
        RuntimeError
            Fault ``"oom_rt"`` (``"CUDA error: out of memory"``).
        InjectedGpuError
            Fault ``"error"``.
        BaseException
            The scheduled exception instance, as is.
        """
        fault = self._fault
        if fault is None or fault in ("ok", "nan", "zero"):
            return
        self._calls += 1
        if self._calls != self.at_call:
            return
        if isinstance(fault, BaseException):
            raise fault
        if fault == "oom":
            msg = f"Out of memory allocating 1,073,741,824 bytes in {name}() (injected)"
            raise InjectedOutOfMemoryError(msg)
        if fault == "oom_rt":
            msg = f"CUDA error: out of memory in {name}() (injected)"
            raise RuntimeError(msg)
        msg = f"CUDA error: an illegal memory access was encountered in {name}() (injected)"
        raise InjectedGpuError(msg)

    def filter_download(self, host: np.ndarray) -> np.ndarray:
        """Corrupt floating-point downloads on ``"nan"`` / ``"zero"`` attempts.

        Parameters
        ----------
        host : ndarray
            A download of the current attempt.

        Returns
        -------
        ndarray
            ``host`` itself, or a new array of its shape and dtype filled with NaN or
            0 when the attempt's fault says so and ``host`` is floating point.
        """
        if self._fault in ("nan", "zero") and host.dtype.kind == "f":
            return np.full_like(host, np.nan if self._fault == "nan" else 0.0)
        return host
