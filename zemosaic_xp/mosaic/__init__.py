"""Mosaic assembly: stacked tiles → one seamless mosaic, its outputs and preview.

An adapter of its own, used by grid mode and usable by anyone holding tiles on a
common canvas: :mod:`.photometry` matches the tiles (gain and offset per tile and
channel), :mod:`.blend` feathers them together, :mod:`.assemble` drives both and writes
the FITS outputs, and :mod:`.preview` the PNG. :mod:`.robust` holds the clipped mean
and the robust graph solver that the tile photometry and grid's frame normalisation
share. ``grid`` imports this package, never the reverse.
"""

from .assemble import MosaicResult, TileImage, assemble_mosaic, write_mosaic_outputs
from .preview import write_preview_png

__all__ = ["TileImage", "MosaicResult", "assemble_mosaic", "write_mosaic_outputs", "write_preview_png"]
