"""The one lookup of native stack-core ops: which :class:`ArrayOps` suits a namespace.

:func:`zemosaic_xp.core.ops.ops_for` imports this module when it first needs ops for
a namespace and calls :func:`native_ops`; nothing registers itself anywhere. The
choice is made here only, by ``array_api_compat.is_*_namespace`` and the device.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import is_cupy_namespace, is_numpy_namespace, is_torch_namespace

from ..core.ops import ArrayOps
from .ops_gpu import GpuOps
from .ops_numpy import NumpyOps
from .ops_torch import TorchCpuOps

__all__ = ["native_ops"]


def native_ops(xp: Any, device: Any) -> ArrayOps | None:
    """The native fast paths for arrays of ``xp`` on ``device``, or None.

    Parameters
    ----------
    xp : module
        An array-API namespace (array-api-compat wrapper or the library itself).
    device : object
        The arrays' device (``"cpu"``, a ``torch.device``, a CuPy device) or None.

    Returns
    -------
    ArrayOps or None
        :class:`~zemosaic_xp.backends.ops_numpy.NumpyOps` for NumPy,
        :class:`~zemosaic_xp.backends.ops_torch.TorchCpuOps` for torch on the CPU,
        :class:`~zemosaic_xp.backends.ops_gpu.GpuOps` for torch on a GPU and for CuPy;
        None for any other namespace (array-api-strict, ...): the core then uses the
        portable :class:`~zemosaic_xp.core.ops.ArrayOps`.
    """
    if is_numpy_namespace(xp):
        return NumpyOps(xp)
    if is_torch_namespace(xp):
        kind = getattr(device, "type", None if device is None else str(device))
        if kind in (None, "cpu"):
            return TorchCpuOps(xp)
        return GpuOps(xp, f"torch:{kind}")
    if is_cupy_namespace(xp):
        return GpuOps(xp, "cupy")
    return None
