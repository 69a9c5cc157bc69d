"""Band sources on the host: a master tile's FITS files and arrays.

The core's band driver (:func:`~zemosaic_xp.core.band_driver.stack_bands`) reads blocks
from a source. :class:`BandReader` serves a master tile's frames (a grid tile's
patches: :class:`~.patch_store.PatchSource`).

A master tile is stacked from ``inputs``: FITS paths and/or in-memory arrays. Each
input becomes a source with one interface:

- ``height``, ``width``, ``channels``, ``frame_shape`` (``(H, W)`` for mono frames,
  ``(H, W, C)`` otherwise), ``name`` (the path, or ``inputs[i]``);
- :meth:`read_rows` — rows ``[r0, r1)`` as native float32 ``(h, W, C)``, NaN where the
  data are NaN/±inf (no data);
- :meth:`read_alpha_rows` — the FITS ``ALPHA`` extension as weights ``(h, W)`` in
  [0, 1], or None.

FITS sources parse the header once and read rows with ``seek`` + ``readinto``
(:class:`~zemosaic_xp.io.fits.FitsFrameSource`), so no frame is ever held whole by the
band loop and no file descriptor stays open between reads. :func:`read_band` builds
the ``(h, W, C, N)`` band the core stacks, frames on the last axis; :class:`BandReader` serves bands from
blocks of several rows per frame, so the per-read overhead (open, seek, convert) is
paid once per block rather than once per band when bands are thin (large N).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..backends import to_host
from .fits import FitsFrameSource
from .uncert import FitsUncertRows

logger = logging.getLogger(__name__)

__all__ = ["FitsSource", "ArraySource", "open_sources", "read_band", "read_frames_first", "BandReader"]

Array = Any


class FitsSource:
    """One FITS frame read by rows; see the module docstring.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file; its header is parsed here, its pixels only by
        :meth:`read_rows`.

    Attributes
    ----------
    name : str
        The path, as given (used in messages).
    height, width, channels : int
        Frame size; ``channels`` is 1 for a 2-D file.
    mono : bool
        The file holds one plane: stacks of it are ``(H, W)``, not ``(H, W, 1)``.
    has_alpha : bool
        The file has an ``ALPHA`` extension.
    exposure_sec : float or None
        ``EXPTIME`` (else ``EXPOSURE``) of the header, seconds; None when missing or
        not a number.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FitsReadError
        Corrupt or truncated file, no image HDU, unsupported layout (names the file).
    """

    #: Inverse-variance rows (``weighting="uncertainty"``; set by :func:`open_sources`), or None.
    ivar: Any = None

    def __init__(self, path: str | os.PathLike) -> None:
        self._fits = FitsFrameSource(path)
        self.name = self._fits.path
        self.height, self.width, self.channels = self._fits.shape
        # A 2-D file (or one plane) is mono: the result is (H, W), like stack() on (N, H, W).
        self.mono = self.channels == 1
        self.has_alpha = self._fits.has_alpha
        exposure = self._fits.card("EXPTIME", self._fits.card("EXPOSURE"))
        try:
            self.exposure_sec = float(exposure) if exposure is not None else None
        except (TypeError, ValueError):
            self.exposure_sec = None

    @property
    def header(self) -> Any:
        """The image HDU's header.

        Returns
        -------
        astropy.io.fits.Header
            A copy taken when the file was opened.
        """
        return self._fits.header

    def card(self, key: str, default: Any = None) -> Any:
        """One value of the image HDU's header, without parsing the whole header.

        Parameters
        ----------
        key : str
            A FITS keyword (``"CTYPE1"``).
        default : object
            Returned when the card is missing.

        Returns
        -------
        object
            The card's value (str, int, float or bool), or ``default``.
        """
        return self._fits.card(key, default)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame as the core sees it.

        Returns
        -------
        tuple of int
            ``(H, W)`` for a mono file, ``(H, W, C)`` otherwise.
        """
        return (self.height, self.width) if self.mono else (self.height, self.width, self.channels)

    @property
    def is_integer(self) -> bool:
        """Whether the file stores integers (every pixel finite).

        Returns
        -------
        bool
            True for a positive BITPIX.
        """
        return self._fits.is_integer

    def read_rows(self, r0: int, r1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read rows ``[r0, r1)`` of every channel from disk.

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= H``.
        out : ndarray, shape (r1 - r0, W, C), float32, optional
            Where to write them (converted while copied).

        Returns
        -------
        ndarray, shape (r1 - r0, W, C), float32
            ``out`` when given. Native byte order, on the host; NaN where the file has
            NaN or ±inf (no data).
        """
        return self._fits.read_rows(r0, r1, out)

    @property
    def stored_scaling(self) -> tuple[float, float] | None:
        """``(BSCALE, BZERO)`` when the rows can be read as stored (16-bit), else None.

        Returns
        -------
        tuple of float or None
            See :attr:`zemosaic_xp.io.fits.FitsFrameSource.stored_scaling`.
        """
        return self._fits.stored_scaling

    def read_stored_rows(self, r0: int, r1: int, out: np.ndarray) -> np.ndarray:
        """Read rows ``[r0, r1)`` as stored (see :meth:`~zemosaic_xp.io.fits.FitsFrameSource.read_stored_rows`).

        Parameters
        ----------
        r0, r1 : int
            Row range.
        out : ndarray, shape (r1 - r0, W·C), uint16
            Where the file's bytes go.

        Returns
        -------
        ndarray
            ``out``.
        """
        return self._fits.read_stored_rows(r0, r1, out)

    def keep_open(self) -> None:
        """Hold the file open for the reads that follow (see :meth:`close`)."""
        self._fits.keep_open()

    def close(self) -> None:
        """Release the file held by :meth:`keep_open`."""
        self._fits.close()

    def read_alpha_rows(self, r0: int, r1: int) -> np.ndarray | None:
        """Read rows ``[r0, r1)`` of the ``ALPHA`` extension as weights.

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= H``.

        Returns
        -------
        ndarray, shape (r1 - r0, W), float32, or None
            ALPHA / 255 in [0, 1] on the host (a per-channel ALPHA gives its maximum
            over the channels); None when the file has no ``ALPHA`` extension.
        """
        return self._fits.read_alpha_rows(r0, r1) if self.has_alpha else None


class ArraySource:
    """One in-memory frame ``(H, W)`` or ``(H, W, C)`` (NumPy, CuPy or torch).

    Rows are sliced and copied to the host as float32 band by band; integer data are
    converted exactly as :func:`zemosaic_xp.stack` converts them.

    Parameters
    ----------
    array : array, shape (H, W) or (H, W, C), real float or int dtype
        The frame, on any device; it is referenced, not copied. NaN and ±inf mean
        "no data".
    name : str
        Name of the frame in messages (``"inputs[3]"``).

    Raises
    ------
    TypeError
        Not an array, or non-numeric data.
    ValueError
        Wrong number of dimensions or an empty extent.
    """

    has_alpha = False
    exposure_sec = None
    header = None
    ivar: Any = None

    def __init__(self, array: Array, name: str) -> None:
        self.name = name
        shape = getattr(array, "shape", None)
        dtype = getattr(array, "dtype", None)
        if shape is None or dtype is None:
            msg = f"{name} is a {type(array).__name__}; expected a FITS path or an (H, W[, C]) array"
            raise TypeError(msg)
        kind = np.dtype(str(dtype).replace("torch.", "")).kind if _known_dtype(dtype) else "?"
        if kind not in "fiu":
            msg = f"{name} has dtype {dtype}; expected real floating point or integer data (e.g. float32, uint16)"
            raise TypeError(msg)
        if len(shape) not in (2, 3) or 0 in tuple(shape):
            msg = f"{name} has shape {tuple(shape)}; expected a non-empty (H, W) or (H, W, C) frame"
            raise ValueError(msg)
        self._array = array
        self.mono = len(shape) == 2
        self.height, self.width = int(shape[0]), int(shape[1])
        self.channels = 1 if self.mono else int(shape[2])
        self.frame_shape = tuple(int(v) for v in shape)

    is_integer = False  # checked per read instead: NaN/inf are possible in float data

    def read_rows(self, r0: int, r1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy rows ``[r0, r1)`` to the host as float32.

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= H``.
        out : ndarray, shape (r1 - r0, W, C), float32, optional
            Where to write them.

        Returns
        -------
        ndarray, shape (r1 - r0, W, C), float32
            ``out`` when given. On the host (C = 1 for a mono frame); NaN where the
            frame is not finite (no data).
        """
        rows = np.asarray(to_host(self._array[r0:r1, ...]))
        rows = rows.astype(np.float32) if rows.dtype != np.float32 or not rows.dtype.isnative else rows
        rows = np.where(np.isfinite(rows), rows, np.float32(np.nan))
        rows = rows[..., None] if self.mono else rows
        if out is None:
            return rows
        out[...] = rows
        return out

    def read_alpha_rows(self, r0: int, r1: int) -> None:
        """Return None: an in-memory frame has no ``ALPHA`` weights.

        Parameters
        ----------
        r0, r1 : int
            Row range (ignored; kept for the source interface).
        """
        return None


def _known_dtype(dtype: Any) -> bool:
    try:
        np.dtype(str(dtype).replace("torch.", ""))
    except TypeError:
        return False
    return True


def _as_list(inputs: Any) -> list[Any]:
    if isinstance(inputs, (str, os.PathLike)):
        return [inputs]
    if isinstance(inputs, Sequence):
        return list(inputs)
    shape = getattr(inputs, "shape", None)
    if shape is not None and len(shape) in (3, 4):  # one (N, H, W[, C]) stack
        return [inputs[i, ...] for i in range(int(shape[0]))]
    msg = (f"`inputs` must be a sequence of FITS paths or (H, W[, C]) arrays, or one "
           f"(N, H, W[, C]) array; got {type(inputs).__name__}")
    raise TypeError(msg)


def open_sources(inputs: Any, *, weights: Sequence[Any] | None = None) -> list[FitsSource | ArraySource]:
    """Open every input and check that all frames share one shape.

    Parameters
    ----------
    inputs : sequence of (str | PathLike | array), or one (N, H, W[, C]) array
        FITS paths and/or ``(H, W[, C])`` frames.
    weights : sequence, optional
        Per input, its inverse-variance rows (``weighting="uncertainty"``, from
        :func:`zemosaic_xp.nddata.master_tile_inputs`): a reader with ``read_rows``,
        or ``"stream"`` for a FITS path whose ``UNCERT`` extension is read by rows
        (:class:`~.uncert.FitsUncertRows`). Set as each source's ``ivar``.

    Returns
    -------
    list of FitsSource or ArraySource
        One source per input, in input order; no pixel has been read yet. A FITS path
        listed again (the same file after resolving links, ``./a.fits`` and ``a.fits``)
        is opened once, with one ``[P3]`` warning naming the repeats: each frame is
        stacked once.

    Raises
    ------
    ValueError
        No input, or a frame whose shape differs from the first one (the message
        names both files and both shapes); a streamed file without a usable
        ``UNCERT`` extension when ``weights`` asks for it.
    FileNotFoundError, FitsReadError, TypeError
        From the input that cannot be opened; the message names it.
    """
    items = _as_list(inputs)
    if not items:
        msg = "`inputs` is empty: a master tile needs at least one frame"
        raise ValueError(msg)
    sources: list[FitsSource | ArraySource] = []
    for i, item in _without_repeats(items):
        if isinstance(item, (str, os.PathLike)):
            source: FitsSource | ArraySource = FitsSource(item)
        else:
            source = ArraySource(item, f"inputs[{i}]")
        if sources and source.frame_shape != sources[0].frame_shape:
            first = sources[0]
            msg = (f"'{source.name}' has frame shape {source.frame_shape}; expected "
                   f"{first.frame_shape} like '{first.name}'. Stack frames of one size and "
                   f"channel layout per master tile.")
            raise ValueError(msg)
        if weights is not None:
            rows = weights[i]
            if isinstance(rows, str):  # "stream": the file's UNCERT extension, by rows
                rows = FitsUncertRows(item, (source.height, source.width, source.channels))
            source.ivar = rows
        sources.append(source)
    return sources


def _file_key(path: str | os.PathLike) -> Any:
    """What identifies a file: its device and inode (links, ``./a`` and ``a`` alike), else its real path."""
    try:
        st = os.stat(path)
    except OSError:  # missing: opening it names it
        return os.path.normcase(os.path.realpath(path))
    return st.st_dev, st.st_ino


def _without_repeats(items: list[Any]) -> list[tuple[int, Any]]:
    """``(index, item)`` of the inputs, FITS paths repeating an earlier one left out (warned)."""
    seen: dict[str, list[tuple[int, str]]] = {}
    kept = []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            key = _file_key(item)
            seen.setdefault(key, []).append((i, os.fspath(item)))
            if len(seen[key]) > 1:
                continue
        kept.append((i, item))
    repeats = [rows for rows in seen.values() if len(rows) > 1]
    if repeats:
        listed = []
        for rows in repeats:
            spellings = list(dict.fromkeys(name for _, name in rows))
            also = f": {', '.join(repr(name) for name in spellings)}" if len(spellings) > 1 else ""
            listed.append(f"{spellings[0]!r} (inputs {', '.join(str(i) for i, _ in rows)}{also})")
        logger.warning("[P3] the inputs list %d frame(s) more than once; each is stacked once: %s",
                       len(repeats), "; ".join(listed))
    return kept


def read_band(sources: Sequence[FitsSource | ArraySource], r0: int, r1: int, *,
              alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Read rows ``[r0, r1)`` of every source into the core's band layout.

    Parameters
    ----------
    sources : sequence of FitsSource or ArraySource
        N sources of one shape (see :func:`open_sources`).
    r0, r1 : int
        Row range, ``0 <= r0 < r1 <= H``.
    alpha : bool
        Also build per-pixel weights from the ALPHA extensions (1 for sources
        without one).

    Returns
    -------
    band : ndarray, shape (r1 - r0, W, C, N), float32
        On the host, frames on the last axis; NaN = no data.
    weights : ndarray, shape (r1 - r0, W, 1, N) or (r1 - r0, W, C, N), float32, or None
        ALPHA weights in [0, 1] (NaN replaced by 0), times the sources' inverse
        variances (``ivar``, per channel) when they have them; None when neither.
    """
    first = sources[0]
    n, h = len(sources), r1 - r0
    ivar = any(getattr(s, "ivar", None) is not None for s in sources)
    band = np.empty((h, first.width, first.channels, n), dtype=np.float32)
    weights = None
    if alpha or ivar:
        weights = np.ones((h, first.width, first.channels if ivar else 1, n), dtype=np.float32)
    for i, source in enumerate(sources):
        band[..., i] = source.read_rows(r0, r1)
        if alpha:
            rows = source.read_alpha_rows(r0, r1)
            if rows is not None:
                weights[..., i] = np.where(np.isnan(rows), np.float32(0.0), rows)[:, :, None]
        if getattr(source, "ivar", None) is not None:
            weights[..., i] *= source.ivar.read_rows(r0, r1)
    return band, weights


def read_frames_first(sources: Sequence[FitsSource | ArraySource], r0: int, r1: int, *,
                      out: np.ndarray | None = None) -> np.ndarray:
    """Read rows ``[r0, r1)`` of every source, frames first, as native band stackers read them.

    Each frame's rows are converted from the file straight into their slot of the
    band (no transposing copy): the layout of
    :meth:`zemosaic_xp.core.frames.FrameStack.band_source`.

    Parameters
    ----------
    sources : sequence of N sources of one shape
        The frames.
    r0, r1 : int
        Row range, ``0 <= r0 < r1 <= H``.
    out : ndarray, shape (N, r1 - r0, W, C), float32, C-contiguous, optional
        A buffer to reuse.

    Returns
    -------
    ndarray, shape (N, r1 - r0, W, C), float32
        NaN = no data; ``out`` when given.
    """
    first = sources[0]
    shape = (len(sources), r1 - r0, first.width, first.channels)
    band = np.empty(shape, dtype=np.float32) if out is None else out
    for i, source in enumerate(sources):
        source.read_rows(r0, r1, band[i])
    return band


class BandReader:
    """Serve consecutive row bands from read-ahead blocks of every frame.

    Bands must be requested in increasing row order (``[0, r1)``, ``[r1, r2)``, ...).
    Each block holds ``block_rows`` rows of all frames; a band is a view of it (no
    copy) in the band layout ``(rows, W, C, N)``. With ``frames_first`` and no weights a
    block is stored ``(N, rows, W, C)`` (:func:`read_frames_first`: each frame's rows
    written contiguously, not one sample every N) and a band is a strided view, which a
    GPU session uploads as stored and transposes on the device
    (:meth:`~zemosaic_xp.gpu.session.DeviceSession.upload`).

    Parameters
    ----------
    sources : sequence of FitsSource or ArraySource
        N sources of one shape (see :func:`open_sources`).
    alpha : bool
        Also read ALPHA weights (see :func:`read_band`).
    block_bytes : int
        Host memory for one block (band layout, plus its weights); a block is never
        smaller than the band asked for.
    frames_first : bool
        Store blocks without weights frames first (for GPU sessions; default False:
        frames last, C-contiguous bands, as the CPU's core path reshapes them).

    Attributes
    ----------
    block_rows : int
        Rows of each read-ahead block (at least 1, at most H).
    reads : int
        Blocks read so far.
    """

    def __init__(self, sources: Sequence[FitsSource | ArraySource], *, alpha: bool,
                 block_bytes: int, frames_first: bool = False) -> None:
        first = sources[0]
        self.sources, self.alpha = sources, alpha
        self.height = first.height
        ivar = any(getattr(s, "ivar", None) is not None for s in sources)
        weight_planes = first.channels if ivar else (1 if alpha else 0)
        self._frames_last = weight_planes > 0 or not frames_first
        row_bytes = len(sources) * first.width * (first.channels + weight_planes) * 4
        self.block_rows = max(1, min(first.height, int(block_bytes) // max(1, row_bytes)))
        self.reads = 0
        self._r0 = self._r1 = 0
        self._band: np.ndarray | None = None
        self._weights: np.ndarray | None = None

    def band(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Return rows ``[r0, r1)`` of all frames, reading the next block when needed.

        Parameters
        ----------
        r0, r1 : int
            Row range. A range inside the current block is served from it;
            any other starts a new block at ``r0``.

        Returns
        -------
        band : ndarray, shape (r1 - r0, W, C, N), float32
            A view of the current block, on the host (C-contiguous only with
            weights); NaN = no data.
        weights : ndarray, shape (r1 - r0, W, 1 or C, N), float32, or None
            ALPHA weights in [0, 1] times the inverse variances (a view of the
            block; see :func:`read_band`); None when neither.
        """
        if not (self._r0 <= r0 and r1 <= self._r1):
            self._band = self._weights = None  # drop the old block before reading the next
            self._r0, self._r1 = r0, min(self.height, max(r1, r0 + self.block_rows))
            if self._frames_last:
                self._band, self._weights = read_band(self.sources, self._r0, self._r1, alpha=self.alpha)
            else:
                self._band = read_frames_first(self.sources, self._r0, self._r1)
            self.reads += 1
        a, b = r0 - self._r0, r1 - self._r0
        if not self._frames_last:
            return np.moveaxis(self._band[:, a:b], 0, -1), None
        return self._band[a:b], (self._weights[a:b] if self._weights is not None else None)

