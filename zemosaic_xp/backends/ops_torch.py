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
        from .numpy_xp import numpy_namespace

        self._numpy = NumpyOps(numpy_namespace())

    def host_delegate(self) -> tuple[ArrayOps, Callable[[Array], Array], Callable[[Array], Array]]:
        """Hand whole stacks to the NumPy ops, on the tensors' own memory.

        Returns
        -------
        tuple of (NumpyOps, callable, callable)
            ``(ops, to, back)`` as :meth:`ArrayOps.host_delegate` specifies: the NumPy
            ops, ``Tensor.numpy()`` and ``torch.from_numpy`` (both zero-copy).
        """
        # The delegation is stated in the result: stack_frames names the ops
        # "<numpy ops> (delegated)" in stats["ops"].
        return self._numpy, _np, _from_numpy

    def band_copy(self, view: Array) -> Array:
        """Copy ``view`` into a new C-contiguous float32 tensor, by :meth:`NumpyOps.band_copy`.

        Parameters
        ----------
        view : torch.Tensor, any shape and strides, real, on the CPU
            The values to copy (typically a transposed band).

        Returns
        -------
        torch.Tensor, same shape, float32
            A new CPU tensor.
        """
        return _from_numpy(self._numpy.band_copy(_np(view)))

    def nan_nonfinite(self, x: Array) -> Array:
        """Replace ±inf by NaN ("no data") in place, by NumPy on the tensor's buffer.

        Parameters
        ----------
        x : torch.Tensor, float32, on the CPU
            Samples, modified in place.

        Returns
        -------
        torch.Tensor
            ``x`` itself.
        """
        self._numpy.nan_nonfinite(_np(x))  # in place on the tensor's buffer
        return x

    def sort_valid(self, x: Array) -> tuple[Array, Array]:
        """Sort rows with NaN last as ``+inf`` and count the valid samples, by NumPy.

        Parameters
        ----------
        x : torch.Tensor, shape (..., N), float, on the CPU
            NaN = no data.

        Returns
        -------
        sorted : torch.Tensor, shape (..., N), same dtype
            Each row ascending, its invalid samples last as ``+inf``.
        n_valid : torch.Tensor, shape (..., 1), int64
            Valid (non-NaN) samples per row.
        """
        return self._on_numpy("sort_valid", x)

    def centred_sums(self, s: Array, centre: Array, lo: Array, hi: Array, *,
                     whole: bool = False) -> tuple[Array, Array]:
        """Sum ``d`` and ``d²`` over ``s[p, lo[p]:hi[p]]`` by :meth:`NumpyOps.centred_sums`.

        Parameters
        ----------
        s : torch.Tensor, shape (R, N), float32, on the CPU
            Rows; values outside the ranges (``+inf`` padding included) are ignored.
        centre : torch.Tensor, shape (R,), float32
            The value each row's differences ``d = f64(s) − f64(centre)`` are taken from.
        lo, hi : torch.Tensor, shape (R,), int64
            The range ``[lo, hi)`` of each row.
        whole : bool
            ``[lo, hi)`` is each row's whole valid range (:meth:`ArrayOps.centred_sums`).

        Returns
        -------
        s1 : torch.Tensor, shape (R,), float64
            Σd, 0 for an empty range.
        s2 : torch.Tensor, shape (R,), float64
            Σd², 0 for an empty range.
        """
        return self._on_numpy("centred_sums", s, centre, lo, hi, whole=whole)

    def prefix_sums(self, d: Array) -> Array:
        """Compute inclusive prefix sums along the last axis with ``numpy.cumsum``.

        Parameters
        ----------
        d : torch.Tensor, shape (R, N), on the CPU
            Values to accumulate.

        Returns
        -------
        torch.Tensor, shape (R, N), same dtype
            ``out[:, j] = d[:, 0] + … + d[:, j]``, added sequentially.
        """
        return _from_numpy(np.cumsum(_np(d), axis=-1))

    def _on_numpy(self, method: str, *tensors: Array, **options: Any) -> tuple[Array, ...] | None:
        """``NumpyOps.<method>`` on NumPy views of ``tensors``; its arrays back as tensors."""
        out = getattr(self._numpy, method)(*(_np(t.contiguous()) for t in tensors), **options)
        return None if out is None else tuple(_from_numpy(a) for a in out)

    def kappa_sigma_fit(self, s: Array, n_valid: Array, /, **options: Any) -> tuple[Array, ...] | None:
        """Run :meth:`NumpyOps.kappa_sigma_fit` (numba) on NumPy views of the tensors.

        Parameters
        ----------
        s : torch.Tensor, shape (R, N), float32, on the CPU
            Rows sorted ascending, invalid samples last as ``+inf``.
        n_valid : torch.Tensor, shape (R,), int64, on the CPU
            Valid samples per row.
        **options
            ``kappa_low``, ``kappa_high``, ``max_iters``, ``ddof`` and
            ``min_survivors``, as :meth:`ArrayOps.kappa_sigma_fit`.

        Returns
        -------
        tuple of torch.Tensor or None
            ``(lo, hi, iterations, centre, kept_sum)`` as CPU tensors; None without
            numba (the portable code runs).
        """
        return self._on_numpy("kappa_sigma_fit", s, n_valid, **options)

    def wsc_pixinsight_fit(self, s: Array, n_valid: Array, /, **options: Any) -> tuple[Array, ...] | None:
        """Run :meth:`NumpyOps.wsc_pixinsight_fit` (numba) on NumPy views of the tensors.

        Parameters
        ----------
        s : torch.Tensor, shape (R, N), float32, on the CPU
            Rows sorted ascending, invalid samples last as ``+inf``.
        n_valid : torch.Tensor, shape (R,), int64, on the CPU
            Valid samples per row.
        **options
            ``kappa_low``, ``kappa_high``, ``max_iters`` and ``min_survivors``, as
            :meth:`ArrayOps.wsc_pixinsight_fit`.

        Returns
        -------
        tuple of torch.Tensor or None
            ``(lo, hi, iterations, centre, kept_sum)`` as CPU tensors; None without
            numba.
        """
        return self._on_numpy("wsc_pixinsight_fit", s, n_valid, **options)

    def wsc_fit(self, s: Array, n_valid: Array, /, **options: Any) -> tuple[Array, ...] | None:
        """Run :meth:`NumpyOps.wsc_fit` (numba) on NumPy views of the tensors.

        Parameters
        ----------
        s : torch.Tensor, shape (R, N), float32, on the CPU
            Rows sorted ascending, invalid samples last as ``+inf``.
        n_valid : torch.Tensor, shape (R,), int64, on the CPU
            Valid samples per row.
        **options
            ``kappa_low``, ``kappa_high``, ``max_iters`` and ``min_survivors``, as
            :meth:`ArrayOps.wsc_fit`.

        Returns
        -------
        tuple of torch.Tensor or None
            ``(lo, hi, iterations, centre, kept_sum)`` as CPU tensors; None without
            numba.
        """
        return self._on_numpy("wsc_fit", s, n_valid, **options)

    def wsc_weighted_fit(self, x: Array, weights: Array, s: Array, n_valid: Array, /,
                         **options: Any) -> tuple[Array, ...] | None:
        """Run :meth:`NumpyOps.wsc_weighted_fit` (numba) on NumPy views of the tensors.

        Parameters
        ----------
        x : torch.Tensor, shape (R, N), float32, on the CPU
            Samples in their original order, NaN where invalid.
        weights : torch.Tensor, broadcastable to (R, N), float32
            Weights, 0 on invalid samples.
        s : torch.Tensor, shape (R, N), float32, on the CPU
            ``x`` sorted, invalid samples last as ``+inf``.
        n_valid : torch.Tensor, shape (R,), int64, on the CPU
            Valid samples per row.
        **options
            ``kappa_low``, ``kappa_high``, ``max_iters`` and ``min_survivors``, as
            :meth:`ArrayOps.wsc_weighted_fit`.

        Returns
        -------
        tuple of torch.Tensor or None
            ``(keep, n_low, n_high, iterations)`` as CPU tensors; None without numba.
        """
        return self._on_numpy("wsc_weighted_fit", x, weights, s, n_valid, **options)
