"""The ``ALPHA`` image extension of a frame file: weights in [0, 1], whole or by rows.

A mixin of :class:`zemosaic_xp.io.fits.FitsFrameSource` (it reads that class's
``path``, ``height``, ``width`` and ``_alpha_index``): ZeMosaic writes a uint8 ALPHA
plane (0–255) beside each aligned frame; a pixel's weight is ALPHA / 255.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["AlphaRows"]


def _error(msg: str) -> Exception:
    from .fits import FitsReadError  # the one error type of FITS reads (fits.py imports this module)

    return FitsReadError(msg)


def _fits_open(path: Any, **kwargs: Any) -> Any:
    from .fits import _open

    return _open(path, **kwargs)


class AlphaRows:
    """Read the ``ALPHA`` extension of a :class:`~zemosaic_xp.io.fits.FitsFrameSource`."""

    path: str
    height: int
    width: int
    _alpha_index: int | None

    def read_alpha_rows(self, r0: int, r1: int) -> np.ndarray | None:
        """Read rows ``[r0, r1)`` of the ``ALPHA`` extension as weights in [0, 1].

        Equal to ``read_alpha()[r0:r1]`` but read straight from disk like
        :meth:`read_rows` (the extension's layout is parsed on the first call and
        kept).

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= H``.

        Returns
        -------
        ndarray, shape (r1 - r0, W), float32, or None
            ALPHA / 255 clipped to [0, 1] on the host (the maximum over the planes of
            a per-channel ALPHA); None when the file has no ``ALPHA`` extension.

        Raises
        ------
        ValueError
            The row range is outside the frame.
        FitsReadError
            The extension cannot be read by rows, has the wrong shape, or ends early.
        """
        if self._alpha_index is None:
            return None
        if not 0 <= r0 <= r1 <= self.height:
            msg = f"rows [{r0}, {r1}) are outside '{self.path}' (height {self.height})"
            raise ValueError(msg)
        layout = self.__dict__.get("_alpha_rows_layout")
        if layout is None:
            layout = self._alpha_rows_layout = self._locate_alpha()
        offset, dtype, kind, planes, bscale, bzero = layout
        h, w = r1 - r0, self.width
        with open(self.path, "rb") as fh:
            if kind == "HW":
                raw = self._read_alpha_block(fh, offset, dtype, r0 * w, h * w).reshape(h, w)
            elif kind == "HWC":
                raw = self._read_alpha_block(fh, offset, dtype, r0 * w * planes, h * w * planes)
                raw = raw.reshape(h, w, planes)
            else:
                raw = np.stack([self._read_alpha_block(fh, offset, dtype, p * self.height * w + r0 * w, h * w)
                                .reshape(h, w) for p in range(planes)])
        alpha = raw.astype(np.float32)
        if bscale != 1.0 or bzero != 0.0:  # astropy's scaling in read_alpha
            alpha = (raw.astype(np.float64) * bscale + bzero).astype(np.float32)
        if kind == "CHW":
            alpha = alpha.max(axis=0)
        elif kind == "HWC":
            alpha = alpha.max(axis=-1)
        return np.clip(alpha / 255.0, 0.0, 1.0).astype(np.float32)

    def _read_alpha_block(self, fh: Any, offset: int, dtype: np.dtype, start: int, count: int) -> np.ndarray:
        buf = np.empty(count, dtype=dtype)
        fh.seek(offset + start * dtype.itemsize)
        got = fh.readinto(memoryview(buf).cast("B"))
        if got != buf.nbytes:
            msg = f"'{self.path}' ended early while reading ALPHA rows (got {got} of {buf.nbytes} bytes)"
            raise _error(msg)
        return buf

    def _locate_alpha(self) -> tuple[int, np.dtype, str, int, float, float]:
        """(data offset, dtype, layout, planes, BSCALE, BZERO) of the ALPHA extension."""
        with _fits_open(self.path, memmap=False, lazy_load_hdus=True, do_not_scale_image_data=True) as hdul, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = hdul[self._alpha_index].header
            info = hdul.fileinfo(self._alpha_index)
            bitpix, naxis = int(header["BITPIX"]), int(header["NAXIS"])
            shape = tuple(int(header[f"NAXIS{naxis - i}"]) for i in range(naxis))
            bscale, bzero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
        dtypes = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
        if info is None or bitpix not in dtypes or len(shape) not in (2, 3):
            msg = f"'{self.path}' has an ALPHA extension that cannot be read by rows (BITPIX {bitpix}, shape {shape})"
            raise _error(msg)
        if len(shape) == 2:
            kind, planes, hw = "HW", 1, shape
        elif shape[0] in (1, 3, 4):  # the same rule as read_alpha
            kind, planes, hw = "CHW", shape[0], shape[1:]
        else:
            kind, planes, hw = "HWC", shape[2], shape[:2]
        if tuple(hw) != (self.height, self.width):
            msg = f"'{self.path}' ALPHA has shape {shape}; expected {(self.height, self.width)}"
            raise _error(msg)
        return int(info["datLoc"]), np.dtype(dtypes[bitpix]), kind, planes, bscale, bzero

    def read_alpha(self) -> np.ndarray | None:
        """Read the whole ``ALPHA`` extension as weights in [0, 1].

        Returns
        -------
        ndarray, shape (H, W), float32, or None
            ALPHA / 255 clipped to [0, 1] on the host (the maximum over the planes of
            a per-channel ALPHA); None when the file has no ``ALPHA`` extension.

        Raises
        ------
        FitsReadError
            The extension's shape does not match the frame.
        """
        if self._alpha_index is None:
            return None
        with _fits_open(self.path, memmap=False) as hdul:
            alpha = np.asarray(hdul[self._alpha_index].data, dtype=np.float32)
        if alpha.ndim == 3:  # per-channel alpha: a pixel is usable where any channel is
            alpha = alpha.max(axis=0) if alpha.shape[0] in (1, 3, 4) else alpha.max(axis=-1)
        if alpha.shape != (self.height, self.width):
            msg = f"'{self.path}' ALPHA has shape {alpha.shape}; expected {(self.height, self.width)}"
            raise _error(msg)
        return np.clip(alpha / 255.0, 0.0, 1.0).astype(np.float32)
