"""FITS frames in: native-endian float32, channels last in memory.

Reading: :func:`read_frame` loads a whole frame; :class:`FitsFrameSource` parses a
file's header once and then reads **row bands** straight from disk (``seek`` +
``readinto``), without loading the frame and without holding a file descriptor
between reads, so tens of thousands of frames can be streamed. Both apply
BZERO/BSCALE, convert big-endian data to native float32 on the host (before any
GPU upload), accept 2-D mono and 3-D CHW or HWC data, and turn non-finite values
into NaN. An ``ALPHA`` image extension (uint8 0–255) is read as weights in [0, 1].

Writing is :func:`zemosaic_xp.io.fits_write.write_fits`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .fits_alpha import AlphaRows
from .fits_header import HduInfo, ScannedPath, scan_hdus

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io import fits

__all__ = ["FitsFrame", "FitsFrameSource", "read_frame", "FitsReadError", "frame_wcs"]

# HDU names that hold the science image when HDU 0 has no data (ZeMosaic's loader).
_SCIENCE_NAMES = ("SCI", "IMAGE", "PRIMARY")
_ALPHA_NAME = "ALPHA"


class FitsReadError(ValueError):
    """A FITS file exists but cannot be used as a frame; the message names the file."""


@dataclass
class FitsFrame:
    """A frame read from FITS.

    Attributes
    ----------
    data : ndarray, shape (H, W, C), float32, native byte order
        NaN where the file has NaN/inf (no data). C = 1 for 2-D files.
    header : astropy.io.fits.Header
        Header of the image HDU.
    alpha : ndarray, shape (H, W), float32 in [0, 1], or None
        The ``ALPHA`` extension divided by 255, if present.
    path : str
        The file read.
    """

    data: np.ndarray
    header: fits.Header
    alpha: np.ndarray | None
    path: str


def _image_hdu_index(hdul: fits.HDUList, path: str) -> int:
    from astropy.io import fits

    if hdul[0].header.get("NAXIS", 0) >= 2:
        return 0
    for i, hdu in enumerate(hdul):
        if hdu.name.upper() in _SCIENCE_NAMES and hdu.header.get("NAXIS", 0) >= 2:
            return i
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.ImageHDU, fits.PrimaryHDU, fits.CompImageHDU)) and \
                hdu.header.get("NAXIS", 0) >= 2 and hdu.name.upper() != _ALPHA_NAME:
            return i
    msg = f"'{path}' has no 2-D or 3-D image HDU"
    raise FitsReadError(msg)


def _fast_image_index(hdus: list[HduInfo]) -> int | None:
    """:func:`_image_hdu_index` on scanned HDUs; None when there is no image (astropy decides)."""
    def ndim(h: HduInfo) -> int:
        return int(h.cards.get("NAXIS", 0))

    if ndim(hdus[0]) >= 2:
        return 0
    for i, h in enumerate(hdus):
        if h.is_image and h.name in _SCIENCE_NAMES and ndim(h) >= 2:
            return i
    for i, h in enumerate(hdus):
        if h.is_image and ndim(h) >= 2 and h.name != _ALPHA_NAME:
            return i
    return None


def _layout(shape: tuple[int, ...], path: str) -> str:
    """``"HW"``, ``"CHW"`` or ``"HWC"`` for a NumPy-order shape from a FITS file."""
    if len(shape) == 2:
        return "HW"
    if len(shape) == 3:
        # ZeMosaic's rule: channels first when the first axis is 1, 3 or 4 and the others are images.
        if shape[0] in (1, 3, 4) and (shape[2] not in (1, 3, 4) or min(shape[1], shape[2]) > 4):
            return "CHW"
        if shape[2] in (1, 3, 4):
            return "HWC"
    msg = f"'{path}' has image shape {shape}; expected (H, W), (C, H, W) or (H, W, C) with C in 1, 3, 4"
    raise FitsReadError(msg)


def _to_float32(raw: np.ndarray, bscale: float, bzero: float) -> np.ndarray:
    out = raw.astype(np.float32) if raw.dtype != np.float32 or not raw.dtype.isnative else raw.copy()
    if bscale != 1.0:
        out *= np.float32(bscale)
    if bzero != 0.0:
        out += np.float32(bzero)
    out[~np.isfinite(out)] = np.nan
    return out


def _open(path: str | os.PathLike, **kwargs: Any) -> fits.HDUList:
    from astropy.io import fits  # only for files the fast header reader leaves to astropy

    path = os.fspath(path)
    if not os.path.exists(path):
        msg = f"frame '{path}' does not exist"
        raise FileNotFoundError(msg)
    try:
        # astropy warns about truncation and non-standard cards; we check sizes
        # ourselves and raise one clear error instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(path, **kwargs)
            hdul.verify("silentfix+ignore")
        return hdul
    except (OSError, ValueError, TypeError, IndexError) as exc:
        msg = f"'{path}' is not a readable FITS file ({exc})"
        raise FitsReadError(msg) from exc


def read_frame(path: str | os.PathLike) -> FitsFrame:
    """Read a whole frame as float32 ``(H, W, C)``; see the module docstring.

    Parameters
    ----------
    path : str or os.PathLike
        FITS file: 2-D mono, 3-D CHW or HWC, any BITPIX, optional ``ALPHA``
        extension.

    Returns
    -------
    FitsFrame
        The pixels (float32 on the host, NaN = no data), the image header and the
        ALPHA weights.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FitsReadError
        Corrupt file, no image HDU, or an unsupported shape (the message names the file).
    """
    source = FitsFrameSource(path)
    return FitsFrame(source.read_rows(0, source.height), source.header, source.read_alpha(), source.path)


class FitsFrameSource(AlphaRows):
    """One FITS frame, read band by band without loading it.

    The header is parsed once; :meth:`read_rows` then reads rows ``[r0, r1)`` of every
    channel directly from the file (one ``seek`` + ``readinto`` per channel plane).

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file. The image is HDU 0 when it is 2-D or 3-D, else the first such
        ``SCI``, ``IMAGE`` or ``PRIMARY`` HDU, else the first other such image HDU
        (never ``ALPHA``).

    Attributes
    ----------
    path : str
        The file, as a string.
    height, width, channels : int
        Frame size in memory; ``channels`` is 1 for a 2-D file.
    layout : {"HW", "CHW", "HWC"}
        Axis order of the image on disk (NumPy order).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FitsReadError
        Corrupt, truncated or compressed file, no image HDU, an unsupported BITPIX or
        shape (the message names the file).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            msg = f"frame '{self.path}' does not exist"
            raise FileNotFoundError(msg)
        self._header: fits.Header | None = None
        self._raw_header: bytes | None = None
        self._fd: int | None = None
        self._alpha_index = None
        fast = self._open_fast(path.hdus if isinstance(path, ScannedPath) else scan_hdus(self.path))
        header = self._cards if fast else self._open_astropy()
        bitpix = int(header["BITPIX"])
        naxis = int(header["NAXIS"])
        shape = tuple(int(header[f"NAXIS{naxis - i}"]) for i in range(naxis))
        dtypes = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
        if bitpix not in dtypes:
            msg = f"'{self.path}' has unsupported BITPIX {bitpix}"
            raise FitsReadError(msg)
        self._dtype = np.dtype(dtypes[bitpix])
        self._bscale = float(header.get("BSCALE", 1.0))
        self._bzero = float(header.get("BZERO", 0.0))
        self._shape = shape
        self.layout = _layout(shape, self.path)
        if self.layout == "HW":
            self.height, self.width, self.channels = shape[0], shape[1], 1
        elif self.layout == "CHW":
            self.channels, self.height, self.width = shape
        else:
            self.height, self.width, self.channels = shape
        expected = self._offset + int(np.prod(shape)) * self._dtype.itemsize
        size = os.path.getsize(self.path)
        if size < expected:
            msg = f"'{self.path}' is truncated: {size} bytes, the header needs {expected}"
            raise FitsReadError(msg)

    def _open_fast(self, hdus: list | None) -> bool:
        """Locate the image in ``hdus`` (:func:`~.fits_header.scan_hdus`); False to use astropy instead.

        The fast reader takes the common files (a primary image, or an image extension
        after an empty primary) and leaves everything else (ALPHA extensions, unusual
        or broken headers) to astropy, which also gives the diagnosis of bad files.
        """
        if hdus is None or any(h.name == _ALPHA_NAME for h in hdus):
            return False
        index = _fast_image_index(hdus)
        if index is None:
            return False
        self._cards = hdus[index].cards
        self._raw_header = hdus[index].raw_header
        self._offset = hdus[index].data_offset
        return True

    def _open_astropy(self) -> fits.Header:
        """Locate the image with astropy (any FITS file it can open); return its header."""
        from astropy.io import fits

        with _open(self.path, memmap=False, lazy_load_hdus=True, do_not_scale_image_data=True) as hdul, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            index = _image_hdu_index(hdul, self.path)
            hdu = hdul[index]
            header = hdu.header
            try:
                info = hdul.fileinfo(index)
            except Exception as exc:  # noqa: BLE001 - astropy raises various errors on broken files
                msg = f"'{self.path}' is not a readable FITS file ({exc})"
                raise FitsReadError(msg) from exc
            if info is None or header.get("ZIMAGE") or isinstance(hdu, fits.CompImageHDU):
                msg = f"'{self.path}' holds a compressed or unsupported image HDU; decompress it first"
                raise FitsReadError(msg)
            self._header = header.copy()
            self._offset = int(info["datLoc"])
            for i, other in enumerate(hdul):
                if other.name.upper() == _ALPHA_NAME and i != index:
                    self._alpha_index = i
        return self._header

    @property
    def header(self) -> fits.Header:
        """A copy of the image HDU's header (parsed on first use).

        Returns
        -------
        astropy.io.fits.Header
            Every card of the image HDU.
        """
        if self._header is None:
            from astropy.io import fits

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._header = fits.Header.fromstring(self._raw_header.decode("ascii"))
        return self._header

    def card(self, key: str, default: Any = None) -> Any:
        """One header value without parsing the whole header.

        Parameters
        ----------
        key : str
            A FITS keyword (``"EXPTIME"``).
        default : object
            Returned when the card is missing.

        Returns
        -------
        object
            The card's value (str, int, float or bool), or ``default``.
        """
        if self._header is None and self._raw_header is not None:
            return self._cards.get(key, default)
        return self.header.get(key, default)

    @property
    def has_alpha(self) -> bool:
        """Whether the file has an ``ALPHA`` image extension.

        Returns
        -------
        bool
            True when :meth:`read_alpha` returns weights rather than None.
        """
        return self._alpha_index is not None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the frame in memory, channels last.

        Returns
        -------
        tuple of int
            ``(H, W, C)``, C = 1 for a 2-D file.
        """
        return (self.height, self.width, self.channels)

    def keep_open(self) -> None:
        """Hold the file open until :meth:`close`: reads then skip the ``open`` call.

        For the band loops of a stack, where every frame is read once per band: with
        many frames and thin bands the ``open``/``close`` pairs cost more than the
        bytes. Reads use ``pread`` at explicit offsets, so threads may share the file.
        """
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def close(self) -> None:
        """Close the file held by :meth:`keep_open` (a no-op otherwise)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _handle(self) -> Any:
        """A context giving what :meth:`_read_block` reads from: the held fd, or a new file."""
        return contextlib.nullcontext(self._fd) if self._fd is not None else open(self.path, "rb")  # noqa: SIM115

    def _read_block(self, fh: Any, start: int, count: int) -> np.ndarray:
        return self._read_into(fh, start, np.empty(count, dtype=self._dtype))

    def _read_into(self, fh: Any, start: int, buf: np.ndarray) -> np.ndarray:
        """Fill ``buf`` (C-contiguous) with the stored bytes from sample ``start`` on."""
        offset = self._offset + start * self._dtype.itemsize
        if isinstance(fh, int):
            got = os.preadv(fh, [memoryview(buf).cast("B")], offset)
        else:
            fh.seek(offset)
            got = fh.readinto(memoryview(buf).cast("B"))
        if got != buf.nbytes:
            msg = f"'{self.path}' ended early while reading rows (got {got} of {buf.nbytes} bytes)"
            raise FitsReadError(msg)
        return buf

    @property
    def is_integer(self) -> bool:
        """Whether the pixels are stored as integers (BITPIX > 0).

        Returns
        -------
        bool
            True for BITPIX 8, 16, 32 or 64: every pixel is finite (no NaN, no ±inf).
        """
        return self._dtype.kind in "iu"

    @property
    def stored_scaling(self) -> tuple[float, float] | None:
        """``(BSCALE, BZERO)`` when :meth:`read_stored_rows` can serve this file, else None.

        Returns
        -------
        tuple of float or None
            For 16-bit integer images whose rows are contiguous in the file (2-D, or
            channels interleaved); None otherwise (8/32/64-bit, floats, channel planes).
        """
        if self._dtype.itemsize != 2 or self.layout == "CHW":
            return None
        return self._bscale, self._bzero

    def read_stored_rows(self, r0: int, r1: int, out: np.ndarray) -> np.ndarray:
        """Read rows ``[r0, r1)`` as stored: the file's big-endian 16-bit bytes, unconverted.

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= H``.
        out : ndarray, shape (r1 - r0, W·C), uint16, C-contiguous
            Where the bytes go (a native uint16 per stored big-endian int16); the value
            of a sample is ``int16 · BSCALE + BZERO`` (:attr:`stored_scaling`).

        Returns
        -------
        ndarray
            ``out``.

        Raises
        ------
        ValueError
            The file is not 16-bit with contiguous rows, the row range is outside the
            frame, or ``out`` has the wrong shape.
        FitsReadError
            The file ended early.
        """
        if self.stored_scaling is None:
            msg = f"'{self.path}' is not a 16-bit image with contiguous rows"
            raise ValueError(msg)
        if not 0 <= r0 <= r1 <= self.height:
            msg = f"rows [{r0}, {r1}) are outside '{self.path}' (height {self.height})"
            raise ValueError(msg)
        q = self.width * self.channels
        if out.shape != (r1 - r0, q) or out.dtype != np.uint16 or not out.flags.c_contiguous:
            msg = f"`out` must be C-contiguous uint16 of shape {(r1 - r0, q)}, got {out.dtype} {out.shape}"
            raise ValueError(msg)
        with self._handle() as fh:
            self._read_into(fh, r0 * q, out)
        return out

    def read_rows(self, r0: int, r1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read rows ``[r0, r1)`` of every channel straight from disk.

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= H``.
        out : ndarray, shape (r1 - r0, W, C), float32, optional
            Where to write them (e.g. one frame's slot of a band buffer): the stored
            values are converted while being copied there, in one pass for integer
            data.

        Returns
        -------
        ndarray, shape (r1 - r0, W, C), float32
            ``out`` when given. On the host, native byte order, BZERO/BSCALE applied
            (in float32: ``x·BSCALE`` then ``+ BZERO``); NaN where the file has NaN or
            ±inf (no data).

        Raises
        ------
        ValueError
            The row range is outside the frame, or ``out`` has the wrong shape.
        FitsReadError
            The file ended early.
        """
        if not 0 <= r0 <= r1 <= self.height:
            msg = f"rows [{r0}, {r1}) are outside '{self.path}' (height {self.height})"
            raise ValueError(msg)
        h, w, c = r1 - r0, self.width, self.channels
        if out is None:
            out = np.empty((h, w, c), dtype=np.float32)
        elif out.shape != (h, w, c) or out.dtype != np.float32:
            msg = f"`out` must be float32 of shape {(h, w, c)}, got {out.dtype} {out.shape}"
            raise ValueError(msg)
        with self._handle() as fh:
            if self.layout == "HW":
                self._convert(self._read_block(fh, r0 * w, h * w).reshape(h, w), out[..., 0])
            elif self.layout == "HWC":
                self._convert(self._read_block(fh, r0 * w * c, h * w * c).reshape(h, w, c), out)
            else:
                for ch in range(c):
                    raw = self._read_block(fh, ch * self.height * w + r0 * w, h * w).reshape(h, w)
                    self._convert(raw, out[..., ch])
        return out

    def _convert(self, raw: np.ndarray, out: np.ndarray) -> None:
        """``raw`` (stored dtype, any byte order) → float32 ``out``, as :func:`_to_float32`."""
        # The same float32 operations in the same order as _to_float32 (exact cast, then
        # ·BSCALE, then +BZERO), fused where NumPy can: results are identical.
        if self._bscale != 1.0:
            np.multiply(raw, np.float32(self._bscale), out=out, dtype=np.float32, casting="unsafe")
            if self._bzero != 0.0:
                np.add(out, np.float32(self._bzero), out=out)
        elif self._bzero != 0.0:
            np.add(raw, np.float32(self._bzero), out=out, dtype=np.float32, casting="unsafe")
        else:
            np.copyto(out, raw, casting="unsafe")
        if not self.is_integer:
            out[~np.isfinite(out)] = np.nan


def frame_wcs(header: fits.Header, path: str) -> Any:
    """Build the celestial WCS of a frame header, distortions (SIP, lookup tables) included.

    Parameters
    ----------
    header : astropy.io.fits.Header
        Header of the frame's image HDU.
    path : str
        The frame's file, named in error messages.

    Returns
    -------
    astropy.wcs.WCS
        Two-axis celestial WCS (``relax=True``) with a finite, positive pixel scale.

    Raises
    ------
    ValueError
        The header has no usable celestial WCS (the message names the file).
    """
    from astropy.wcs import WCS, FITSFixedWarning  # astropy.wcs pulls in coordinates: only when needed
    from astropy.wcs.utils import proj_plane_pixel_scales

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header, naxis=2, relax=True)
        except Exception as exc:  # noqa: BLE001 - astropy raises many kinds on bad headers
            msg = f"'{path}' has an unreadable WCS ({exc}); plate-solve the frame first"
            raise ValueError(msg) from exc
    if not wcs.has_celestial:
        msg = f"'{path}' has no celestial WCS; grid mode needs plate-solved frames"
        raise ValueError(msg)
    scales = proj_plane_pixel_scales(wcs.celestial)
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        msg = f"'{path}' has a WCS with an invalid pixel scale {scales.tolist()}"
        raise ValueError(msg)
    return wcs
