"""Per-process cache of what a frame costs to read: header, WCS, pixel planes, noise samples.

A frame touches several neighbouring tiles, and with one worker the survey
normalisation reads every frame just before the tiles do. Each process therefore
keeps, per frame file (keyed by path, size and modification time):

- the parsed header source and its WCS (small, always kept, least recently used
  beyond ``max_entries``);
- the pixels as contiguous float32 planes ``(C [+ ALPHA], H, W)``, the layout the
  reprojection reads (NaN where a ``MASK`` extension, as ``CCDData.write`` makes it,
  flags the pixel), within a byte budget (a quarter of ``stack_chunk_budget_mb``, at
  most ``FRAME_CACHE_MB``: :meth:`FrameCache.fit_budget`; least recently used planes
  are dropped first, and a frame larger than the budget is never kept);
- the variances of its ``UNCERT`` extension as float32 planes ``(C, H, W)``
  (``weighting="uncertainty"``: :meth:`FrameCache.variance`), under the same budget;
- the frame's noise samples, per sample count;
- the frame's cosmic-ray hits (flat pixel indices, per detector), when a run masks them.

Everything cached is exactly what a fresh read gives, so hits never change a result.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FrameEntry", "FrameCache", "FRAMES", "FRAME_CACHE_MB", "frame_planes"]

#: Pixel planes kept per process (MB). The demo survey (40 RGB frames of 384²) takes 71 MB.
FRAME_CACHE_MB = 256
#: Headers and WCS kept (~60 KB each with SIP).
_MAX_ENTRIES = 1024


def frame_planes(data: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Lay a frame out as contiguous float32 planes: its channels, then ALPHA if any.

    Parameters
    ----------
    data : ndarray, shape (H, W, C), float32
        The frame on the host; NaN = no data.
    alpha : ndarray, shape (H, W), float32, or None
        ALPHA weights in [0, 1].

    Returns
    -------
    ndarray, shape (C, H, W) or (C + 1, H, W), float32
        A new C-contiguous host array, the layout the reprojection reads.
    """
    planes = np.moveaxis(data, -1, 0)
    if alpha is not None:
        planes = np.concatenate([planes, alpha[None, ...]], axis=0)
    return np.ascontiguousarray(planes, dtype=np.float32)


def _has_mask(path: str) -> bool:
    """Whether a FITS file has a ``MASK`` extension (headers only, fast reader first)."""
    from .fits_header import scan_hdus

    hdus = scan_hdus(path)
    if hdus is not None:
        return any(h.name == "MASK" for h in hdus)
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        return "MASK" in hdul


def _apply_mask(path: str, planes: np.ndarray, channels: int) -> None:
    """Set the data planes to NaN where the file's ``MASK`` is True (in place).

    The mask is ``(H, W)`` (every channel) or the data's own 3-D shape, channels first
    or last; any other shape is an error naming the file.
    """
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        mask = np.asarray(hdul["MASK"].data).astype(bool)
    h, w = planes.shape[1:]
    if mask.shape == (h, w):
        planes[:channels, mask] = np.nan
    elif mask.shape == (channels, h, w):
        planes[:channels][mask] = np.nan
    elif mask.shape == (h, w, channels):
        planes[:channels][np.moveaxis(mask, -1, 0)] = np.nan
    else:
        msg = f"'{path}' MASK has shape {mask.shape}; expected {(h, w)} or the data's shape"
        raise ValueError(msg)


@dataclass
class FrameEntry:
    """What is known of one frame file in this process.

    Attributes
    ----------
    source : FitsFrameSource
        The frame's parsed header; reads its pixels on demand.
    wcs : astropy.wcs.WCS
        Celestial WCS with distortions (:func:`~.fits.frame_wcs`).
    noise : dict of int to ndarray
        Noise samples ``(C, M)`` by requested sample count.
    hits : dict of str to ndarray
        Cosmic-ray hits by detector name: flat indices ``y·W + x`` (int64) of the
        frame's pixels (:meth:`FrameCache.hits`).
    has_mask : bool
        The file has a ``MASK`` extension (True = bad pixel, "no data").
    """

    source: Any
    wcs: Any
    noise: dict = field(default_factory=dict)
    hits: dict = field(default_factory=dict)
    has_mask: bool = False


