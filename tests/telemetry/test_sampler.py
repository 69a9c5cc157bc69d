"""Tests for ``zemosaic_xp.telemetry.sampler``: psutil and the NVML / CuPy / torch probes."""

from __future__ import annotations

import importlib.util
import logging
import sys

import pytest

from zemosaic_xp.telemetry import GPU_KEYS, SAMPLE_KEYS, sample_runtime_resources
from zemosaic_xp.telemetry import sampler as sampler_mod

from .fakes import fake_cupy, fake_pynvml, fake_torch

MIB = 2**20


class TestCpuRam:
    def test_keys_and_units(self, no_gpu_libs):
        import psutil

        sample = sample_runtime_resources()
        assert tuple(sample) == SAMPLE_KEYS
        assert sample["ram_total_mb"] == pytest.approx(psutil.virtual_memory().total / MIB)
        # used = total - available, as upstream: the three RAM values are consistent.
        assert sample["ram_used_mb"] == pytest.approx(sample["ram_total_mb"] - sample["ram_available_mb"])
        assert 0.0 <= sample["cpu_percent"] <= 100.0

    def test_no_gpu_gives_none_gpu_values(self, no_gpu_libs):
        sample = sample_runtime_resources()
        assert all(sample[k] is None for k in GPU_KEYS)

    def test_without_psutil_values_are_none(self, no_gpu_libs, monkeypatch):
        monkeypatch.setitem(sys.modules, "psutil", None)  # "import psutil" raises ImportError
        sample = sample_runtime_resources()
        assert tuple(sample) == SAMPLE_KEYS
        assert all(sample[k] is None for k in ("cpu_percent", "ram_used_mb", "ram_total_mb", "ram_available_mb"))

    def test_psutil_that_raises_gives_none_values(self, no_gpu_libs, monkeypatch):
        import psutil

        def broken(*args, **kwargs):
            raise OSError("/proc is not mounted")

        monkeypatch.setattr(psutil, "virtual_memory", broken)
        monkeypatch.setattr(psutil, "cpu_times", broken)
        sample = sample_runtime_resources()
        assert sample["cpu_percent"] is None and sample["ram_total_mb"] is None

    def test_repeated_samples_reuse_the_probes(self, no_gpu_libs, monkeypatch):
        # Detection is remembered: an absent source is asked once, not at every sample
        # (torch is asked again: it may initialise CUDA later). Cost lives in benchmarks.
        opened: list[str] = []
        real_open = sampler_mod.open_gpu_probe
        monkeypatch.setattr(sampler_mod, "open_gpu_probe",
                            lambda source, **kw: (opened.append(source), real_open(source, **kw))[1])
        for _ in range(5):
            sample = sample_runtime_resources()
            assert tuple(sample) == SAMPLE_KEYS
            assert sample["ram_total_mb"] > 0 and all(sample[k] is None for k in GPU_KEYS)
        assert opened.count("nvml") == 1 and opened.count("cupy") == 1 and opened.count("torch") == 5


class TestNvml:
    def test_nvml_values(self, no_gpu_libs, monkeypatch):
        calls: list[str] = []
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(calls))
        sample = sample_runtime_resources()
        assert sample["gpu_backend"] == "nvml" and sample["gpu_sample_source"] == "nvml"
        assert sample["gpu_name"] == "Fake RTX 4090"  # bytes from old pynvml versions are decoded
        assert sample["gpu_total_mb"] == 8192.0
        assert sample["gpu_used_mb"] == 2048.0
        assert sample["gpu_free_mb"] == 6144.0
        assert sample["gpu_util_percent"] == 37.0
        assert sample["gpu_mem_util_percent"] == 12.0

    def test_init_and_handle_happen_once(self, no_gpu_libs, monkeypatch):
        calls: list[str] = []
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(calls))
        for _ in range(3):
            sample_runtime_resources()
        assert calls.count("nvmlInit") == 1
        assert calls.count("nvmlDeviceGetHandleByIndex") == 1
        assert calls.count("nvmlDeviceGetMemoryInfo") == 3

    @pytest.mark.parametrize(("visible", "call", "arg"), [
        ("2,3", "nvmlDeviceGetHandleByIndex", 2),  # NVML ignores CUDA_VISIBLE_DEVICES: follow it by hand
        ("GPU-1234-abcd", "nvmlDeviceGetHandleByUUID", "GPU-1234-abcd"),
        ("", "nvmlDeviceGetHandleByIndex", 0),
    ])
    def test_device_follows_cuda_visible_devices(self, no_gpu_libs, monkeypatch, visible, call, arg):
        calls: list[str] = []
        mod = fake_pynvml(calls)
        seen = []
        original = getattr(mod, call)
        monkeypatch.setattr(mod, call, lambda a: (seen.append(a), original(a))[1])
        monkeypatch.setitem(sys.modules, "pynvml", mod)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        sample_runtime_resources()
        assert seen == [arg]

    def test_unsupported_utilisation_keeps_memory(self, no_gpu_libs, monkeypatch):
        calls: list[str] = []
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(calls, util_supported=False))
        first, second = sample_runtime_resources(), sample_runtime_resources()
        assert first["gpu_used_mb"] == 2048.0 and first["gpu_util_percent"] is None
        assert second["gpu_used_mb"] == 2048.0
        assert calls.count("nvmlDeviceGetUtilizationRates") == 1  # not asked again

    def test_nvml_preferred_over_cupy(self, no_gpu_libs, monkeypatch):
        nvml_calls: list[str] = []
        cupy_calls: list[str] = []
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(nvml_calls))
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy(cupy_calls))
        assert sample_runtime_resources()["gpu_backend"] == "nvml"
        assert cupy_calls == []

    def test_nvml_without_driver_falls_back_to_cupy(self, no_gpu_libs, monkeypatch):
        nvml_calls: list[str] = []
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(nvml_calls, fail_init=True))
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy([]))
        sample = sample_runtime_resources()
        assert sample["gpu_backend"] == "cupy"
        sample_runtime_resources()
        assert nvml_calls.count("nvmlInit") == 1  # the failed source is not retried

    def test_driver_lost_mid_run(self, no_gpu_libs, monkeypatch, caplog):
        calls: list[str] = []
        mod = fake_pynvml(calls)
        monkeypatch.setitem(sys.modules, "pynvml", mod)
        assert sample_runtime_resources()["gpu_used_mb"] == 2048.0

        def lost(handle):
            calls.append("lost")
            raise RuntimeError("GPU is lost")

        monkeypatch.setattr(mod, "nvmlDeviceGetMemoryInfo", lost)
        with caplog.at_level(logging.WARNING, logger="zemosaic_xp.telemetry"):
            samples = [sample_runtime_resources() for _ in range(3)]
        assert all(s["gpu_used_mb"] is None for s in samples)
        assert calls.count("lost") == 1
        assert sum("disabled for the rest of this process" in r.getMessage() for r in caplog.records) == 1


