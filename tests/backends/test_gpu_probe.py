"""backends/gpu_probe.py: reading GPU memory without importing a library or creating a context.

No GPU, nvidia-ml-py or CuPy here: the libraries are the fakes of the telemetry tests,
placed in ``sys.modules`` (the telemetry tests cover the sampler's use of the probes).
"""

from __future__ import annotations

import sys
import types

import pytest

from tests.telemetry.fakes import GIB, fake_cupy, fake_pynvml, fake_torch
from zemosaic_xp.backends import BackendUnavailable, GpuMemoryReading, open_gpu_probe


@pytest.fixture
def no_gpu_libs(monkeypatch):
    for name in ("pynvml", "cupy", "torch"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_nvml_reading_and_shutdown(no_gpu_libs, monkeypatch):
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(calls))
    probe = open_gpu_probe("nvml")
    reading = probe.read()
    assert reading == GpuMemoryReading("nvml", 8 * GIB, 2 * GIB, "Fake RTX 4090", 37.0, 12.0)
    assert reading.free_bytes == 6 * GIB
    probe.close()
    probe.close()  # idempotent
    assert calls.count("nvmlInit") == 1 and calls.count("nvmlShutdown") == 1


def test_nvml_failing_after_init_shuts_down(no_gpu_libs, monkeypatch):
    calls: list[str] = []
    mod = fake_pynvml(calls)

    def no_handle(index):
        raise RuntimeError("GPU is lost")

    monkeypatch.setattr(mod, "nvmlDeviceGetHandleByIndex", no_handle)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    with pytest.raises(RuntimeError, match="GPU is lost"):
        open_gpu_probe("nvml")
    assert calls == ["nvmlInit", "nvmlShutdown"]


def test_cupy_is_read_only_once_imported(no_gpu_libs, monkeypatch):
    monkeypatch.delitem(sys.modules, "cupy")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())  # "installed"
    assert open_gpu_probe("cupy") is None  # not imported: not yet, and not imported now
    assert "cupy" not in sys.modules
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(calls))
    reading = open_gpu_probe("cupy").read()
    assert (reading.source, reading.total_bytes, reading.used_bytes, reading.name) == (
        "cupy", 8 * GIB, 2 * GIB, "Fake CuPy GPU")
    assert calls == ["is_available", "memGetInfo"]


@pytest.mark.parametrize("source", ["cupy", "pynvml"])
def test_blocked_library_is_unavailable(no_gpu_libs, source):
    with pytest.raises(BackendUnavailable, match="blocked"):
        open_gpu_probe("nvml" if source == "pynvml" else source)


def test_cupy_without_device_is_unavailable(no_gpu_libs, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy([], available=False))
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        open_gpu_probe("cupy")


def test_torch_waits_for_cuda_to_be_initialised(no_gpu_libs, monkeypatch):
    calls: list[str] = []
    torch = fake_torch(calls, initialized=False)
    monkeypatch.setitem(sys.modules, "torch", torch)
    assert open_gpu_probe("torch") is None
    assert calls == []  # mem_get_info would create a context
    torch.cuda.state["initialized"] = True
    reading = open_gpu_probe("torch").read()
    assert (reading.total_bytes, reading.used_bytes, reading.name) == (16 * GIB, 6 * GIB, "Fake torch GPU")


def test_torch_new_context_reads_an_uninitialised_device(no_gpu_libs, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch([], initialized=False))
    assert open_gpu_probe("torch", new_context=True).read().source == "torch"


def test_torch_without_cuda_is_unavailable(no_gpu_libs, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch([], initialized=False, available=False))
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        open_gpu_probe("torch")


def test_half_imported_torch_is_not_yet(no_gpu_libs, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))  # no .cuda yet
    assert open_gpu_probe("torch") is None


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"`source` must be one of \('nvml', 'cupy', 'torch'\)"):
        open_gpu_probe("rocm")
