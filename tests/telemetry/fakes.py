"""Fake GPU libraries (no GPU, nvidia-ml-py or CuPy here): modules to put in ``sys.modules``."""

from __future__ import annotations

import types
from types import SimpleNamespace

GIB = 2**30


def fake_pynvml(calls: list[str], *, used=2 * GIB, total=8 * GIB, util=37, mem_util=12,
                util_supported=True, fail_init=False) -> types.ModuleType:
    """A ``pynvml`` stand-in on an 8 GiB board; `calls` records each function called."""
    mod = types.ModuleType("pynvml")

    def record(name, result=None):
        def fn(*args):
            calls.append(name)
            if isinstance(result, BaseException):
                raise result
            return result(*args) if callable(result) else result
        return fn

    mod.nvmlInit = record("nvmlInit", RuntimeError("NVML Shared Library Not Found") if fail_init else None)
    mod.nvmlShutdown = record("nvmlShutdown")
    mod.nvmlDeviceGetHandleByIndex = record("nvmlDeviceGetHandleByIndex", lambda i: ("handle", i))
    mod.nvmlDeviceGetHandleByUUID = record("nvmlDeviceGetHandleByUUID", lambda u: ("handle", u))
    mod.nvmlDeviceGetName = record("nvmlDeviceGetName", b"Fake RTX 4090")
    mod.nvmlDeviceGetMemoryInfo = record(
        "nvmlDeviceGetMemoryInfo", lambda h: SimpleNamespace(total=total, used=used, free=total - used))
    mod.nvmlDeviceGetUtilizationRates = record(
        "nvmlDeviceGetUtilizationRates",
        SimpleNamespace(gpu=util, memory=mem_util) if util_supported else RuntimeError("Not Supported"))
    return mod


def fake_cupy(calls: list[str], *, available=True, meminfo_error: BaseException | None = None,
              free=6 * GIB, total=8 * GIB) -> types.ModuleType:
    """A ``cupy`` stand-in; ``memGetInfo`` raises `meminfo_error` when given (no driver)."""

    def is_available():
        calls.append("is_available")
        return available

    def mem_get_info():
        calls.append("memGetInfo")
        if meminfo_error is not None:
            raise meminfo_error
        return free, total

    runtime = SimpleNamespace(memGetInfo=mem_get_info, getDevice=lambda: 0,
                              getDeviceProperties=lambda i: {"name": b"Fake CuPy GPU"})
    mod = types.ModuleType("cupy")
    mod.cuda = SimpleNamespace(is_available=is_available, runtime=runtime)
    return mod


def fake_torch(calls: list[str], *, initialized=True, available=True,
               free=10 * GIB, total=16 * GIB) -> types.ModuleType:
    """A ``torch`` stand-in whose CUDA state is mutable through ``mod.cuda.state``."""
    state = {"initialized": initialized}

    def mem_get_info():
        calls.append("mem_get_info")
        return free, total

    mod = types.ModuleType("torch")
    mod.cuda = SimpleNamespace(is_initialized=lambda: state["initialized"], is_available=lambda: available,
                               mem_get_info=mem_get_info, get_device_name=lambda: "Fake torch GPU",
                               state=state)
    return mod
