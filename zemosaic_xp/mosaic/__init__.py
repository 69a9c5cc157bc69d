"""Mosaic assembly: stacked tiles → one seamless mosaic, its outputs and preview.

An adapter of its own, used by grid mode and usable by anyone holding tiles on a
common canvas: :mod:`.photometry` matches the tiles (gain and offset per tile and
channel), :mod:`.blend` feathers them together, :mod:`.assemble` drives both and writes
the FITS outputs, and :mod:`.preview` the PNG. :mod:`.robust` holds the clipped mean
and the robust graph solver that the tile photometry and grid's frame normalisation
share. ``grid`` imports this package, never the reverse.

The public names are loaded on first use (they pull in SciPy and astropy).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TileImage", "MosaicResult", "assemble_mosaic", "write_mosaic_outputs", "write_preview_png"]

_LAZY = {"TileImage": ".assemble", "MosaicResult": ".assemble", "assemble_mosaic": ".assemble",
         "write_mosaic_outputs": ".assemble", "write_preview_png": ".preview"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
