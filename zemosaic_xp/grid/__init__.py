"""Grid mode: ``stack_plan.csv`` → global WCS → tiles stacked in parallel → seamless mosaic.

The assembly of the tiles is :mod:`zemosaic_xp.mosaic` (grid depends on it, never the
reverse); seam metrics are in :mod:`zemosaic_xp.diagnostics`.

The public names are loaded on first use, so that a worker process, which imports
only :mod:`.worker` and what a tile needs, does not pay for the runner, the assembly
and their imports (scipy.sparse, the photometry) at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..backends.numpy_xp import scipy_numpy_namespace

# Before any grid module imports scipy.ndimage or scipy.sparse (through the mosaic,
# the normalisation, a worker's tile): SciPy's array-API copy of NumPy without
# numpy.f2py / numpy.testing (~5 MiB in every grid process).
scipy_numpy_namespace()

__all__ = ["run_grid_mode", "GridConfig", "GridResult", "load_stack_plan", "connect_cluster"]

_LAZY = {
    "run_grid_mode": ".runner", "GridResult": ".result", "GridConfig": ".config", "load_stack_plan": ".plan",
    "connect_cluster": ".cluster",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
