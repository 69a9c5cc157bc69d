"""Per-frame cosmic-ray masks, made on the host before stacking or reprojection.

Rejection needs depth: where only 1–4 frames cover a pixel no stack statistic can
tell a hit from the sky (docs/algorithms.md, "Rejection needs depth"). A cosmic ray
is, however, visible in one frame alone: it is sharper than any star. This module
finds such pixels in each frame and the adapters turn them into NaN ("no data")
before the frames are stacked (``stack()``, master tiles) or reprojected (grid, so
that the interpolation never spreads a hit over its neighbours).

Two detectors (``StackConfig.cosmic_method``):

``"sharp"`` [default], our own
    A pixel is a hit when it stands 5 background σ above the local sky **and** its
    excess is more than 4 times what its neighbours predict: along each of the 4
    lines through the pixel (row, column, two diagonals) the mean of the two
    opposite neighbours, of which the test takes the second largest. On a star's
    core or slope (FWHM ≥ 2 px, saturated flat tops included) at least two lines
    predict most of the pixel; on a single-pixel hit or a 2-pixel one (straight or
    diagonal) at most one does. A 2×2 blob or an L-shaped hit looks like a small
    star and is left to the rejection. The mask then grows once onto 8-neighbours
    that stand 2.5 σ above the sky and are sharp against their own neighbours
    (contrast 3, the hit replaced by what its neighbours predict), which catches the
    middle of 3-pixel streaks. The sky and its σ are medians of 32 × 32 px blocks,
    interpolated. Only the pixels 5 σ above the sky (stars and hits, a few per cent)
    are examined further, so the cost is a few passes over the frame.
``"lacosmic"``
    L.A.Cosmic (van Dokkum 2001) through astroscrappy (optional extra ``[cosmic]``),
    with the noise model estimated from the frame (gain = sky / σ², no read noise)
    and the saturation level from a flat top when there is one. Measured slower
    (~1 M px/s per core) and it flags star cores on dense fields; see
    docs/algorithms.md, "Cosmic rays".

Colour frames are searched on the sum of their channels and the mask applies to
every channel. NaN pixels are never hits; their neighbours count as bright, so a
pixel next to missing data is only flagged when it is sharp against the rest.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..core.nanstats import MAD_TO_SIGMA

__all__ = ["cosmic_mask", "mask_cosmics", "masked_sources", "MaskedSource", "COSMIC_DEFAULTS"]

logger = logging.getLogger(__name__)

#: Parameters of the ``"sharp"`` detector (docs/algorithms.md, "Cosmic rays").
COSMIC_DEFAULTS = {"sigma": 5.0, "contrast": 4.0, "grow_sigma": 2.5, "grow_contrast": 3.0}

_BLOCK_PX = 32          # sky / noise blocks
_BLOCK_STRIDE = 2       # every 2nd row and column of a block is enough for its median
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _block_sky(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median sky and robust σ per 32 × 32 px block, bilinearly interpolated to every pixel."""
    h, w = image.shape
    nby, nbx = max(1, -(-h // _BLOCK_PX)), max(1, -(-w // _BLOCK_PX))
    pad_h, pad_w = nby * _BLOCK_PX - h, nbx * _BLOCK_PX - w
    sub = image
    if pad_h or pad_w:
        sub = np.pad(image, ((0, pad_h), (0, pad_w)), constant_values=np.nan)
    blocks = sub.reshape(nby, _BLOCK_PX, nbx, _BLOCK_PX)[:, ::_BLOCK_STRIDE, :, ::_BLOCK_STRIDE]
    blocks = blocks.transpose(0, 2, 1, 3).reshape(nby, nbx, -1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks: filled below
        # np.median is several times faster than np.nanmedian; NaN-free frames are the rule.
        median = np.nanmedian if np.isnan(blocks).any() else np.median
        sky = median(blocks, axis=-1)
        sigma = MAD_TO_SIGMA * median(np.abs(blocks - sky[..., None]), axis=-1)
    good = np.isfinite(sky) & np.isfinite(sigma) & (sigma > 0)
    if not good.any():
        return np.zeros((1, 1)), np.full((1, 1), np.inf)
    # A block of missing data or constant values takes the frame's typical values.
    sky = np.where(good, sky, np.median(sky[good]))
    sigma = np.where(good, sigma, np.median(sigma[good]))
    return sky, sigma


def _at(grids: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear values ``(G, M)`` of block grids ``(G, nby, nbx)`` at pixels (ys, xs).

    Block centres sit at 16 + 32·i px; beyond the outer centres the values are held.
    """
    _, nby, nbx = grids.shape
    fy = np.clip((ys + 0.5) * (1.0 / _BLOCK_PX) - 0.5, 0, nby - 1)
    fx = np.clip((xs + 0.5) * (1.0 / _BLOCK_PX) - 0.5, 0, nbx - 1)
    y0, x0 = fy.astype(np.intp), fx.astype(np.intp)  # floor: both are >= 0
    y1, x1 = np.minimum(y0 + 1, nby - 1), np.minimum(x0 + 1, nbx - 1)
    ty, tx = fy - y0, fx - x0
    i00, i01, i10, i11 = y0 * nbx + x0, y0 * nbx + x1, y1 * nbx + x0, y1 * nbx + x1
    out = np.empty((grids.shape[0], ys.size))
    for g, grid in enumerate(grids):  # np.take on a flat grid: the fastest gather
        flat = grid.ravel()
        v00, v01, v10, v11 = (np.take(flat, i) for i in (i00, i01, i10, i11))
        top = v00 + (v01 - v00) * tx
        out[g] = top + (v10 + (v11 - v10) * tx - top) * ty
    return out


def _candidates(image: np.ndarray, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels above the block threshold: the only ones that can be hits (one pass over the frame).

    Each block is compared with the lowest threshold of itself and its 8 neighbouring
    blocks, which is never above the interpolated one of :func:`_at`.
    """
    h, w = image.shape
    nby, nbx = threshold.shape
    padded = np.pad(threshold, 1, mode="edge")
    low = np.min([padded[dy:dy + nby, dx:dx + nbx] for dy in range(3) for dx in range(3)], axis=0)
    pad_h, pad_w = nby * _BLOCK_PX - h, nbx * _BLOCK_PX - w
    view = np.pad(image, ((0, pad_h), (0, pad_w)), constant_values=np.nan) if pad_h or pad_w else image
    with np.errstate(invalid="ignore"):
        above = view.reshape(nby, _BLOCK_PX, nbx, _BLOCK_PX) > low[:, None, :, None]
    return np.nonzero(above.reshape(view.shape)[:h, :w])


def _neighbours(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The 8 neighbours ``(M, 8)`` of pixels (ys, xs) of the frame ``padded[1:-1, 1:-1]``.

    ``padded`` repeats the frame's border pixels once around it: beyond an edge a
    pixel's neighbour is itself, so a star cut by the edge never looks like a peak
    (a mirror would fold its slope into one).
    """
    wp = padded.shape[1]
    flat = padded.ravel()
    base = (ys + 1) * wp + (xs + 1)
    out = np.empty((8, ys.size), dtype=padded.dtype)
    for j, (dy, dx) in enumerate(_OFFSETS):
        np.take(flat, base + (dy * wp + dx), out=out[j])
    return out


def _sharp(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, excess: np.ndarray, sky: np.ndarray,
           sigma: np.ndarray, *, nsigma: float, contrast: float) -> tuple[np.ndarray, np.ndarray]:
    """Which candidate pixels stand ``contrast`` times above what their neighbours predict.

    The prediction along each of the 4 lines through the pixel (row, column, two
    diagonals) is the mean of the two opposite neighbours: on a smooth profile (a
    star's core or slope) at least two of them are close to the pixel itself, on a
    hit (even a 2-pixel one) at most one is.
    """
    near = _neighbours(padded, ys, xs)
    # _OFFSETS pairs: (0, 7) diagonal, (1, 6) column, (2, 5) anti-diagonal, (3, 4) row.
    a, b = (near[0] + near[7]) * 0.5 - sky, (near[1] + near[6]) * 0.5 - sky
    c, d = (near[2] + near[5]) * 0.5 - sky, (near[3] + near[4]) * 0.5 - sky
    a, b, c, d = (np.where(np.isnan(v), np.inf, v) for v in (a, b, c, d))  # missing neighbours: bright
    # The 2nd largest of 4 without a sort: max(min(max(a, b), max(c, d)), max(min(a, b), min(c, d))).
    second = np.maximum(np.minimum(np.maximum(a, b), np.maximum(c, d)), np.maximum(np.minimum(a, b),
                                                                                     np.minimum(c, d)))
    second = np.maximum(second, 0.0)
    return (excess > nsigma * sigma) & (excess > contrast * second), second


def _sharp_mask(image: np.ndarray, *, sigma: float, contrast: float, grow_sigma: float,
                grow_contrast: float) -> np.ndarray:
    from .trails import trail_mask

    sky_grid, sigma_grid = _block_sky(image)
    trails = trail_mask(image, sky_grid, sigma_grid)
    return _line_test_mask(image, sky_grid, sigma_grid, sigma=sigma, contrast=contrast, grow_sigma=grow_sigma,
                           grow_contrast=grow_contrast) | trails


def _line_test_mask(image: np.ndarray, sky_grid: np.ndarray, sigma_grid: np.ndarray, *, sigma: float,
                    contrast: float, grow_sigma: float, grow_contrast: float) -> np.ndarray:
    mask = np.zeros(image.shape, dtype=bool)
    if not np.isfinite(sigma_grid).all():
        return mask  # no sky noise anywhere (no data, or a constant frame): nothing stands out
    ys, xs = _candidates(image, sky_grid + sigma * sigma_grid)
    if ys.size == 0:
        return mask
    grids = np.stack([sky_grid, sigma_grid])
    sky, noise = _at(grids, ys, xs)
    padded = np.pad(image, 1, mode="edge")
    hit, predicted = _sharp(padded, ys, xs, image[ys, xs] - sky, sky, noise, nsigma=sigma, contrast=contrast)
    ys, xs, fill = ys[hit], xs[hit], (sky + predicted)[hit]
    mask[ys, xs] = True
    if ys.size == 0 or grow_contrast <= 0:
        return mask
    # Grow once: bright 8-neighbours of a hit that are sharp against their unmasked neighbours.
    h, w = image.shape
    gy = np.concatenate([ys + dy for dy, _ in _OFFSETS])
    gx = np.concatenate([xs + dx for _, dx in _OFFSETS])
    ok = (gy >= 0) & (gy < h) & (gx >= 0) & (gx < w)
    flat = np.unique(gy[ok] * w + gx[ok])
    flat = flat[~mask.ravel()[flat]]
    gy, gx = np.divmod(flat, w)
    sky, noise = _at(grids, gy, gx)
    excess = image[gy, gx] - sky
    bright = excess > grow_sigma * noise
    if not bright.any():
        return mask
    gy, gx, sky, noise, excess = gy[bright], gx[bright], sky[bright], noise[bright], excess[bright]
    # The hits take the value their neighbours predict (the sky, or the star a hit fell
    # on): a star's pixels around a hit must not look like the rim of a hole.
    padded[ys + 1, xs + 1] = fill
    grow, _ = _sharp(padded, gy, gx, excess, sky, noise, nsigma=grow_sigma, contrast=grow_contrast)
    mask[gy[grow], gx[grow]] = True
    return mask


def _lacosmic_mask(image: np.ndarray) -> np.ndarray:
    try:
        import astroscrappy
    except ImportError as exc:
        msg = ("`cosmic_method='lacosmic'` needs astroscrappy: pip install 'zemosaic-xp[cosmic]' "
               "(or use cosmic_method='sharp')")
        raise ImportError(msg) from exc
    nan = ~np.isfinite(image)
    sky_grid, sigma_grid = _block_sky(image)
    sky, noise = float(np.median(sky_grid)), float(np.median(sigma_grid))
    data = np.where(nan, sky, image).astype(np.float32)
    # The frame's own noise model: Poisson at the sky level, no read noise.
    gain = sky / noise**2 if sky > noise**2 else 1.0
    top = float(np.max(data))
    flat_top = np.count_nonzero(data >= top) >= 4
    satlevel = top * gain if flat_top else 2.0 * abs(top) * gain + 1.0
    crmask, _ = astroscrappy.detect_cosmics(data, inmask=nan, sigclip=4.5, sigfrac=0.3, objlim=5.0,
                                            gain=gain, readnoise=0.0, satlevel=satlevel, niter=2,
                                            sepmed=True, cleantype="meanmask")
    from .trails import trail_mask

    return (np.asarray(crmask, dtype=bool) | trail_mask(image, sky_grid, sigma_grid)) & ~nan


def cosmic_mask(frame: np.ndarray, /, *, method: str = "sharp", sigma: float = 5.0, contrast: float = 4.0,
                grow_sigma: float = 2.5, grow_contrast: float = 3.0) -> np.ndarray:
    """Find the cosmic-ray pixels of one frame.

    Parameters
    ----------
    frame : ndarray, shape (H, W) or (H, W, C), float
        One frame in ADU on the host; NaN = no data. Colour frames are searched on
        the sum of their channels.
    method : {"sharp", "lacosmic"}
        The detector (module docstring); ``"lacosmic"`` needs astroscrappy.
    sigma : float
        ``"sharp"``: a hit stands this many background σ above the local sky.
    contrast : float
        ``"sharp"``: a hit's excess is more than this times what its neighbours predict
        (the second largest of the 4 line means; 2 for a star of FWHM 2 px, less
        for wider ones).
    grow_sigma, grow_contrast : float
        ``"sharp"``: the same two tests for the neighbours of a hit.

    Returns
    -------
    ndarray, shape (H, W), bool
        True on the hits, on the host. Never True where the frame is NaN.

    Raises
    ------
    ValueError
        ``frame`` is not 2-D or 3-D, or ``method`` is unknown.
    ImportError
        ``method="lacosmic"`` without astroscrappy (the message names the extra).
    """
    frame = np.asarray(frame)
    if frame.ndim not in (2, 3):
        msg = f"`frame` has shape {frame.shape}; expected (H, W) or (H, W, C)"
        raise ValueError(msg)
    image = frame.astype(np.float32, copy=False) if frame.ndim == 2 else np.sum(frame, axis=-1, dtype=np.float32)
    finite = np.isfinite(image)
    if not finite.all():
        image = np.where(finite, image, np.float32(np.nan))
    if method == "sharp":
        return _sharp_mask(image, sigma=sigma, contrast=contrast, grow_sigma=grow_sigma,
                           grow_contrast=grow_contrast)
    if method == "lacosmic":
        return _lacosmic_mask(image)
    msg = f"`method` must be one of {{'sharp', 'lacosmic'}}, got {method!r}"
    raise ValueError(msg)


def mask_cosmics(frames: Any, /, *, mode: str = "auto", min_depth: int = 7, method: str = "sharp",
                 sigma: float = 5.0, contrast: float = 4.0) -> tuple[np.ndarray, dict]:
    """Replace the cosmic-ray pixels of a stack by NaN where its depth is low.

    Parameters
    ----------
    frames : ndarray, shape (N, H, W) or (N, H, W, C), float
        The stack on the host, in ADU; NaN = no data.
    mode : {"off", "auto", "always"}
        ``"auto"``: only pixels covered by fewer than ``min_depth`` valid frames are
        examined (deeper pixels are left to the rejection); ``"always"``: every pixel;
        ``"off"``: ``frames`` is returned as given.
    min_depth : int
        Depth (valid samples of a pixel) from which ``"auto"`` leaves a pixel alone.
    method : {"sharp", "lacosmic"}
        The detector, as :func:`cosmic_mask`.
    sigma, contrast : float
        ``"sharp"``'s thresholds, as :func:`cosmic_mask`.

    Returns
    -------
    frames : ndarray, same shape, float32
        A new array with the masked pixels NaN in every channel (``frames`` itself,
        unchanged, when nothing was masked or ``mode`` is ``"off"``).
    info : dict
        ``cosmic`` (the mode), ``cosmic_masked_px`` (pixels set to NaN, all frames),
        ``cosmic_frames_searched``, ``time_cosmic_sec``.

    Raises
    ------
    ValueError
        Unknown ``mode``, or ``frames`` is not 3-D or 4-D.
    """
    import time

    if mode not in ("off", "auto", "always"):
        msg = f"`cosmic` must be one of {{'off', 'auto', 'always'}}, got {mode!r}"
        raise ValueError(msg)
    info = {"cosmic": mode, "cosmic_masked_px": 0, "cosmic_frames_searched": 0, "time_cosmic_sec": 0.0}
    if mode == "off":
        return frames, info
    t0 = time.perf_counter()
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4):
        msg = f"`frames` has shape {frames.shape}; expected (N, H, W) or (N, H, W, C)"
        raise ValueError(msg)
    valid = np.isfinite(frames) if frames.ndim == 3 else np.all(np.isfinite(frames), axis=-1)
    shallow = None
    if mode == "auto":
        shallow = np.count_nonzero(valid, axis=0) < min_depth
    out = None
    for i in range(frames.shape[0]):
        if shallow is not None and not (shallow & valid[i]).any():
            continue
        info["cosmic_frames_searched"] += 1
        hits = cosmic_mask(frames[i], method=method, sigma=sigma, contrast=contrast)
        if shallow is not None:
            hits &= shallow
        n_hits = int(np.count_nonzero(hits))
        if n_hits:
            if out is None:
                out = np.array(frames, dtype=np.float32, copy=True)
            out[i][hits] = np.nan
            info["cosmic_masked_px"] += n_hits
    info["time_cosmic_sec"] = time.perf_counter() - t0
    return (frames if out is None else out), info


class MaskedSource:
    """A frame source whose cosmic-ray pixels read as NaN (classic master tiles).

    The frame is read whole once, here, to find its hits; afterwards the source
    behaves as the one it wraps (every attribute is the wrapped source's), except that
    :meth:`read_rows` blanks the hits of the rows it returns.

    Parameters
    ----------
    source : FitsSource or ArraySource
        The frame (:func:`~.bands.open_sources`).
    method : {"sharp", "lacosmic"}
        The detector (:func:`cosmic_mask`).

    Attributes
    ----------
    hits : int
        Pixels masked in this frame.
    """

    def __init__(self, source: Any, *, method: str = "sharp") -> None:
        self._source = source
        frame = source.read_rows(0, source.height)
        ys, xs = np.nonzero(cosmic_mask(frame, method=method))  # row-major: ys ascending
        self._ys, self._xs = ys, xs
        self.hits = int(ys.size)

    def __getattr__(self, name: str) -> Any:
        if name == "_source":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._source, name)

    def read_rows(self, r0: int, r1: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read rows ``[r0, r1)`` of the frame, its hits NaN.

        Parameters
        ----------
        r0, r1 : int
            Row range, ``0 <= r0 <= r1 <= H``.
        out : ndarray, shape (r1 - r0, W, C), float32, optional
            Where to write them.

        Returns
        -------
        ndarray, shape (r1 - r0, W, C), float32
            As the wrapped source's ``read_rows``, with NaN in every channel of a hit.
        """
        rows = self._source.read_rows(r0, r1, out)
        a, b = np.searchsorted(self._ys, [r0, r1])
        if b > a:
            rows[self._ys[a:b] - r0, self._xs[a:b]] = np.nan
        return rows


def masked_sources(sources: list, *, mode: str, min_depth: int, method: str = "sharp") -> tuple[list, dict]:
    """Wrap a master tile's sources in :class:`MaskedSource` when ``mode`` asks for it.

    Parameters
    ----------
    sources : list of FitsSource or ArraySource
        The frames of one stack, aligned (every frame covers the tile).
    mode : {"off", "auto", "always"}
        ``"auto"`` masks when the stack has fewer than ``min_depth`` frames (the depth
        of every pixel, NaN areas aside); ``"always"`` masks; ``"off"`` does nothing.
    min_depth : int
        ``StackConfig.cosmic_min_depth``.
    method : {"sharp", "lacosmic"}
        The detector.

    Returns
    -------
    sources : list
        ``sources`` itself, or its frames wrapped.
    info : dict
        ``cosmic``, ``cosmic_masked_px``, ``cosmic_frames_searched``, ``time_cosmic_sec``.
    """
    import time

    info = {"cosmic": mode, "cosmic_masked_px": 0, "cosmic_frames_searched": 0, "time_cosmic_sec": 0.0}
    if mode == "off" or (mode == "auto" and len(sources) >= min_depth):
        return sources, info
    t0 = time.perf_counter()
    wrapped = [MaskedSource(s, method=method) for s in sources]
    info.update(cosmic_masked_px=sum(s.hits for s in wrapped), cosmic_frames_searched=len(wrapped),
                time_cosmic_sec=time.perf_counter() - t0)
    logger.info("[P3] cosmic=%s: %d px masked in %d frame(s) (%.2f s)", mode, info["cosmic_masked_px"],
                len(wrapped), info["time_cosmic_sec"])
    return wrapped, info
