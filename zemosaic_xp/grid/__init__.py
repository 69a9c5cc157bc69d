"""Grid mode: ``stack_plan.csv`` → global WCS → tiles stacked in parallel → seamless mosaic."""

from .assemble import MosaicResult, TileImage, assemble_mosaic, seam_steps, write_mosaic_outputs, write_preview_png

__all__ = ["TileImage", "MosaicResult", "assemble_mosaic", "write_mosaic_outputs", "write_preview_png",
           "seam_steps"]
