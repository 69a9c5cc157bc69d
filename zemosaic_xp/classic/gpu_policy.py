"""GPU use of one run of master tiles: ZeMosaic's Phase 3 "auto mode C", without globals.

A :class:`GpuPolicy` is created once per run and passed to every
:func:`~zemosaic_xp.classic.stack_master_tile` call of that run; all GPU state
(health, failures, hard-disable) lives in it, so two runs in one process never see
each other's state (ZeMosaic kept it in a module global, ``upstream_spec`` §4.2).

Mode C, for each tile, when the GPU is a candidate (mode ``auto`` or ``gpu``, health
check passed, not hard-disabled):

1. attempt 1 on the GPU;
2. on any failure, log ``[P3][GPU] ... retrying once``; if it was an out-of-memory
   error, free the device memory and halve the band rows and the byte budget first;
3. attempt 2 on the GPU;
4. if it fails too, log ``[P3][GPU] GPU disabled for remaining Phase 3 tiles after
   repeated failures.``, hard-disable the GPU for the rest of the run, and stack this
   tile on the CPU.

A GPU result that the caller's ``check`` rejects (all-NaN or all-zero where the
inputs have data) counts as a failure. The health check (a real kernel on the
device) runs once per policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..backends import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailable,
    free_device_memory,
    is_oom_error,
    select_backend,
    to_backend,
    to_host,
)

__all__ = ["GpuPolicy", "DeviceSession", "TileRun", "GpuResultError", "GPU_MODES", "DISABLED_MESSAGE"]

logger = logging.getLogger(__name__)

#: Policy modes: ``auto`` (GPU when healthy, else CPU), ``gpu`` (GPU required at the
#: health check), ``cpu`` (never the GPU).
GPU_MODES = ("auto", "gpu", "cpu")

_GPU_NAMES = ("cupy", "torch:cuda")
_MIB = 1024**2
# Once an OOM halved the budget, later tiles of the run start from the halved budget
# too (ZeMosaic keeps a run-wide row cap after OOMs); never below 1/64 of it.
_MIN_BUDGET_SCALE = 1.0 / 64.0

#: The exact line logged when mode C gives up on the GPU for the rest of the run.
DISABLED_MESSAGE = "[P3][GPU] GPU disabled for remaining Phase 3 tiles after repeated failures."


class GpuResultError(RuntimeError):
    """A GPU attempt returned garbage (all-NaN or all-zero where inputs have data)."""


class DeviceSession:
    """One attempt to stack a tile on one backend: its budget and transfer timings.

    Attributes
    ----------
    backend : Backend
    attempt : int
        Run-wide GPU attempt number (1, 2, ...), or 0 for a CPU run.
    budget_bytes : int
        Working memory of one band on the device.
    rows : int or None
        Band rows imposed by the policy (after an OOM); None lets the caller size
        bands from ``budget_bytes`` and store its choice here.
    seconds : dict
        Wall time of ``read`` (host I/O), ``upload``, ``compute`` and ``download``.
    """

    def __init__(self, backend: Backend, *, attempt: int, budget_bytes: int, rows: int | None,
                 faults: Any = None) -> None:
        self.backend = backend
        self.attempt = attempt
        self.budget_bytes = int(budget_bytes)
        self.rows = rows
        self.seconds = {"read": 0.0, "upload": 0.0, "compute": 0.0, "download": 0.0}
        self._faults = faults

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to ``seconds[key]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0

    def upload(self, host: np.ndarray | None) -> Any:
        """Move a host array to the device as native float32 (None passes through)."""
        if host is None:
            return None
        with self.timed("upload"):
            return to_backend(host, self.backend)

    def download(self, array: Any) -> np.ndarray:
        """Copy a device array to the host."""
        with self.timed("download"):
            host = np.asarray(to_host(array))
        if self._faults is not None and self.attempt > 0:
            host = self._faults.filter_download(host)
        return host

    def timings_ms(self) -> dict[str, float]:
        """``{read_ms, upload_ms, compute_ms, download_ms}`` rounded to 0.1 ms."""
        return {f"{k}_ms": round(v * 1e3, 1) for k, v in self.seconds.items()}


@dataclass
class TileRun:
    """Outcome of :meth:`GpuPolicy.run` for one tile.

    Attributes
    ----------
    value : object
        What the work function returned on the successful session.
    used_gpu : bool
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


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class GpuPolicy:
    """GPU decisions and state of one run of master tiles (mode C).

    Parameters
    ----------
    mode : {"auto", "gpu", "cpu"}
        ``auto``: use the GPU when one passes the health check, else the CPU (one
        INFO line says which). ``gpu``: a GPU is required; an unusable one raises
        :class:`~zemosaic_xp.backends.BackendUnavailable` at the first tile.
        ``cpu``: never use the GPU. In ``auto`` and ``gpu`` runtime failures follow
        mode C (see the module docstring).
    backend : {"cupy", "torch:cuda"} or Backend, optional
        The GPU to use; default: CuPy, then torch CUDA, whichever is usable. A
        :class:`~zemosaic_xp.backends.Backend` with ``is_gpu=True`` is used as is (tests
        inject a fake GPU this way, see :mod:`zemosaic_xp.classic.testing`).
    cpu_backend : str or Backend
        Backend of CPU tiles and of the fallback (default ``"numpy"``).
    fault_injector : FaultInjector, optional
        Test seam (:class:`zemosaic_xp.classic.testing.FaultInjector`): told when each
        GPU attempt starts and may corrupt downloads. None in production.

    Attributes
    ----------
    hard_disabled : bool
        True after a tile failed both GPU attempts; every later tile runs on the CPU.
    attempts, failures, oom_events : int
        GPU attempts started, failed, and failed with out-of-memory, over the run.
    tiles_gpu, tiles_cpu : int
        Tiles stacked on each side.
    """

    def __init__(self, mode: str = "auto", backend: str | Backend | None = None, *,
                 cpu_backend: str | Backend = "numpy", fault_injector: Any = None) -> None:
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
        self.mode = mode
        self._requested = backend
        self._cpu_requested = cpu_backend
        self.fault_injector = fault_injector
        self.hard_disabled = False
        self.attempts = self.failures = self.oom_events = 0
        self.tiles_gpu = self.tiles_cpu = 0
        self.budget_scale = 1.0
        self.last_error: str | None = None
        self._gpu: Backend | None = None
        self._health: bool | None = None
        self._health_reason = ""
        self._cpu: Backend | None = None

    @classmethod
    def for_backend(cls, backend: str | Backend | None) -> GpuPolicy:
        """The policy that ``stack_master_tile(backend=...)`` implies.

        ``"auto"``/None → mode ``auto``; a GPU name or GPU Backend → mode ``gpu`` on it;
        any CPU backend → mode ``cpu`` with it as ``cpu_backend``.
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

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """JSON-able snapshot of the policy (goes into every tile's ``stats``)."""
        return {
            "mode": self.mode,
            "gpu_backend": self._gpu.name if self._gpu is not None else None,
            "healthy": self._health,
            "hard_disabled": self.hard_disabled,
            "attempts": self.attempts,
            "failures": self.failures,
            "oom_events": self.oom_events,
            "tiles_gpu": self.tiles_gpu,
            "tiles_cpu": self.tiles_cpu,
            "budget_scale": self.budget_scale,
            "last_error": self.last_error,
        }

    def cpu_backend(self) -> Backend:
        """The CPU backend of this run."""
        if self._cpu is None:
            self._cpu = select_backend(self._cpu_requested)
        return self._cpu

    def gpu_backend(self) -> Backend | None:
        """The GPU to try for the next tile, or None (CPU). Runs the health check once.

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
                logger.info("[P3][GPU] Phase 3 GPU auto mode enabled (mode=C, policy=%s, backend=%s)",
                            self.mode, self._gpu.name)
            elif self.mode == "auto":
                logger.info("[P3][GPU] no usable GPU (%s); Phase 3 tiles run on the CPU (%s)",
                            self._health_reason, self.cpu_backend().name)
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
            xp = gpu.xp
            probe = xp.arange(16, dtype=xp.float32, device=gpu.device)
            value = float(xp.sum(probe * 2.0))
            if value != 240.0:
                self._health_reason = f"{gpu.name} health check returned {value}, expected 240.0"
                return False
        except Exception as exc:  # noqa: BLE001 - any device error means "unusable"
            self._health_reason = f"{gpu.name} health check failed ({_error_text(exc)})"
            return False
        finally:
            if self.fault_injector is not None:
                self.fault_injector.end_attempt()
        self._gpu = gpu
        return True

    # ------------------------------------------------------------------ mode C
    def run(self, work: Callable[[DeviceSession], Any], *, budget_bytes: Callable[[Backend], int],
            check: Callable[[Any], None] | None = None, label: Any = None,
            fatal: tuple[type[BaseException], ...] = ()) -> TileRun:
        """Stack one tile with mode C; see the module docstring.

        Parameters
        ----------
        work : callable(DeviceSession) -> object
            Stacks the whole tile on ``session.backend`` (bands sized from
            ``session.budget_bytes``, or ``session.rows`` when set) and returns the
            result on the host.
        budget_bytes : callable(Backend) -> int
            Band budget of a backend before any OOM halving.
        check : callable(object), optional
            Raises (e.g. :class:`GpuResultError`) when a GPU result is garbage.
        label : object
            Tile name used in log lines.
        fatal : tuple of exception types
            Errors that are not the device's fault (unreadable inputs): re-raised at
            once, never retried.

        Returns
        -------
        TileRun
        """
        tile = label if label is not None else self.tiles_gpu + self.tiles_cpu + 1
        history: list[dict] = []
        gpu = self.gpu_backend()
        if gpu is not None:
            budget = max(1, int(budget_bytes(gpu) * self.budget_scale))
            rows: int | None = None
            for attempt in (1, 2):
                session = DeviceSession(gpu, attempt=self.attempts + 1, budget_bytes=budget, rows=rows,
                                        faults=self.fault_injector)
                failure = None
                try:
                    value = self._attempt(work, session, check)
                except fatal:
                    raise
                except Exception as exc:  # noqa: BLE001 - mode C: any GPU failure is retried/fallen back
                    failure = (_error_text(exc), is_oom_error(exc))
                    logger.debug("[P3][GPU] tile %s: attempt %d traceback", tile, attempt, exc_info=True)
                if failure is None:
                    history.append(self._record(session, ok=True))
                    self.tiles_gpu += 1
                    return TileRun(value, True, session, history)
                # Outside the except block, so the traceback no longer pins device arrays
                # when the memory is freed.
                self.last_error, oom = failure
                self.failures += 1
                self.oom_events += int(oom)
                history.append(self._record(session, ok=False, error=self.last_error, oom=oom))
                if attempt == 1:
                    budget, rows = self._before_retry(session, oom, tile)
                else:
                    self._disable(gpu, tile)
        cpu = self.cpu_backend()
        session = DeviceSession(cpu, attempt=0, budget_bytes=budget_bytes(cpu), rows=None)
        value = work(session)
        history.append(self._record(session, ok=True))
        self.tiles_cpu += 1
        return TileRun(value, False, session, history)

    def _attempt(self, work: Callable[[DeviceSession], Any], session: DeviceSession,
                 check: Callable[[Any], None] | None) -> Any:
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

    @staticmethod
    def _record(session: DeviceSession, *, ok: bool, error: str | None = None, oom: bool = False) -> dict:
        return {"attempt": session.attempt, "backend": session.backend.name, "rows": session.rows,
                "budget_bytes": session.budget_bytes, "ok": ok, "error": error, "oom": oom}

    def _before_retry(self, session: DeviceSession, oom: bool, tile: Any) -> tuple[int, int | None]:
        if not oom:
            logger.warning("[P3][GPU] tile %s: GPU attempt 1 failed (%s); retrying once",
                           tile, self.last_error)
            return session.budget_bytes, session.rows
        free_device_memory(session.backend)
        budget = max(1, session.budget_bytes // 2)
        rows = max(1, session.rows // 2) if session.rows else None
        self.budget_scale = max(_MIN_BUDGET_SCALE, self.budget_scale * 0.5)
        logger.warning("[P3][GPU] tile %s: GPU attempt 1 ran out of memory (%s); freed device memory, "
                       "band rows %s -> %s, budget %.1f -> %.1f MiB; retrying once",
                       tile, self.last_error, session.rows, rows, session.budget_bytes / _MIB, budget / _MIB)
        return budget, rows

    def _disable(self, gpu: Backend, tile: Any) -> None:
        logger.warning("[P3][GPU] tile %s: GPU attempt 2 failed (%s)", tile, self.last_error)
        logger.warning(DISABLED_MESSAGE)
        self.hard_disabled = True
        free_device_memory(gpu)
        logger.info("[P3][GPU] tile %s: stacking on the CPU (%s)", tile, self.cpu_backend().name)
