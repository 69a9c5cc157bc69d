"""The one GPU policy: ZeMosaic's "auto mode C" with a circuit breaker, state owned by the run.

A :class:`GpuPolicy` is created once per run (a series of master tiles, a grid
mosaic) and every unit of GPU work of that run goes through :meth:`GpuPolicy.run`:
a whole master tile (classic) or one block of a grid tile. All state — health,
failures, hard-disable, the OOM budget scale, the device lock — lives in the object,
so two runs in one process never see each other's state (ZeMosaic kept it in module
globals, ``upstream_spec`` §4.2).

For each unit, when the GPU is a candidate (mode ``auto`` or ``gpu``, health check
passed, not hard-disabled):

1. up to ``attempts`` tries on the GPU (2 for master tiles, ZeMosaic's mode C; 1 for
   grid blocks, whose failures are cheap to redo);
2. after a failed try: if it was an out-of-memory error, free the device memory and
   halve the byte budget (and the band rows) for the next try and the rest of the
   run; then retry, logging ``... retrying once``;
3. when the tries are used up, the unit runs on the CPU. The GPU is hard-disabled
   for the rest of the run when a unit used up its tries (``max_failures=None``,
   mode C: ``[P3][GPU] GPU disabled for remaining Phase 3 tiles after repeated
   failures.``) or when the run counted ``max_failures`` failures (the breaker; grid's
   default 3).

A GPU result that the caller's ``check`` rejects (see :func:`garbage_reason`) counts
as a failure. The health check (:func:`~zemosaic_xp.backends.check_health`) runs once
per policy. GPU work is serialised by the policy's device lock, so threads sharing a
run never run two stacks on one GPU at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..backends import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailable,
    check_health,
    free_device_memory,
    is_oom_error,
    select_backend,
)
from ..backends.health import error_text
from .session import DeviceSession, UnitRun

__all__ = ["GpuPolicy", "GPU_MODES", "DISABLED_MESSAGE"]

logger = logging.getLogger(__name__)

#: Policy modes: ``auto`` (GPU when healthy, else CPU), ``gpu`` (GPU required at the
#: health check), ``cpu`` (never the GPU).
GPU_MODES = ("auto", "gpu", "cpu")

_GPU_NAMES = ("cupy", "torch:cuda")
_MIB = 1024**2
# Once an OOM halved the budget, later units of the run start from the halved budget
# too (ZeMosaic keeps a run-wide row cap after OOMs); never below 1/64 of it.
_MIN_BUDGET_SCALE = 1.0 / 64.0

#: The exact line logged when mode C gives up on the GPU for the rest of the run.
DISABLED_MESSAGE = "[P3][GPU] GPU disabled for remaining Phase 3 tiles after repeated failures."


class GpuPolicy:
    """GPU decisions and state of one run (mode C, breaker, device lock).

    Parameters
    ----------
    mode : {"auto", "gpu", "cpu"}
        ``auto``: use the GPU when one passes the health check, else the CPU (one
        INFO line says which). ``gpu``: a GPU is required; an unusable one raises
        :class:`~zemosaic_xp.backends.BackendUnavailable` at the first unit.
        ``cpu``: never use the GPU. In ``auto`` and ``gpu`` runtime failures follow
        the module docstring.
    backend : {"cupy", "torch:cuda"} or Backend, optional
        The GPU to use; default: CuPy, then torch CUDA, whichever is usable. A
        :class:`~zemosaic_xp.backends.Backend` with ``is_gpu=True`` is used as is (tests
        inject a fake GPU this way, see :mod:`zemosaic_xp.gpu.testing`).
    cpu_backend : str or Backend
        Backend of CPU units and of the fallback (default ``"numpy"``).
    fault_injector : FaultInjector, optional
        Test seam (:class:`zemosaic_xp.gpu.testing.FaultInjector`): told when each GPU
        attempt starts and may corrupt downloads. None in production.
    attempts : int
        GPU tries per unit before it runs on the CPU (2 = mode C).
    max_failures : int, optional
        Failures in the run after which the GPU is disabled (the breaker). None: the
        GPU is disabled when one unit used up all its tries (mode C).
    tag : str
        Log prefix (``"[P3][GPU]"`` for master tiles, ``"[GRID]"`` for grid mode).

    Attributes
    ----------
    hard_disabled : bool
        True once the GPU is disabled for the rest of the run.
    attempts, failures, oom_events : int
        GPU attempts started, failed, and failed with out-of-memory, over the run.
    units_gpu, units_cpu : int
        Units stacked on each side.
    budget_scale : float
        Factor (≤ 1) on the byte budget of later GPU units, halved at each OOM.
    notify : callable or None
        ``notify(text, logging_level)`` also receives every warning (retry, fallback,
        GPU disabled): grid mode sets it to send them to ZeMosaic's callback.
    """

    def __init__(self, mode: str = "auto", backend: str | Backend | None = None, *,
                 cpu_backend: str | Backend = "numpy", fault_injector: Any = None, attempts: int = 2,
                 max_failures: int | None = None, tag: str = "[P3][GPU]") -> None:
        if mode not in GPU_MODES:
            msg = f"`mode` must be one of {{{', '.join(repr(m) for m in GPU_MODES)}}}, got {mode!r}"
            raise ValueError(msg)
        if isinstance(backend, Backend) and not backend.is_gpu:
            msg = (f"`backend` of GpuPolicy must be a GPU backend, got {backend.name!r}; "
                   f"pass CPU backends as `cpu_backend=`")
            raise ValueError(msg)
        if isinstance(backend, str) and backend not in _GPU_NAMES:
            msg = f"`backend` of GpuPolicy must be one of {_GPU_NAMES} or None, got {backend!r}"
            raise ValueError(msg)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            msg = f"`attempts` must be an integer >= 1, got {attempts!r}"
            raise ValueError(msg)
        if max_failures is not None and (isinstance(max_failures, bool) or not isinstance(max_failures, int)
                                         or max_failures < 1):
            msg = f"`max_failures` must be None or an integer >= 1, got {max_failures!r}"
            raise ValueError(msg)
        self.mode = mode
        self.max_attempts = attempts
        self.max_failures = max_failures
        self.tag = tag
        self._requested = backend
        self._cpu_requested = cpu_backend
        self.fault_injector = fault_injector
        self.hard_disabled = False
        self.attempts = self.failures = self.oom_events = 0
        self.units_gpu = self.units_cpu = 0
        self.budget_scale = 1.0
        self.last_error: str | None = None
        self._gpu: Backend | None = None
        self._health: bool | None = None
        self._health_reason = ""
        self._cpu: Backend | None = None
        self.notify: Callable[[str, int], None] | None = None
        self._lock = threading.RLock()  # the device lock: one GPU unit at a time
        self._state_lock = threading.Lock()

    @classmethod
    def for_backend(cls, backend: str | Backend | None) -> GpuPolicy:
        """Build the policy that ``stack_master_tile(backend=...)`` implies.

        Parameters
        ----------
        backend : str or Backend or None
            ``"auto"``/None → mode ``auto``; a GPU name or GPU Backend → mode ``gpu``
            on it; any CPU backend → mode ``cpu`` with it as ``cpu_backend``.

        Returns
        -------
        GpuPolicy
            A new policy with master-tile settings (2 tries, mode C).

        Raises
        ------
        ValueError
            ``backend`` is not a known backend name or a Backend.
        """
        if backend is None or (isinstance(backend, str) and backend.strip().lower() == "auto"):
            return cls("auto")
        if isinstance(backend, Backend):
            return cls("gpu", backend) if backend.is_gpu else cls("cpu", cpu_backend=backend)
        if not isinstance(backend, str) or backend.strip().lower() not in BACKEND_NAMES:
            msg = f"`backend` must be one of {BACKEND_NAMES} or a Backend, got {backend!r}"
            raise ValueError(msg)
        name = backend.strip().lower()
        return cls("gpu", name) if name in _GPU_NAMES else cls("cpu", cpu_backend=name)

    @classmethod
    def for_grid(cls, mode: str = "auto", backend: str | Backend | None = None, **kwargs: Any) -> GpuPolicy:
        """Build a policy with grid mode's settings.

        One GPU try per block, and the breaker opens after 3 failures; log tag
        ``[GRID]``.

        Parameters
        ----------
        mode : {"auto", "gpu", "cpu"}
            As for :class:`GpuPolicy`.
        backend : {"cupy", "torch:cuda"} or Backend, optional
            As for :class:`GpuPolicy`.
        **kwargs
            Other :class:`GpuPolicy` keywords; they override the grid defaults
            (``attempts=1``, ``max_failures=3``, ``tag="[GRID]"``).

        Returns
        -------
        GpuPolicy
            A new policy.
        """
        kwargs.setdefault("attempts", 1)
        kwargs.setdefault("max_failures", 3)
        kwargs.setdefault("tag", "[GRID]")
        return cls(mode, backend, **kwargs)

    # ------------------------------------------------------------------ state
    @property
    def tiles_gpu(self) -> int:
        """Number of units stacked on the GPU (the name master-tile runs use).

        Returns
        -------
        int
            Same as :attr:`units_gpu`.
        """
        return self.units_gpu

    @property
    def tiles_cpu(self) -> int:
        """Number of units stacked on the CPU (the name master-tile runs use).

        Returns
        -------
        int
            Same as :attr:`units_cpu`.
        """
        return self.units_cpu

    def state(self) -> dict[str, Any]:
        """Snapshot the policy's state (goes into every tile's ``stats``).

        Returns
        -------
        dict
            JSON-able: ``mode``, ``gpu_backend``, ``healthy``, ``hard_disabled``,
            ``attempts``, ``failures``, ``oom_events``, ``tiles_gpu``, ``tiles_cpu``,
            ``budget_scale`` and ``last_error``.
        """
        return {
            "mode": self.mode,
            "gpu_backend": self._gpu.name if self._gpu is not None else None,
            "healthy": self._health,
            "hard_disabled": self.hard_disabled,
            "attempts": self.attempts,
            "failures": self.failures,
            "oom_events": self.oom_events,
            "tiles_gpu": self.units_gpu,
            "tiles_cpu": self.units_cpu,
            "budget_scale": self.budget_scale,
            "last_error": self.last_error,
        }

    def cpu_backend(self) -> Backend:
        """Return the CPU backend of this run, selecting it on the first call.

        Returns
        -------
        Backend
            The backend of CPU units and of the fallback.
        """
        if self._cpu is None:
            self._cpu = select_backend(self._cpu_requested)
        return self._cpu

    def describe(self) -> str:
        """Say why the GPU is or is not used.

        Returns
        -------
        str
            The GPU backend's name when healthy, else the health check's reason
            (``"GPU off"`` before it ran or in mode ``cpu``).
        """
        return self._gpu.name if self._health else (self._health_reason or "GPU off")

    def gpu_backend(self) -> Backend | None:
        """Return the GPU to try for the next unit; run the health check once.

        Returns
        -------
        Backend or None
            The healthy GPU backend; None in mode ``cpu``, once hard-disabled, or
            (mode ``auto``) when no GPU passed the health check.

        Raises
        ------
        BackendUnavailable
            Mode ``gpu`` and no usable GPU.
        """
        if self.mode == "cpu" or self.hard_disabled:
            return None
        if self._health is None:
            self._health = self._check_health()
            if self._health:
                logger.info("%s GPU auto mode enabled (mode=C, policy=%s, backend=%s)", self.tag, self.mode,
                            self._gpu.name)
            elif self.mode == "auto":
                logger.info("%s no usable GPU (%s); running on the CPU (%s)", self.tag, self._health_reason,
                            self.cpu_backend().name)
        if not self._health:
            if self.mode == "gpu":
                msg = (f"GPU mode requested but no usable GPU: {self._health_reason}. Use "
                       f"backend/mode 'auto' to fall back to the CPU.")
                raise BackendUnavailable(msg)
            return None
        return self._gpu

    def _resolve_gpu(self) -> Backend:
        if isinstance(self._requested, Backend):
            return self._requested
        names = (self._requested,) if self._requested else _GPU_NAMES
        reasons = []
        for name in names:
            try:
                return select_backend(name)
            except BackendUnavailable as exc:
                reasons.append(f"{name}: {exc}")
        raise BackendUnavailable("; ".join(reasons))

    def _check_health(self) -> bool:
        try:
            gpu = self._resolve_gpu()
        except BackendUnavailable as exc:
            self._health_reason = str(exc)
            return False
        if self.fault_injector is not None:
            self.fault_injector.begin_attempt(0)
        try:
            ok, reason = check_health(gpu)
        finally:
            if self.fault_injector is not None:
                self.fault_injector.end_attempt()
        if not ok:
            self._health_reason = reason
            return False
        self._gpu = gpu
        return True

    # ------------------------------------------------------------------ mode C
    def run(self, work: Callable[[DeviceSession], Any], *, budget_bytes: Callable[[Backend], int] | None = None,
            check: Callable[[Any], None] | None = None, label: Any = None,
            fatal: tuple[type[BaseException], ...] = ()) -> UnitRun:
        """Run one unit of work with mode C; see the module docstring.

        Parameters
        ----------
        work : callable(DeviceSession) -> object
            Stacks the whole unit on ``session.backend`` (bands sized from
            ``session.budget_bytes``, or ``session.rows`` when set) and returns the
            result on the host.
        budget_bytes : callable(Backend) -> int, optional
            Band budget of a backend before any OOM halving (default 0: the unit
            sizes itself and reads :attr:`budget_scale`).
        check : callable(object), optional
            Raises (e.g. :class:`GpuResultError`) when a GPU result is garbage.
        label : object
            Name of the unit in log lines (default: its number in the run).
        fatal : tuple of exception types
            Errors that are not the device's fault (unreadable inputs): re-raised at
            once, never retried.

        Returns
        -------
        UnitRun
            The value of the successful session, where it ran, and every attempt.

        Raises
        ------
        BackendUnavailable
            Mode ``gpu`` and no usable GPU.
        Exception
            Any ``fatal`` error of a GPU attempt, and any error of the CPU session.
        """
        label = label if label is not None else f"tile {self.units_gpu + self.units_cpu + 1}"
        budget_of = budget_bytes if budget_bytes is not None else (lambda b: 0)
        history: list[dict] = []
        gpu = self.gpu_backend()
        if gpu is not None:
            budget = max(1, int(budget_of(gpu) * self.budget_scale))
            rows: int | None = None
            for attempt in range(1, self.max_attempts + 1):
                if self.hard_disabled:
                    break
                session = DeviceSession(gpu, attempt=self.attempts + 1, budget_bytes=budget, rows=rows,
                                        faults=self.fault_injector)
                failure = None
                try:
                    value = self._attempt(work, session, check)
                except fatal:
                    raise
                except Exception as exc:  # noqa: BLE001 - mode C: any GPU failure is retried/fallen back
                    failure = (error_text(exc), is_oom_error(exc))
                    logger.debug("%s %s: attempt %d traceback", self.tag, label, attempt, exc_info=True)
                if failure is None:
                    history.append(self._record(session, ok=True))
                    self.units_gpu += 1
                    return UnitRun(value, True, session, history)
                # Outside the except block, so the traceback no longer pins device arrays
                # when the memory is freed.
                oom = self._count_failure(failure)
                history.append(self._record(session, ok=False, error=self.last_error, oom=oom))
                if oom:
                    budget, rows = self._shrink(session, gpu)
                last = attempt == self.max_attempts
                if self._breaker_open() or (last and self.max_failures is None):
                    self._disable(gpu, label, attempt)
                elif not last:
                    self._log_retry(label, attempt, oom, session, budget, rows)
                else:
                    self._warn("%s GPU stack failed, falling back to CPU (%s, %s)", self.tag, label,
                                   self.last_error)
        cpu = self.cpu_backend()
        session = DeviceSession(cpu, attempt=0, budget_bytes=budget_of(cpu), rows=None)
        value = work(session)
        history.append(self._record(session, ok=True))
        self.units_cpu += 1
        return UnitRun(value, False, session, history)

    def _warn(self, message: str, *args: Any) -> None:
        """Log a warning and hand it to :attr:`notify` (a GUI callback) when one is set."""
        logger.warning(message, *args)
        if self.notify is not None:
            self.notify(message % args if args else message, logging.WARNING)

    def _attempt(self, work: Callable[[DeviceSession], Any], session: DeviceSession,
                 check: Callable[[Any], None] | None) -> Any:
        with self._lock:
            with self._state_lock:
                self.attempts += 1
            if self.fault_injector is not None:
                self.fault_injector.begin_attempt(session.attempt)
            try:
                value = work(session)
            finally:
                if self.fault_injector is not None:
                    self.fault_injector.end_attempt()
        if check is not None:
            check(value)
        return value

    def _count_failure(self, failure: tuple[str, bool]) -> bool:
        with self._state_lock:
            self.last_error, oom = failure
            self.failures += 1
            self.oom_events += int(oom)
        return oom

    def _breaker_open(self) -> bool:
        return self.max_failures is not None and self.failures >= self.max_failures

    @staticmethod
    def _record(session: DeviceSession, *, ok: bool, error: str | None = None, oom: bool = False) -> dict:
        return {"attempt": session.attempt, "backend": session.backend.name, "rows": session.rows,
                "budget_bytes": session.budget_bytes, "ok": ok, "error": error, "oom": oom}

    def _shrink(self, session: DeviceSession, gpu: Backend) -> tuple[int, int | None]:
        """After an OOM: free the device memory, halve this unit's budget and the run's scale."""
        free_device_memory(gpu)
        with self._state_lock:
            self.budget_scale = max(_MIN_BUDGET_SCALE, self.budget_scale * 0.5)
        budget = max(1, session.budget_bytes // 2)
        rows = max(1, session.rows // 2) if session.rows else None
        return budget, rows

    def _log_retry(self, label: Any, attempt: int, oom: bool, session: DeviceSession, budget: int,
                   rows: int | None) -> None:
        if not oom:
            self._warn("%s %s: GPU attempt %d failed (%s); retrying once", self.tag, label, attempt,
                           self.last_error)
            return
        self._warn("%s %s: GPU attempt %d ran out of memory (%s); freed device memory, band rows %s -> %s, "
                       "budget %.1f -> %.1f MiB; retrying once", self.tag, label, attempt, self.last_error,
                       session.rows, rows, session.budget_bytes / _MIB, budget / _MIB)

    def _disable(self, gpu: Backend, label: Any, attempt: int) -> None:
        if self.max_failures is None:
            self._warn("%s %s: GPU attempt %d failed (%s)", self.tag, label, attempt, self.last_error)
            self._warn(DISABLED_MESSAGE)
        else:
            self._warn("%s GPU stack failed, falling back to CPU (%s, %s)", self.tag, label, self.last_error)
            self._warn("%s GPU disabled for the rest of the run after %d failures", self.tag, self.failures)
        self.hard_disabled = True
        free_device_memory(gpu)
        logger.info("%s %s: stacking on the CPU (%s)", self.tag, label, self.cpu_backend().name)
