"""GPU use in grid mode: per-run circuit breaker, per-device lock, band stacking with fallback.

A band goes to the GPU backend through the same core call as on the CPU
(:func:`~zemosaic_xp.core.stack.stack_band`). Any GPU error puts *that band* on the
CPU (``[GRID] GPU stack failed, falling back to CPU``); an out-of-memory error also
halves the band rows for the rest of the tile; after ``max_failures`` failures the
run's breaker opens and every later band stays on the CPU. Results are per pixel,
so a band computed on either device is the same band.

GPU work is serialised per device by a lock, so threads of one process never
run two stacks on one GPU at once; the runner keeps GPU tiles in its own process
(see ``runner.py``), one CUDA context per device.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..backends import (
    Backend,
    BackendUnavailable,
    free_device_memory,
    is_oom_error,
    select_backend,
    to_backend,
    to_host,
)
from ..core.config import StackConfig
from ..core.stack import BandResult, FramePlan, stack_band

__all__ = ["GpuBreaker", "BandStacker", "resolve_gpu_backend", "gpu_breaker", "device_lock",
           "MAX_GPU_FAILURES"]

logger = logging.getLogger(__name__)

#: Failures after which the GPU is disabled for the rest of the run (upstream's default).
MAX_GPU_FAILURES = 3

_REGISTRY_LOCK = threading.Lock()
_DEVICE_LOCKS: dict[str, threading.Lock] = {}
_BREAKERS: dict[str, GpuBreaker] = {}
# Test support (zemosaic_xp.grid._testing) puts a fake GPU backend here.
_BACKEND_OVERRIDE: list[Backend] = []


@dataclass
class GpuBreaker:
    """Failure counter of one run's GPU; opens (disables the GPU) at ``max_failures``."""

    max_failures: int = MAX_GPU_FAILURES
    failures: int = 0
    disabled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_failure(self) -> bool:
        """Count one failure; True when this one opened the breaker."""
        with self._lock:
            self.failures += 1
            if not self.disabled and self.failures >= self.max_failures:
                self.disabled = True
                return True
            return False


def gpu_breaker(run_id: str) -> GpuBreaker:
    """The breaker of run ``run_id`` in this process (created on first use)."""
    with _REGISTRY_LOCK:
        breaker = _BREAKERS.get(run_id)
        if breaker is None:
            breaker = _BREAKERS[run_id] = GpuBreaker()
        return breaker


def release_breaker(run_id: str) -> None:
    """Forget run ``run_id``'s breaker (end of run)."""
    with _REGISTRY_LOCK:
        _BREAKERS.pop(run_id, None)


def device_lock(backend: Backend) -> threading.Lock:
    """The lock serialising GPU stacks on ``backend``'s device in this process."""
    key = f"{backend.library}:{backend.device}"
    with _REGISTRY_LOCK:
        lock = _DEVICE_LOCKS.get(key)
        if lock is None:
            lock = _DEVICE_LOCKS[key] = threading.Lock()
        return lock


def resolve_gpu_backend() -> tuple[Backend | None, str]:
    """The GPU backend to use and why: (backend, reason) or (None, reason)."""
    if _BACKEND_OVERRIDE:
        backend = _BACKEND_OVERRIDE[-1]
        return backend, f"{backend.name} (injected)"
    try:
        backend = select_backend("auto")
    except (BackendUnavailable, ValueError) as exc:
        return None, str(exc)
    if not backend.is_gpu:
        return None, "no GPU backend passed its health check (CuPy or torch CUDA)"
    return backend, backend.name


def _plan_on(plan: FramePlan, backend: Backend) -> FramePlan:
    weights = None if plan.weights is None else to_backend(np.asarray(plan.weights), backend)
    return FramePlan(to_backend(np.asarray(plan.gain), backend), to_backend(np.asarray(plan.offset), backend),
                     weights, plan.stats)


def _band_to_host(result: BandResult) -> BandResult:
    return BandResult(np.asarray(to_host(result.image)), np.asarray(to_host(result.weight_sum)),
                      np.asarray(to_host(result.coverage)), np.asarray(to_host(result.rejected_low)),
                      np.asarray(to_host(result.rejected_high)), result.iterations, result.n_valid,
                      result.n_low, result.n_high)


