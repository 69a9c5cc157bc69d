"""Stack-core ops for torch on the CPU: NumPy's kernels on the tensors' own memory.

CPU tensors and NumPy arrays share memory without a copy (``Tensor.numpy()``,
``torch.from_numpy``), and torch's CPU ``sort``, ``isnan``/``isinf`` and small-call
overheads are much slower than NumPy's in the builds measured (docs/performance.md).
So ``stack_frames`` delegates a whole torch CPU stack to the NumPy ops
(:meth:`TorchCpuOps.host_delegate`); ``StackResult.stats["ops"]`` then says so, e.g.
``"numpy+numba (delegated)"``. Bands given to ``stack_band`` directly still run every
heavy primitive as NumPy on the tensor's buffer, through the methods below.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..core.ops import ArrayOps
from .ops_numpy import CpuOps, NumpyOps

__all__ = ["TorchCpuOps"]

Array = Any


def _np(t: Array) -> np.ndarray:
    """A NumPy view of a CPU tensor (shared memory, strides kept)."""
    return t.detach().numpy()


def _from_numpy(a: np.ndarray) -> Array:
    import torch

    return torch.from_numpy(a)


class TorchCpuOps(CpuOps):
    """PyTorch on the CPU: the NumPy kernels on the same memory, compaction, threaded bands.

    Parameters
    ----------
    xp : module
        The torch array-API namespace.
    """

    name = "torch:cpu"

    def __init__(self, xp: Any) -> None:
        super().__init__(xp)
        import array_api_compat.numpy as xp_numpy

        self._numpy = NumpyOps(xp_numpy)

    def host_delegate(self) -> tuple[ArrayOps, Callable[[Array], Array], Callable[[Array], Array]]:
        # The delegation is stated in the result: stack_frames names the ops
        # "<numpy ops> (delegated)" in stats["ops"].
        return self._numpy, _np, _from_numpy

    def band_copy(self, view: Array) -> Array:
        return _from_numpy(self._numpy.band_copy(_np(view)))

    def nan_nonfinite(self, x: Array) -> Array:
        self._numpy.nan_nonfinite(_np(x))  # in place on the tensor's buffer
        return x

    def sort_valid(self, x: Array) -> tuple[Array, Array]:
        return self._on_numpy("sort_valid", x)

    def centred_sums(self, s: Array, centre: Array, lo: Array, hi: Array, *,
                     whole: bool = False) -> tuple[Array, Array]:
        return self._on_numpy("centred_sums", s, centre, lo, hi, whole=whole)

    def prefix_sums(self, d: Array) -> Array:
        return _from_numpy(np.cumsum(_np(d), axis=-1))

    def _on_numpy(self, method: str, *tensors: Array, **options: Any) -> tuple[Array, ...] | None:
        """``NumpyOps.<method>`` on NumPy views of ``tensors``; its arrays back as tensors."""
        out = getattr(self._numpy, method)(*(_np(t.contiguous()) for t in tensors), **options)
        return None if out is None else tuple(_from_numpy(a) for a in out)

    def kappa_sigma_fit(self, s: Array, n_valid: Array, /, **options: Any) -> tuple[Array, ...] | None:
        return self._on_numpy("kappa_sigma_fit", s, n_valid, **options)

    def wsc_pixinsight_fit(self, s: Array, n_valid: Array, /, **options: Any) -> tuple[Array, ...] | None:
        return self._on_numpy("wsc_pixinsight_fit", s, n_valid, **options)

    def wsc_fit(self, s: Array, n_valid: Array, /, **options: Any) -> tuple[Array, ...] | None:
        return self._on_numpy("wsc_fit", s, n_valid, **options)

    def wsc_weighted_fit(self, x: Array, weights: Array, s: Array, n_valid: Array, /,
                         **options: Any) -> tuple[Array, ...] | None:
        return self._on_numpy("wsc_weighted_fit", x, weights, s, n_valid, **options)
