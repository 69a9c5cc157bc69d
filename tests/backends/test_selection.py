"""backends/selection.py: names to backends, the auto fallback, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from zemosaic_xp import backends
from zemosaic_xp.backends import BackendUnavailable, backend_of, select_backend


@pytest.fixture
def fresh_cache():
    backends.clear_backend_cache()
    yield
    backends.clear_backend_cache()



@pytest.fixture(autouse=True)
def _no_driver_probe(monkeypatch):
    """These tests fake CuPy / torch modules: import them whatever the machine's driver."""
    monkeypatch.setenv("ZEMOSAIC_XP_GPU_PROBE", "0")


def _real_torch_cuda() -> bool:
    """Whether this machine really has a torch CUDA device (the fallback auto may pick)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def test_numpy_backend():
    b = select_backend("numpy")
    assert (b.name, b.is_gpu, b.library, b.device) == ("numpy", False, "numpy", "cpu")
    assert select_backend(b) is b


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"`backend` must be one of .*'torch:cuda'"):
        select_backend("jax")


def test_name_of_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match=r"`backend` must be a backend name or Backend, got int"):
        select_backend(3)


def _fake_cupy(available: bool):
    """A ``cupy`` whose driver reports a device or not (its kernels: :func:`_fake_cupy_namespace`)."""
    cp = types.ModuleType("cupy")
    cp.cuda = types.SimpleNamespace(is_available=lambda: available, Device=lambda: "cuda:0")
    return cp


def _fake_cupy_namespace(kernel_error: Exception | None):
    """The array-API wrapper of the fake CuPy: NumPy's kernels, or ``kernel_error``."""
    xp = types.ModuleType("array_api_compat.cupy")
    xp.float32 = np.float32

    def arange(*args, device=None, **kwargs):
        if kernel_error is not None:
            raise kernel_error
        return np.arange(*args, **kwargs)

    xp.arange = arange
    xp.sum = np.sum
    return xp


@pytest.mark.parametrize("available, error", [
    (False, None),  # CuPy imports, the driver reports no device
    (True, RuntimeError("CUDA driver version is insufficient")),  # driver answers, kernels fail
    (True, ImportError("libnvrtc.so.12: cannot open shared object file")),
])
def test_auto_does_not_pick_a_cupy_that_cannot_run(monkeypatch, fresh_cache, available, error):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(available))
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", _fake_cupy_namespace(error))
    # auto then tries torch CUDA: a real one on a GPU machine, NumPy elsewhere.
    assert select_backend("auto").name == ("torch:cuda" if _real_torch_cuda() else "numpy")
    with pytest.raises(BackendUnavailable, match="cupy"):
        select_backend("cupy")


def test_healthy_fake_cupy_is_selected(monkeypatch, fresh_cache):
    # The same path with a kernel that works: the backend is built and checked.
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(True))
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", _fake_cupy_namespace(None))
    b = select_backend("cupy")
    assert (b.name, b.is_gpu, b.device) == ("cupy", True, "cuda:0")
    assert select_backend("auto") is b


def test_auto_does_not_pick_cupy_when_its_import_fails(monkeypatch, fresh_cache):
    class Exploding(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError("CUDA_ERROR_NO_DEVICE")

    monkeypatch.setitem(sys.modules, "cupy", Exploding("cupy"))
    assert select_backend("auto").name == ("torch:cuda" if _real_torch_cuda() else "numpy")
    with pytest.raises(BackendUnavailable, match="CUDA_ERROR_NO_DEVICE"):
        select_backend("cupy")


def test_auto_is_numpy_when_no_gpu_library_runs(monkeypatch, fresh_cache):
    # Both GPU candidates blocked: auto must fall back to NumPy, whatever the machine.
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert select_backend("auto").name == "numpy"


def test_missing_library_says_which_extra(monkeypatch, fresh_cache):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install zemosaic-xp\[gpu\]"):
        select_backend("cupy")


def test_unavailable_result_is_cached_until_cleared(monkeypatch, fresh_cache):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendUnavailable):
        select_backend("cupy")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(True))
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", _fake_cupy_namespace(None))
    with pytest.raises(BackendUnavailable):  # remembered: not probed again
        select_backend("cupy")
    backends.clear_backend_cache()
    assert select_backend("cupy").name == "cupy"


def test_torch_cpu_backend():
    pytest.importorskip("torch")
    b = select_backend("torch")
    assert b.name == "torch:cpu" and not b.is_gpu and b.library == "torch"
    assert select_backend("torch:cpu") == b


@pytest.mark.skipif(not _real_torch_cuda(), reason="needs a real torch CUDA device")
def test_torch_cuda_backend_passes_its_health_check():
    b = select_backend("torch:cuda")
    assert b.is_gpu and backends.check_health(b)[0]


def test_backend_of_each_library():
    assert backend_of(np.zeros(3)).name == "numpy"
    torch = pytest.importorskip("torch")
    assert backend_of(torch.zeros(3)).name == "torch:cpu"
    xps = pytest.importorskip("array_api_strict")
    assert backend_of(xps.asarray([1.0])).name == "array_api_strict"
    with pytest.raises(TypeError, match="expected a NumPy, CuPy or torch array, got list"):
        backend_of([1.0])


def test_no_eager_import_of_torch_cupy_or_numba():
    code = ("import sys, zemosaic_xp.backends as b; b.select_backend('numpy');"
            "print(sorted(m for m in ('torch', 'cupy', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stack_imports_neither_torch_nor_cupy():
    code = ("import sys, zemosaic_xp as zx; zx.stack(zx.synthetic.make_stack(n_frames=3, shape=(8, 8)).frames);"
            "print(sorted(m for m in ('torch', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