class BandStacker:
    """Stack row bands of one tile on the GPU when allowed, else (or on failure) on the CPU.

    Parameters
    ----------
    config : StackConfig
    plan : FramePlan
        Host (NumPy) plan of the tile.
    cpu_xp : namespace
        The NumPy array-API namespace.
    gpu : Backend or None
        GPU backend, None = CPU only.
    breaker : GpuBreaker or None
        The run's breaker (required with ``gpu``).
    tile_id : int
        For log messages.

    Attributes
    ----------
    gpu_bands, cpu_bands, fallbacks : int
        Bands stacked on each device, and GPU failures that fell back.
    oom : bool
        An out-of-memory error happened (the caller halves its band rows).
    """

    def __init__(self, config: StackConfig, plan: FramePlan, *, cpu_xp: Any, gpu: Backend | None = None,
                 breaker: GpuBreaker | None = None, tile_id: int = 0) -> None:
        self.config = config
        self.plan = plan
        self.cpu_xp = cpu_xp
        self.gpu = gpu
        self.breaker = breaker if breaker is not None else GpuBreaker()
        self.tile_id = tile_id
        self.gpu_bands = self.cpu_bands = self.fallbacks = 0
        self.oom = False
        self._plans: dict[tuple[int, ...] | None, FramePlan] = {}
        self._gpu_plans: dict[tuple[int, ...] | None, FramePlan] = {}

    @property
    def gpu_active(self) -> bool:
        return self.gpu is not None and not self.breaker.disabled

    def _sub_plan(self, frames: tuple[int, ...] | None) -> FramePlan:
        """The plan restricted to ``frames`` (positions in the tile's plan), cached."""
        plan = self._plans.get(frames)
        if plan is None:
            if frames is None:
                plan = self.plan
            else:
                idx = np.asarray(frames, dtype=np.intp)
                weights = None if self.plan.weights is None else np.asarray(self.plan.weights)[idx]
                plan = FramePlan(np.asarray(self.plan.gain)[idx], np.asarray(self.plan.offset)[idx], weights,
                                 self.plan.stats)
            self._plans[frames] = plan
        return plan

    def stack(self, values: np.ndarray, weights: np.ndarray, frames: Sequence[int] | None = None) -> BandResult:
        """Stack one block ``(h, w, C, n)`` with weights ``(h, w, 1, n)``; result on the host.

        ``frames`` are the positions of the block's ``n`` frames in the tile's plan
        (None = all of them, in order).
        """
        key = None if frames is None else tuple(int(f) for f in frames)
        if self.gpu_active:
            try:
                result = self._stack_gpu(values, weights, key)
                self.gpu_bands += 1
                return result
            except Exception as exc:  # noqa: BLE001 - any GPU failure falls back to the CPU
                self._on_gpu_failure(exc)
        self.cpu_bands += 1
        return stack_band(values, config=self.config, plan=self._sub_plan(key), pixel_weights=weights,
                          xp=self.cpu_xp)

    def _stack_gpu(self, values: np.ndarray, weights: np.ndarray, key: tuple[int, ...] | None) -> BandResult:
        backend = self.gpu
        assert backend is not None  # noqa: S101 - guarded by gpu_active
        with device_lock(backend):
            plan = self._gpu_plans.get(key)
            if plan is None:
                plan = self._gpu_plans[key] = _plan_on(self._sub_plan(key), backend)
            result = stack_band(to_backend(values, backend), config=self.config, plan=plan,
                                pixel_weights=to_backend(weights, backend), xp=backend.xp)
            host = _band_to_host(result)
        # A GPU band that lost all its data where there was some is a failure (upstream's
        # all-NaN GPU outputs), not a result.
        if host.n_valid > 0 and not np.any(np.isfinite(host.image)):
            msg = "GPU band came back all-NaN although it had valid samples"
            raise RuntimeError(msg)
        return host

    def _on_gpu_failure(self, exc: BaseException) -> None:
        oom = is_oom_error(exc)
        self.fallbacks += 1
        logger.warning("[GRID] GPU stack failed, falling back to CPU (tile %d, %s: %s)",
                       self.tile_id, type(exc).__name__, exc)
        if oom:
            self.oom = True
            self._gpu_plans.clear()
            if self.gpu is not None:
                free_device_memory(self.gpu)
        if self.breaker.record_failure():
            logger.warning("[GRID] GPU disabled for the rest of the run after %d failures",
                           self.breaker.failures)
