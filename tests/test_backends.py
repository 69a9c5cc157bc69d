"""backends.py: selection, auto fallback, data movement, OOM recognition."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from zemosaic_xp import backends
from zemosaic_xp.backends import (
    BackendUnavailable, device_memory_info, free_device_memory, is_oom_error, select_backend, to_backend,
    to_host,
)


@pytest.fixture
def fresh_cache():
    backends.clear_backend_cache()
    yield
    backends.clear_backend_cache()


def test_numpy_backend():
    b = select_backend("numpy")
    assert (b.name, b.is_gpu, b.library) == ("numpy", False, "numpy")
    assert select_backend(b) is b


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"`backend` must be one of .*'torch:cuda'"):
        select_backend("jax")


def _fake_cupy(available: bool, kernel_error: Exception | None = None):
    cp = types.ModuleType("cupy")
    cuda = types.SimpleNamespace(is_available=lambda: available)
    cp.cuda = cuda
    cp.float32 = np.float32

    def arange(*args, **kwargs):
        if kernel_error is not None:
            raise kernel_error
        return np.arange(*args, **kwargs)

    cp.arange = arange
    return cp


@pytest.mark.parametrize("available, error", [
    (False, None),  # CuPy imports, the driver reports no device
    (True, RuntimeError("CUDA driver version is insufficient")),  # driver answers, kernels fail
    (True, ImportError("libnvrtc.so.12: cannot open shared object file")),
])
def test_auto_falls_back_to_numpy_when_cupy_cannot_run(monkeypatch, fresh_cache, available, error):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(available, error))
    assert select_backend("auto").name == "numpy"
    with pytest.raises(BackendUnavailable, match="cupy"):
        select_backend("cupy")


def test_auto_falls_back_when_cupy_import_itself_fails(monkeypatch, fresh_cache):
    class Exploding(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError("CUDA_ERROR_NO_DEVICE")

    monkeypatch.setitem(sys.modules, "cupy", Exploding("cupy"))
    assert select_backend("auto").name == "numpy"


def test_missing_library_says_which_extra(monkeypatch, fresh_cache):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import raises ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install zemosaic-xp\[gpu\]"):
        select_backend("cupy")


def test_torch_cpu_backend():
    pytest.importorskip("torch")
    b = select_backend("torch")
    assert b.name == "torch:cpu" and not b.is_gpu
    x = to_backend(np.arange(6, dtype=">f4").reshape(2, 3), b)
    assert str(x.dtype) == "torch.float32"
    np.testing.assert_array_equal(to_host(x), np.arange(6).reshape(2, 3))


def test_to_backend_fixes_byte_order_and_dtype():
    big = np.arange(5, dtype=">i2")
    out = to_backend(big, "numpy")
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, np.arange(5))
    keep_int = to_backend(big, "numpy", dtype_float32=False)
    assert keep_int.dtype == np.int16 and keep_int.dtype.isnative


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


def test_no_eager_import_of_torch_or_cupy():
    code = ("import sys, zemosaic_xp as zx; zx.stack(zx.synthetic.make_stack(n_frames=3, shape=(8, 8)).frames);"
            "zx.backends.select_backend('numpy');"
            "print(sorted(m for m in ('torch', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_core_imports_no_array_library():
    import pathlib
    import re

    core = pathlib.Path(backends.__file__).parent / "core"
    pattern = re.compile(r"^\s*(import|from)\s+(numpy|cupy|torch)\b", re.M)
    offenders = [p.name for p in core.glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
