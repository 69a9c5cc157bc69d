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