class TestCupy:
    def test_cupy_values(self, no_gpu_libs, monkeypatch):
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy([]))
        sample = sample_runtime_resources()
        assert sample["gpu_backend"] == "cupy" and sample["gpu_sample_source"] == "cupy_meminfo"
        assert (sample["gpu_total_mb"], sample["gpu_used_mb"], sample["gpu_free_mb"]) == (8192.0, 2048.0, 6144.0)
        assert sample["gpu_name"] == "Fake CuPy GPU"
        assert sample["gpu_util_percent"] is None and sample["gpu_mem_util_percent"] is None

    def test_cupy_that_raises_on_use_gives_none_once(self, no_gpu_libs, monkeypatch):
        # CuPy installed, is_available() says yes, but the driver fails on use.
        calls: list[str] = []
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy(
            calls, meminfo_error=RuntimeError("cudaErrorInsufficientDriver")))
        first = sample_runtime_resources()
        second = sample_runtime_resources()
        assert all(first[k] is None for k in GPU_KEYS)
        assert all(second[k] is None for k in GPU_KEYS)
        assert calls.count("memGetInfo") == 1  # not retried on the next sample
        assert calls.count("is_available") == 1

    def test_cupy_without_device_is_not_probed_again(self, no_gpu_libs, monkeypatch):
        calls: list[str] = []
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy(calls, available=False))
        for _ in range(3):
            assert sample_runtime_resources()["gpu_backend"] is None
        assert calls == ["is_available"]

    def test_cupy_is_never_imported_to_sample(self, no_gpu_libs, monkeypatch):
        # An installed CuPy that the run does not use is left alone: importing it and
        # calling memGetInfo would create a CUDA context.
        monkeypatch.delitem(sys.modules, "cupy")
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: object() if name == "cupy" else find_spec(name, *a))
        assert sample_runtime_resources()["gpu_backend"] is None
        assert "cupy" not in sys.modules
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy([]))  # the run starts using CuPy
        assert sample_runtime_resources()["gpu_backend"] == "cupy"

    def test_reset_probes_again(self, no_gpu_libs, monkeypatch):
        calls: list[str] = []
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy(calls, available=False))
        sample_runtime_resources()
        sampler_mod.reset_resource_probes()
        sample_runtime_resources()
        assert calls == ["is_available", "is_available"]


class TestTorch:
    def test_torch_values_when_cuda_in_use(self, no_gpu_libs, monkeypatch):
        monkeypatch.setitem(sys.modules, "torch", fake_torch([]))
        sample = sample_runtime_resources()
        assert sample["gpu_backend"] == "torch" and sample["gpu_sample_source"] == "torch_mem_get_info"
        assert (sample["gpu_total_mb"], sample["gpu_used_mb"]) == (16384.0, 6144.0)

    def test_torch_is_never_imported_to_sample(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "pynvml", None)
        monkeypatch.setitem(sys.modules, "cupy", None)
        monkeypatch.delitem(sys.modules, "torch", raising=False)
        sample_runtime_resources()
        assert "torch" not in sys.modules

    def test_uninitialised_cuda_is_left_alone_then_picked_up(self, no_gpu_libs, monkeypatch):
        calls: list[str] = []
        torch = fake_torch(calls, initialized=False)
        monkeypatch.setitem(sys.modules, "torch", torch)
        assert sample_runtime_resources()["gpu_backend"] is None
        assert calls == []  # no mem_get_info: it would create a CUDA context
        torch.cuda.state["initialized"] = True  # the run starts using the GPU
        assert sample_runtime_resources()["gpu_backend"] == "torch"

    def test_half_imported_torch_is_not_dropped(self, no_gpu_libs, monkeypatch):
        import types

        monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))  # no .cuda yet
        assert sample_runtime_resources()["gpu_backend"] is None
        monkeypatch.setitem(sys.modules, "torch", fake_torch([]))
        assert sample_runtime_resources()["gpu_backend"] == "torch"

    def test_gpu_sample_when_cupy_is_broken_comes_from_torch(self, no_gpu_libs, monkeypatch):
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy([], meminfo_error=RuntimeError("no driver")))
        monkeypatch.setitem(sys.modules, "torch", fake_torch([]))
        assert sample_runtime_resources()["gpu_backend"] == "torch"