class FrameCache:
    """Headers, WCS and pixel planes of frame files, least recently used dropped first.

    See the module docstring. Thread-safe; the planes returned are shared and
    read-only.

    Parameters
    ----------
    budget_bytes : int
        Most bytes of pixel planes held.
    max_entries : int
        Most frames whose header and WCS are held.
    """

    def __init__(self, budget_bytes: int = FRAME_CACHE_MB * 2**20, max_entries: int = _MAX_ENTRIES) -> None:
        self.budget_bytes = int(budget_bytes)
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[tuple, FrameEntry] = OrderedDict()
        self._planes: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._plane_bytes = 0
        self._lock = threading.Lock()
        self._local = threading.local()  # WCS objects are not shared between threads

    @staticmethod
    def _key(path: str) -> tuple:
        st = os.stat(path)
        return (os.fspath(path), st.st_size, st.st_mtime_ns)

    def entry(self, path: str) -> FrameEntry:
        """Return the header source and WCS of a frame file, parsing them on the first call.

        Parameters
        ----------
        path : str
            The frame file; a changed size or modification time makes a new entry.

        Returns
        -------
        FrameEntry
            The cached entry, shared with other callers.

        Raises
        ------
        FileNotFoundError, FitsReadError
            The file is missing or unreadable.
        ValueError
            The header has no usable celestial WCS.
        """
        from .fits import FitsFrameSource, frame_wcs

        key = self._key(path)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
        source = FitsFrameSource(path)
        entry = FrameEntry(source, frame_wcs(source.header, path), has_mask=_has_mask(path))
        with self._lock:
            entry = self._entries.setdefault(key, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return entry

    def planes(self, path: str, *, keep: bool = True) -> tuple[FrameEntry, np.ndarray]:
        """Return the entry of a frame file and its pixels as float32 planes, ALPHA last.

        Parameters
        ----------
        path : str
            The frame file.
        keep : bool
            Add the planes to the cache (when they fit the budget). False reads them
            without caching them; a cached copy is still used.

        Returns
        -------
        entry : FrameEntry
            As :meth:`entry` returns it.
        planes : ndarray, shape (C, H, W) or (C + 1, H, W), float32
            Read-only host array (shared between tiles); NaN = no data.
        """
        entry = self.entry(path)
        key = self._key(path)
        with self._lock:
            hit = self._planes.get(key)
            if hit is not None:
                self._planes.move_to_end(key)
                return entry, hit
        source = entry.source
        planes = frame_planes(source.read_rows(0, source.height), source.read_alpha())
        if entry.has_mask:
            _apply_mask(path, planes, source.channels)
        planes.flags.writeable = False
        if keep:
            self._keep(key, planes)
        return entry, planes

    def _keep(self, key: tuple, planes: np.ndarray) -> None:
        """Cache ``planes`` under ``key`` when they fit the budget; least recently used dropped first."""
        if planes.nbytes > self.budget_bytes:
            return
        with self._lock:
            if key not in self._planes:
                self._planes[key] = planes
                self._plane_bytes += planes.nbytes
            while self._plane_bytes > self.budget_bytes:
                _, old = self._planes.popitem(last=False)
                self._plane_bytes -= old.nbytes

    def variance(self, path: str, *, keep: bool = True) -> np.ndarray:
        """Return a frame's variances from its ``UNCERT`` extension, read on the first call.

        Parameters
        ----------
        path : str
            The frame file (``CCDData.write`` with an uncertainty).
        keep : bool
            As :meth:`planes` (the variances share the planes' budget).

        Returns
        -------
        ndarray, shape (C, H, W), float32
            Read-only ``σ²`` (:func:`~.uncert.read_variance_planes`); NaN where the
            uncertainty is not finite or not > 0.

        Raises
        ------
        ValueError
            No ``UNCERT`` extension, one of another shape, or an unknown ``UTYPE``
            (the message names the file).
        """
        from .uncert import read_variance_planes

        entry = self.entry(path)
        key = self._key(path) + ("variance",)
        with self._lock:
            hit = self._planes.get(key)
            if hit is not None:
                self._planes.move_to_end(key)
                return hit
        source = entry.source
        var = read_variance_planes(path, (source.height, source.width, source.channels))
        var.flags.writeable = False
        if keep:
            self._keep(key, var)
        return var

    def hits(self, path: str, method: str, *, keep: bool = True) -> tuple[FrameEntry, np.ndarray, np.ndarray]:
        """Return a frame's entry, its planes and its cosmic-ray hits, found on the first call.

        Parameters
        ----------
        path : str
            The frame file.
        method : {"sharp", "lacosmic"}
            The detector (:func:`~.cosmic.cosmic_mask`).
        keep : bool
            As :meth:`planes`.

        Returns
        -------
        entry : FrameEntry
            As :meth:`entry` returns it; ``entry.hits[method]`` holds the hits.
        planes : ndarray, shape (C [+ 1], H, W), float32
            As :meth:`planes` returns them (the hits are not blanked there).
        hits : ndarray, shape (K,), int64
            Flat indices ``y·W + x`` of the hit pixels, ascending; empty when none.
        """
        entry, planes = self.planes(path, keep=keep)
        found = entry.hits.get(method)
        if found is None:
            from .cosmic import cosmic_mask

            channels = entry.source.channels
            found = np.flatnonzero(cosmic_mask(np.moveaxis(planes[:channels], 0, -1), method=method))
            entry.hits[method] = found
        return entry, planes, found

    def canvas_wcs(self, header: str) -> Any:
        """The WCS of a header string (the mosaic canvas), parsed once per thread.

        Parameters
        ----------
        header : str
            ``WCS.to_header_string()`` of the canvas.

        Returns
        -------
        astropy.wcs.WCS
            This thread's copy; the last header asked for is kept.
        """
        import warnings

        from astropy.io import fits
        from astropy.wcs import WCS

        cache = getattr(self._local, "canvas", None)
        if cache is None or cache[0] != header:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cache = self._local.canvas = (header, WCS(fits.Header.fromstring(header)))
        return cache[1]

    def fit_budget(self, chunk_budget_bytes: int) -> None:
        """Hold at most a quarter of a tile's ``stack_chunk_budget_mb`` (and ``FRAME_CACHE_MB``).

        Keeps the cache inside the memory a user granted: patches, one band and the
        cache together stay near the budget. Drops planes beyond the new limit.

        Parameters
        ----------
        chunk_budget_bytes : int
            The tile's stacking budget in bytes; the new plane budget is a quarter of
            it, at most ``FRAME_CACHE_MB`` MiB.
        """
        with self._lock:
            self.budget_bytes = int(min(FRAME_CACHE_MB * 2**20, max(0, chunk_budget_bytes) // 4))
            while self._plane_bytes > self.budget_bytes and self._planes:
                _, old = self._planes.popitem(last=False)
                self._plane_bytes -= old.nbytes

    def clear(self) -> None:
        """Forget everything (tests; a process that is done with a survey)."""
        with self._lock:
            self._entries.clear()
            self._planes.clear()
            self._plane_bytes = 0


#: The process-wide cache used by the tiles and the survey normalisation.
FRAMES = FrameCache()
