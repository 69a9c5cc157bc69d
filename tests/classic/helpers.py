"""Helpers for the classic tests: FITS frames on disk, fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits


def write_frame(path: Path, hwc: np.ndarray, *, layout: str = "CHW", dtype: str = ">f4",
                alpha: np.ndarray | None = None, **cards) -> Path:
    """Write one frame (H, W) or (H, W, C) as FITS in ``layout`` ("CHW" or "HWC")."""
    data = np.asarray(hwc)
    if data.ndim == 3 and layout == "CHW":
        data = np.moveaxis(data, -1, 0)
    hdu = fits.PrimaryHDU(data=np.ascontiguousarray(data).astype(dtype))
    for key, value in cards.items():
        hdu.header[key] = value
    hdus = [hdu]
    if alpha is not None:
        hdus.append(fits.ImageHDU(data=np.asarray(alpha, dtype=np.uint8), name="ALPHA"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_frames(folder: Path, frames: np.ndarray, *, prefix: str = "f", **kwargs) -> list[str]:
    """Write each frame of an (N, H, W[, C]) stack; return the paths as strings."""
    folder.mkdir(parents=True, exist_ok=True)
    return [str(write_frame(folder / f"{prefix}{i:04d}.fits", frame, **kwargs))
            for i, frame in enumerate(frames)]


def fast_fits_writer(shape: tuple[int, int]):
    """A function ``write(path, frame)`` writing 2-D big-endian float32 FITS without astropy.

    The header block is built once by astropy; each file is that block, the data and
    the padding to 2880 bytes, so thousands of frames are written in seconds.
    """
    header = fits.PrimaryHDU(data=np.zeros(shape, dtype=">f4")).header.tostring().encode("ascii")
    nbytes = shape[0] * shape[1] * 4
    pad = b"\0" * ((-nbytes) % 2880)

    def write(path: Path, frame: np.ndarray) -> None:
        with open(path, "wb") as fh:
            fh.write(header)
            fh.write(np.ascontiguousarray(frame, dtype=">f4").tobytes())
            fh.write(pad)

    return write
