"""Stack-core ops for GPUs (CuPy, torch CUDA): the portable maths with a GPU strategy."""

from __future__ import annotations

from typing import Any

from ..core.ops import ArrayOps
from . import cuda_wsc

__all__ = ["GpuOps"]


class GpuOps(ArrayOps):
    """CuPy / torch CUDA: portable maths, few launches, budget-sized bands.

    Every primitive is the portable one; what changes is the strategy, set by what a
    GPU spends its time on: kernel launches (~10 µs each from Python, whatever the
    array size) far more than arithmetic. No compaction (a data-dependent shape
    synchronises the device with the host and saves arithmetic, not launches);
    thresholds placed in sorted rows by one count over the rows, not a binary search
    of ``log2 N`` rounds; a convergence test every :attr:`check_every` iterations (a
    sync of a few µs, which ends the loops once every pixel converged instead of
    running their caps: the winsorised clip's inner loop is capped at 50 steps a
    pass); bands as large as the memory budget allows and the uncertainty map's
    sums over the whole band. Per-pixel convergence makes results independent of
    all of it.

    Parameters
    ----------
    xp : module
        The array-API namespace.
    name : str
        Shown in ``StackResult.stats["ops"]`` (``"cupy"``, ``"torch:cuda"``).
    """

    compact = False
    check_every = 2
    count_search = True
    band_bytes = None
    chunk_samples = 0  # the uncertainty map in one pass per band: large launches

    def __init__(self, xp: Any, name: str) -> None:
        super().__init__(xp)
        self.name = name

    def wsc_pixinsight_fit(self, s: Any, n_valid: Any, /, **options: Any) -> tuple[Any, ...] | None:
        """Run the default rejection as one CUDA kernel (:mod:`.cuda_wsc`), or None (portable).

        Parameters
        ----------
        s, n_valid : array
            Sorted rows and valid counts, as :meth:`ArrayOps.wsc_pixinsight_fit`.
        **options
            ``kappa_low``, ``kappa_high``, ``max_iters``, ``min_survivors``, as there.

        Returns
        -------
        tuple of arrays or None
            As :meth:`ArrayOps.wsc_pixinsight_fit`, on the device of ``s``; None off
            CUDA (GpuOps on CPU arrays in the tests), without CuPy, or when the kernel
            does not compile.
        """
        return cuda_wsc.wsc_pixinsight_rows(s, n_valid, **options)
