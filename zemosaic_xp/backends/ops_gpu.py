"""Stack-core ops for GPUs (CuPy, torch CUDA): the portable maths with a GPU strategy."""

from __future__ import annotations

from typing import Any

from ..core.ops import ArrayOps

__all__ = ["GpuOps"]


class GpuOps(ArrayOps):
    """CuPy / torch CUDA: portable maths, sync-free strategy, budget-sized bands.

    Every primitive is the portable one; what changes is the strategy. No compaction
    (a data-dependent shape synchronises the device with the host), no convergence
    test inside iteration loops (``bool(any(active))`` is a sync too; per-pixel
    convergence makes the result independent of it), bands as large as the memory
    budget allows and the uncertainty map's sums over the whole band (a GPU needs
    large launches to be busy).

    Parameters
    ----------
    xp : module
        The array-API namespace.
    name : str
        Shown in ``StackResult.stats["ops"]`` (``"cupy"``, ``"torch:cuda"``).
    """

    compact = False
    check_every = 0
    band_bytes = None
    chunk_samples = 0  # the uncertainty map in one pass per band: large launches

    def __init__(self, xp: Any, name: str) -> None:
        super().__init__(xp)
        self.name = name
