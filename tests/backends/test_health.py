"""backends/health.py: the one GPU health check, on real and fake backends."""

from __future__ import annotations

import types

import numpy as np
import pytest

from zemosaic_xp.backends import Backend, check_health, select_backend


def _fake_backend(sum_result=None, error: Exception | None = None) -> Backend:
    """A backend whose kernel returns ``sum_result`` (NumPy's own sum when None) or raises."""
    xp = types.SimpleNamespace(float32=np.float32)

    def arange(n, *, dtype=None, device=None):
        if error is not None:
            raise error
        return np.arange(n, dtype=dtype)

    xp.arange = arange
    xp.sum = np.sum if sum_result is None else (lambda a: np.float32(sum_result))
    return Backend("numpy:fake-gpu", xp, "fake0", True)


def test_healthy_backend_passes(backend):
    # Every backend that can run here passes: the check is plain array-API code.
    ok, reason = check_health(backend)
    assert ok, reason
    assert reason.startswith(backend.name)


def test_fake_healthy_kernel_passes():
    assert check_health(_fake_backend()) == (True, "numpy:fake-gpu health check passed")


def test_wrong_value_fails_with_the_value():
    ok, reason = check_health(_fake_backend(sum_result=239.0))
    assert not ok
    assert reason == "numpy:fake-gpu health check returned 239.0, expected 240.0"


@pytest.mark.parametrize("error, text", [
    (RuntimeError("CUDA error: no kernel image is available\nfor execution"),
     "RuntimeError: CUDA error: no kernel image is available"),  # first line only
    (ImportError("libnvrtc.so.12: cannot open shared object file"),
     "ImportError: libnvrtc.so.12: cannot open shared object file"),
    (MemoryError(), "MemoryError"),
])
def test_kernel_that_raises_fails_with_the_error(error, text):
    ok, reason = check_health(_fake_backend(error=error))
    assert not ok
    assert reason == f"numpy:fake-gpu health check failed ({text})"


def test_nan_result_fails():
    ok, reason = check_health(_fake_backend(sum_result=float("nan")))
    assert not ok and "returned nan" in reason


def test_select_backend_uses_the_health_check(monkeypatch):
    # select_backend's GPU paths raise the check's reason when it fails.
    import sys

    from zemosaic_xp import backends
    from zemosaic_xp.backends import BackendUnavailable, selection

    monkeypatch.setenv("ZEMOSAIC_XP_GPU_PROBE", "0")  # a fake CuPy, whatever the machine's driver
    cp = types.ModuleType("cupy")
    cp.cuda = types.SimpleNamespace(is_available=lambda: True, Device=lambda: "cuda:0")
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", types.ModuleType("array_api_compat.cupy"))
    seen = []
    monkeypatch.setattr(selection, "check_health", lambda b: (seen.append(b.name), (False, "broken GPU"))[1])
    backends.clear_backend_cache()
    try:
        with pytest.raises(BackendUnavailable, match="broken GPU"):
            select_backend("cupy")
    finally:
        backends.clear_backend_cache()
    assert seen == ["cupy"]


# --------------------------------------------------------------------- driver probe
@pytest.mark.parametrize(("platform", "files", "expected"), [
    ("linux", {"/proc/driver/nvidia/version"}, True),
    ("linux", {"/dev/nvidia0"}, True),
    ("linux", {"/dev/kfd"}, True),                      # ROCm: torch's "cuda" device
    ("linux", {"/usr/lib/wsl/lib/libcuda.so"}, True),   # WSL2
    ("linux", set(), False),
    ("darwin", {"/proc/driver/nvidia/version"}, False),
], ids=["nvidia-module", "nvidia-node", "rocm", "wsl2", "none", "macos"])
def test_gpu_driver_probe(monkeypatch, platform, files, expected):
    from zemosaic_xp.backends import health

    monkeypatch.delenv(health.GPU_PROBE_ENV, raising=False)
    monkeypatch.setattr(health.sys, "platform", platform)
    monkeypatch.setattr(health.os.path, "exists", lambda p: p in files)
    monkeypatch.setattr(health.glob, "glob", lambda pattern: sorted(f for f in files if f.startswith("/dev/nvidia")))
    present, reason = health.gpu_driver_present()
    assert present is expected and reason


def test_gpu_driver_probe_can_be_switched_off(monkeypatch):
    from zemosaic_xp.backends import health

    monkeypatch.setenv(health.GPU_PROBE_ENV, "0")
    monkeypatch.setattr(health.sys, "platform", "darwin")
    assert health.gpu_driver_present()[0] is True


def test_auto_without_a_driver_imports_no_gpu_library():
    # issue 13: `auto` must not import torch or CuPy on a machine without a GPU driver.
    import subprocess
    import sys

    code = ("import sys; import zemosaic_xp.backends.selection as s; "
            "s.gpu_driver_present = lambda: (False, 'no driver here'); "
            "b = s.select_backend('auto'); print(b.name, 'torch' in sys.modules, 'cupy' in sys.modules)\n"
            "try:\n    s.select_backend('torch:cuda')\nexcept s.BackendUnavailable as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["numpy False False", "torch CUDA not tried: no driver here"]
