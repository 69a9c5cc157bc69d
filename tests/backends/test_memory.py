"""backends/memory.py: free memory, band budgets, out-of-memory recognition, freeing."""

from __future__ import annotations

import pytest

from zemosaic_xp.backends import (
    Backend,
    default_memory_budget,
    device_memory_info,
    free_device_memory,
    is_oom_error,
    memory,
    select_backend,
    synchronize,
)


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError (a RuntimeError, not a MemoryError)."""


@pytest.mark.parametrize("exc, expected", [
    (MemoryError("Unable to allocate 7.3 TiB"), True),
    (OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA error: out of memory"), True),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory"), True),
    (ValueError("bad shape"), False),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
    (None, False),
])
def test_is_oom_error(exc, expected):
    assert is_oom_error(exc) is expected


def test_is_oom_error_follows_the_cause_chain():
    try:
        try:
            raise MemoryError("no room")
        except MemoryError as inner:
            raise RuntimeError("tile 3 failed") from inner
    except RuntimeError as outer:
        assert is_oom_error(outer)


def test_memory_info_and_free_are_safe_on_cpu():
    free, total = device_memory_info("numpy")
    assert 0 < free <= total
    free_device_memory("numpy")
    free_device_memory(None)
    free_device_memory("no-such-backend")  # best effort: never raises
    synchronize("numpy")
    synchronize(None)


def test_memory_info_falls_back_when_nothing_answers(monkeypatch):
    import psutil

    def broken(*args):
        raise OSError("/proc is not mounted")

    monkeypatch.setattr(memory, "_meminfo", lambda: None)
    monkeypatch.setattr(psutil, "virtual_memory", broken)
    monkeypatch.setattr(memory.os, "sysconf", broken)
    assert memory.host_memory_info() is None
    assert device_memory_info("numpy") == (2 * 1024**3, 4 * 1024**3)


def test_host_memory_is_psutil_s_without_psutil(monkeypatch):
    # /proc/meminfo on Linux gives psutil's numbers; without it psutil answers.
    import psutil

    available, total = memory.host_memory_info()
    vm = psutil.virtual_memory()
    assert total == vm.total
    assert abs(available - vm.available) < 0.05 * total  # read a moment apart
    monkeypatch.setattr(memory, "_meminfo", lambda: None)
    assert memory.host_memory_info()[1] == vm.total


@pytest.mark.parametrize("free, is_gpu, expected", [
    (8 * 1024**3, False, 256 * 1024**2),  # CPU: 2 GiB (25 %) capped at 256 MiB
    (400 * 1024**2, False, 100 * 1024**2),  # 25 % of what is free
    (10 * 1024**2, False, 16 * 1024**2),  # never below 16 MiB
    (80 * 1024**3, True, 4 * 1024**3),  # GPU: capped at 4 GiB
    (8 * 1024**3, True, 2 * 1024**3),
])
def test_default_memory_budget(monkeypatch, free, is_gpu, expected):
    monkeypatch.setattr(memory, "device_memory_info", lambda backend: (free, 2 * free))
    backend = Backend("fake-gpu" if is_gpu else "numpy", select_backend("numpy").xp, "cpu", is_gpu)
    assert default_memory_budget(backend) == expected


