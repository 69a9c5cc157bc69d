"""Backend fixtures: every array test runs once per backend that can run here.

``ZEMOSAIC_XP_BACKENDS`` (comma-separated) narrows the set; the default is every
backend we support. GPU backends are skipped, with the reason, when no device
passes the health check (``cupy.cuda.is_available()`` and a real kernel), so CI
without a GPU runs numpy, array_api_strict and torch on the CPU.

``array_api_strict:device1`` is array-api-strict on a non-default device with
``data_dependent_shapes=False`` and ``boolean_indexing=False`` (SciPy's and
array-api-extra's practice): a hidden ``np.asarray``, a transfer to the default
device or a boolean mask in the core fails there. Tests whose algorithm needs
data-dependent shapes mark themselves ``@pytest.mark.data_dependent_shapes``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from zemosaic_xp.backends import Backend, BackendUnavailable, select_backend, to_backend, to_host

STRICT_DEVICE = "array_api_strict:device1"
ALL_BACKENDS = ("numpy", "array_api_strict", STRICT_DEVICE, "torch:cpu", "cupy", "torch:cuda")
_requested = [n.strip() for n in os.environ.get("ZEMOSAIC_XP_BACKENDS", ",".join(ALL_BACKENDS)).split(",") if n.strip()]
for _name in _requested:
    if _name not in ALL_BACKENDS:
        raise pytest.UsageError(
            f"ZEMOSAIC_XP_BACKENDS names unknown backend {_name!r}; valid: {', '.join(ALL_BACKENDS)}")
BACKENDS = tuple(_requested)
GPU_BACKENDS = tuple(b for b in BACKENDS if b in ("cupy", "torch:cuda"))


def get_backend(name: str) -> Backend:
    """The backend ``name``, or skip the test with the reason it cannot run here."""
    try:
        if name == STRICT_DEVICE:
            xps = select_backend("array_api_strict").xp
            return Backend("array_api_strict", xps, xps.Device("device1"), False)
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
    backend = get_backend(request.param)
    if request.param != STRICT_DEVICE or request.node.get_closest_marker("data_dependent_shapes"):
        yield backend
        return
    with backend.xp.ArrayAPIStrictFlags(data_dependent_shapes=False, boolean_indexing=False):
        yield backend


@pytest.fixture
def xp(backend):
    """The array-API namespace of ``backend``."""
    return backend.xp


@pytest.fixture(params=GPU_BACKENDS or ("cupy",))
def gpu_backend(request) -> Backend:
    """A GPU backend (CuPy or torch CUDA); skipped on machines without one."""
    return get_backend(request.param)


def stack_other_implementation(backend: Backend, frames, config):
    """``frames`` stacked on ``backend`` by code other than NumPy's native path.

    Parity tests compare this with ``stack(frames)`` on NumPy (its native kernels): on
    NumPy and torch CPU the other side is the portable array-API code (torch CPU would
    otherwise delegate to NumPy's kernels), elsewhere the backend's own ops.
    """
    from zemosaic_xp import stack
    from zemosaic_xp.core.ops import portable_only

    x = to_backend(np.asarray(frames, dtype=np.float32), backend)
    if backend.name in ("numpy", "torch:cpu"):
        with portable_only():
            return stack(x, config=config)
    return stack(x, config=config)


def data_dependent_shapes_allowed(backend: Backend) -> bool:
    """False while the strict device runs with ``data_dependent_shapes=False``."""
    flags = getattr(backend.xp, "get_array_api_strict_flags", None)
    return flags is None or bool(flags()["data_dependent_shapes"])


def on(backend: Backend, array):
    """A NumPy array (or nested sequence) moved to ``backend`` as float32."""
    return to_backend(np.asarray(array, dtype=np.float32), backend)


def host(array) -> np.ndarray:
    """Any backend array as NumPy."""
    return np.asarray(to_host(array))


def assert_on(array, backend: Backend) -> None:
    """The result must stay in the input's namespace and on its device (no round-trip to NumPy)."""
    from array_api_compat import array_namespace, device

    from zemosaic_xp.backends import backend_of

    assert backend_of(array).library == backend.library, (backend_of(array).name, backend.name)
    assert array_namespace(array) is array_namespace(to_backend(np.zeros(1, np.float32), backend))
    if backend.device is not None:
        assert str(device(array)) == str(backend.device), (device(array), backend.device)
