"""Classic master tiles: stack a group of aligned frames from FITS files or arrays.

Row bands stream from memory-light FITS readers through the array-API core, on the
GPU when a :class:`~zemosaic_xp.gpu.GpuPolicy` allows it (ZeMosaic's Phase 3 "auto mode C": try the
GPU, retry once after halving the bands on an out-of-memory error, then disable the
GPU for the rest of the run and finish on the CPU). A run of several tiles reports to
ZeMosaic's GUI as one (:class:`~.progress.MasterTileRun`). See ``docs/classic.md``.
"""

from .master_tile import MasterTileResult, provenance_header, stack_master_tile, write_master_tile
from .progress import MasterTileRun

__all__ = [
    "stack_master_tile",
    "MasterTileResult",
    "write_master_tile",
    "provenance_header",
    "MasterTileRun",
]
