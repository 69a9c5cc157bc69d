"""Grid mode: ``stack_plan.csv`` → global WCS → tiles stacked in parallel → seamless mosaic."""

from .assemble import MosaicResult, TileImage, assemble_mosaic, seam_steps, write_mosaic_outputs, write_preview_png
from .config import GridConfig
from .plan import load_stack_plan
from .runner import GridResult, run_grid_mode

__all__ = ["run_grid_mode", "GridConfig", "GridResult", "load_stack_plan", "TileImage", "MosaicResult",
           "assemble_mosaic", "write_mosaic_outputs", "write_preview_png", "seam_steps"]
