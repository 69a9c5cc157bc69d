"""Rows of a FITS image read from the file when they are sliced, not before.

:class:`FitsRows` stands for one uncompressed floating-point image HDU as a read-only
array of shape ``(h, w, C)`` (channels last, as the mosaic code holds images) or
``(h, w)``: slicing it reads only the rows asked for (each read opens the file for itself:
threads may read at once) and returns native float32. The grid's
assembly holds its tiles this way, so that its memory grows with the canvas and the
rows in flight, not with the number of tiles.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import FITSFixedWarning

__all__ = ["FitsRows"]

_FLOAT_BITPIX = {-32: ">f4", -64: ">f8"}


class FitsRows:
    """One FITS image HDU as a read-only float32 array whose rows are read on demand.

    Parameters
    ----------
    path : str or Path
        The FITS file.
    hdu : int or str
        The image HDU (index or ``EXTNAME``).
    channels_last : bool
        True: the array is ``(h, w, C)`` (a 2-D HDU gives C = 1, a ``(C, h, w)`` cube
        is read channels last); False: the HDU must be 2-D and the array is ``(h, w)``.

    Attributes
    ----------
    shape : tuple of int
        ``(h, w, C)`` or ``(h, w)``.
    ndim : int
    dtype : numpy.dtype
        float32 (what every read returns; float64 files are rounded).

    Raises
    ------
    ValueError
        The HDU is not an uncompressed 2-D or 3-D floating-point image without
        ``BSCALE``/``BZERO`` scaling (BITPIX -32 or -64), or not 2-D with
        ``channels_last=False``; the message names the file and HDU.
    OSError
        The file cannot be opened.

    Notes
    -----
    Indexing takes a row slice first (``a[r0:r1]``, ``a[r0:r1, c0:c1, k]``): only rows
    ``r0..r1`` are read, then the rest of the key applies to them. Any other key, and
    ``np.asarray(a)``, read the whole image. The file must not change while the object
    is used: it is opened at every read, never held open.
    """

    def __init__(self, path: str | os.PathLike, hdu: int | str, *, channels_last: bool = True) -> None:
        self.path = Path(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            with fits.open(self.path, memmap=False, lazy_load_hdus=True) as hdul:
                h = hdul[hdu]
                header = h.header
                offset = int(h.fileinfo()["datLoc"])
        where = f"'{self.path}' HDU {hdu!r}"
        bitpix = header.get("BITPIX")
        naxis = int(header.get("NAXIS", 0))
        scaled = header.get("BSCALE", 1) != 1 or header.get("BZERO", 0) != 0
        if bitpix not in _FLOAT_BITPIX or naxis not in (2, 3) or scaled or header.get("ZIMAGE", False):
            msg = (f"{where} is not an uncompressed, unscaled 2-D or 3-D float image (BITPIX {bitpix}, "
                   f"NAXIS {naxis}): it cannot be read by rows")
            raise ValueError(msg)
        dims = tuple(int(header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))  # C order: (C,) h, w
        if not channels_last and naxis != 2:
            msg = f"{where} has shape {dims}; a 2-D image was expected"
            raise ValueError(msg)
        self._file_dtype = np.dtype(_FLOAT_BITPIX[bitpix])
        self._offset = offset
        self._planes = dims[0] if naxis == 3 else 1
        self._h, self._w = dims[-2], dims[-1]
        self._channels_last = channels_last
        self.shape: tuple[int, ...] = (self._h, self._w, self._planes) if channels_last else (self._h, self._w)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self._h

    def __repr__(self) -> str:
        return f"FitsRows('{self.path}', shape={self.shape})"

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Return rows ``[r0, r1)`` as a new native float32 array (``(r1 − r0, w[, C])``).

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= h``.

        Returns
        -------
        ndarray
            C-contiguous, float32.

        Raises
        ------
        OSError
            The file is shorter than its header says (truncated), naming it.
        """
        r0, r1 = max(0, int(r0)), min(self._h, int(r1))
        n = max(0, r1 - r0)
        item = self._file_dtype.itemsize
        row_bytes = self._w * item
        plane_bytes = self._h * row_bytes
        out = np.empty((n, self._w, self._planes) if self._channels_last else (n, self._w), np.float32)
        if n == 0:
            return out
        with open(self.path, "rb") as fh:  # a handle of its own: threads may read at once
            for c in range(self._planes):
                want = n * row_bytes
                fh.seek(self._offset + c * plane_bytes + r0 * row_bytes)
                buf = fh.read(want)
                if len(buf) != want:
                    msg = f"'{self.path}' is truncated: rows {r0}-{r1} of its image are missing"
                    raise OSError(msg)
                plane = np.frombuffer(buf, self._file_dtype).reshape(n, self._w)
                if self._channels_last:
                    out[..., c] = plane
                else:
                    out[...] = plane
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        parts = key if isinstance(key, tuple) else (key,)
        first = parts[0] if parts else slice(None)
        if isinstance(first, slice) and first.step in (None, 1):
            r0, r1, _ = first.indices(self._h)
            return self.rows(r0, max(r0, r1))[(slice(None),) + tuple(parts[1:])]
        return self.rows(0, self._h)[key]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self.rows(0, self._h)
        return data if dtype is None else data.astype(dtype, copy=False)
