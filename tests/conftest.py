"""Backend fixtures: every array test runs once per backend that can run here.

``ZEMOSAIC_XP_BACKENDS`` (comma-separated) narrows the set; the default is every
backend we support. GPU backends are skipped, with the reason, when no device
passes the health check (``cupy.cuda.is_available()`` and a real kernel), so CI
without a GPU runs numpy, array_api_strict and torch on the CPU.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from zemosaic_xp.backends import BACKEND_NAMES, Backend, BackendUnavailable, select_backend, to_backend, to_host

ALL_BACKENDS = ("numpy", "array_api_strict", "torch:cpu", "cupy", "torch:cuda")
_requested = [n.strip() for n in os.environ.get("ZEMOSAIC_XP_BACKENDS", ",".join(ALL_BACKENDS)).split(",") if n.strip()]
for _name in _requested:
    if _name not in BACKEND_NAMES or _name == "auto":
        raise pytest.UsageError(
            f"ZEMOSAIC_XP_BACKENDS names unknown backend {_name!r}; valid: {', '.join(ALL_BACKENDS)}")
BACKENDS = tuple(_requested)
GPU_BACKENDS = tuple(b for b in BACKENDS if b in ("cupy", "torch:cuda"))


def get_backend(name: str) -> Backend:
    """The backend ``name``, or skip the test with the reason it cannot run here."""
    try:
        return select_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(f"{name}: {exc}")


def gpu_present() -> bool:
    """True when a real GPU backend (CuPy or torch CUDA) passes its health check here."""
    for name in ("cupy", "torch:cuda"):
        try:
            select_backend(name)
        except BackendUnavailable:
            continue
        return True
    return False


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    """One :class:`Backend` per supported backend; skipped where it cannot run."""
    return get_backend(request.param)


@pytest.fixture
def xp(backend):
    """The array-API namespace of ``backend``."""
    return backend.xp


@pytest.fixture(params=GPU_BACKENDS or ("cupy",))
def gpu_backend(request) -> Backend:
    """A GPU backend (CuPy or torch CUDA); skipped on machines without one."""
    return get_backend(request.param)


def on(backend: Backend, array):
    """A NumPy array (or nested sequence) moved to ``backend`` as float32."""
    return to_backend(np.asarray(array, dtype=np.float32), backend)


def host(array) -> np.ndarray:
    """Any backend array as NumPy."""
    return np.asarray(to_host(array))


def assert_on(array, backend: Backend) -> None:
    """The result must stay on the input's backend (no silent round-trip to NumPy)."""
    from zemosaic_xp.backends import backend_of

    assert backend_of(array).library == backend.library, (backend_of(array).name, backend.name)
