"""Moving arrays between the host and a backend's device."""

from __future__ import annotations

from typing import Any

import numpy as np

from .selection import Backend, backend_of, select_backend

__all__ = ["to_backend", "to_host"]


def to_host(array: Any) -> np.ndarray:
    """Copy (or view) any supported array as a NumPy array on the host.

    Parameters
    ----------
    array : array-like
        NumPy, CuPy, torch (any device) or array-api-strict array, or anything
        ``numpy.asarray`` accepts.

    Returns
    -------
    numpy.ndarray
        The same values on the host; a NumPy input is returned as it is (a torch CPU
        tensor comes back as a view of its memory).

    Notes
    -----
    Big-endian or non-contiguous inputs are returned as they are; callers that upload
    to a GPU go through :func:`to_backend`, which normalises the byte order.
    """
    if isinstance(array, np.ndarray):
        return array
    from array_api_compat import is_cupy_array, is_torch_array

    if is_cupy_array(array):
        return array.get()
    if is_torch_array(array):
        return array.detach().to("cpu").numpy()
    device = getattr(array, "device", None)
    if type(device).__module__.startswith("array_api_strict") and str(device) != str(_strict_cpu(device)):
        # array-api-strict refuses to export arrays of its other devices to NumPy.
        array = array.to_device(_strict_cpu(device))
    return np.asarray(array)


def _strict_cpu(device: Any) -> Any:
    return type(device)("CPU_DEVICE")


def _native_float32(host: np.ndarray) -> np.ndarray:
    # Load-bearing: FITS arrays are big-endian; CuPy silently computes garbage on them
    # and torch.from_numpy refuses them (reference/arrayapi.md §0.6).
    if host.dtype.kind == "f" and host.dtype.itemsize <= 4 and host.dtype.isnative:
        return np.ascontiguousarray(host, dtype=np.float32)
    return np.ascontiguousarray(host.astype(np.float32))


def to_backend(array: Any, backend: Backend | str, *, dtype_float32: bool = True) -> Any:
    """Move ``array`` onto ``backend``'s device, as native-endian float32 by default.

    Parameters
    ----------
    array : array-like
        NumPy, CuPy or torch array (any device), or a nested sequence.
    backend : Backend or str
        Target backend (a name is resolved with
        :func:`~zemosaic_xp.backends.select_backend`).
    dtype_float32 : bool
        Convert to native float32 (the core's working dtype). False keeps the dtype
        (booleans, integers), still byte-swapped to native order.

    Returns
    -------
    array
        On the target backend and device; ``array`` itself when it already lives there
        with the requested dtype.
    """
    backend = select_backend(backend)
    try:
        current = backend_of(array)
        same = current.name == backend.name and (backend.device is None or current.device == backend.device)
    except TypeError:
        same = False
    native = not isinstance(array, np.ndarray) or array.dtype.isnative
    if same and native and (not dtype_float32 or str(getattr(array, "dtype", "")).endswith("float32")):
        return array
    host = to_host(array) if not isinstance(array, np.ndarray) else array
    host = np.asarray(host)
    if dtype_float32:
        host = _native_float32(host)
    elif not host.dtype.isnative:
        host = host.astype(host.dtype.newbyteorder("="))
    lib = backend.library
    if lib == "numpy":
        return host
    if lib == "cupy":
        import cupy as cp

        with backend.device:
            return cp.asarray(host)
    if lib == "torch":
        import torch

        return torch.from_numpy(np.ascontiguousarray(host)).to(backend.device)
    if lib == "array_api_strict":
        return backend.xp.asarray(host, device=backend.device)
    msg = f"cannot move arrays to backend {backend.name!r}"
    raise ValueError(msg)
