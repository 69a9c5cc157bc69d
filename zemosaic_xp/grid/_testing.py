"""Test support: a fake GPU backend that runs on the CPU and fails on demand.

CI has no GPU, so the GPU paths of grid mode (fallback to the CPU, out-of-memory
halving, circuit breaker) are exercised with a :class:`~zemosaic_xp.backends.Backend`
whose ``is_gpu`` is True but whose namespace is NumPy's, wrapped so that chosen calls
raise. Results of successful "GPU" bands are therefore bit-identical to CPU bands.

Not part of the public API; used by ``tests/grid`` and available to integrators who
want to rehearse GPU failures.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

from ..backends import Backend
from . import gpu as _gpu

__all__ = ["FailingNamespace", "fake_gpu_backend", "inject_gpu_backend"]


class FailingNamespace:
    """NumPy's array-API namespace, except that ``op`` raises on chosen calls.

    Parameters
    ----------
    fail : {None, "error", "oom"}
        None never fails; "error" raises a CUDA-like ``RuntimeError``; "oom" raises a
        ``MemoryError`` saying "out of memory" (what CuPy raises).
    op : str
        Namespace function that fails (``stack_band`` calls ``permute_dims`` first).
    times : int or None
        Fail this many calls of ``op`` and then succeed; None = every call.

    Attributes
    ----------
    calls, failures : int
        Calls of ``op`` so far, and how many raised.
    """

    def __init__(self, *, fail: str | None = "error", op: str = "permute_dims", times: int | None = None) -> None:
        import array_api_compat.numpy as xp_np

        if fail not in (None, "error", "oom"):
            msg = f"`fail` must be None, 'error' or 'oom', got {fail!r}"
            raise ValueError(msg)
        self._xp = xp_np
        # Looks like NumPy to `array_api_compat.is_numpy_namespace`, so the core takes the
        # same code paths as on the CPU and successful "GPU" bands are bit-identical.
        self.__name__ = xp_np.__name__
        self._fail = fail
        self._op = op
        self._times = times
        self._lock = threading.Lock()
        self.calls = 0
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._xp, name)
        if name != self._op or self._fail is None:
            return target

        def failing(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
                fail = self._times is None or self.failures < self._times
                if fail:
                    self.failures += 1
            if fail and self._fail == "oom":
                msg = "CUDA out of memory: tried to allocate 2.00 GiB (fake GPU)"
                raise MemoryError(msg)
            if fail:
                msg = "CUDA error: an illegal memory access was encountered (fake GPU)"
                raise RuntimeError(msg)
            return target(*args, **kwargs)

        return failing


def fake_gpu_backend(*, fail: str | None = "error", op: str = "permute_dims",
                     times: int | None = None) -> Backend:
    """A ``Backend`` with ``is_gpu=True`` running NumPy through a :class:`FailingNamespace`.

    Its name starts with ``numpy:`` so that ``to_backend`` / ``to_host`` treat its
    arrays as NumPy arrays.
    """
    return Backend("numpy:fake-gpu", FailingNamespace(fail=fail, op=op, times=times), "cpu", True)


@contextmanager
def inject_gpu_backend(backend: Backend) -> Iterator[Backend]:
    """Make grid mode use ``backend`` as its GPU (in this process) inside the block."""
    _gpu._BACKEND_OVERRIDE.append(backend)  # noqa: SLF001 - the hook exists for this
    try:
        yield backend
    finally:
        _gpu._BACKEND_OVERRIDE.remove(backend)  # noqa: SLF001
