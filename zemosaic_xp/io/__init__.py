"""FITS input/output shared by the classic and grid adapters."""

from .fits import FitsFrame, FitsFrameSource, FitsReadError, read_frame
from .fits_write import write_fits

__all__ = ["FitsFrame", "FitsFrameSource", "FitsReadError", "read_frame", "write_fits"]
