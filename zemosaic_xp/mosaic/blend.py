"""Feathered blending of photometrically matched tiles into one mosaic.

Each tile's blend weight is ``tile weight × ramp``: the ramp is a raised cosine of the
Euclidean distance ``d`` (pixels) from a valid pixel to the nearest invalid pixel of
the same tile, the tile's own border included,
``ramp = ½·(1 − cos(π·min(d / feather_px, 1)))``. It is tiny but positive on the edge
pixel (``d = 1``), reaches 1 at ``feather_px`` inside and has zero slope at both
ends, so a tile fades in smoothly from its valid edge and a residual mismatch between
two tiles turns into a gentle ramp instead of a step. ``feather_px = 0`` turns the
ramp off (ramp = 1 on valid pixels: a plain weighted mean in overlaps).

Outputs, per pixel and channel: ``image = Σ b·x' / Σ b`` (NaN where ``Σ b = 0``);
``weight = Σ r·w / Σ r``, the ramp-averaged tile weight (overlapping tiles stack the
same frames, so summing their weights would count those frames twice), 0 where no
tile covers; ``coverage = Σ r·n / Σ r`` with the 2-D ramp and the tiles' frame counts
``n``, i.e. the frame count of the tile that dominates there, never a sum over
channels or over tiles.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt

__all__ = ["edge_distance", "feather_ramp", "blend_tiles", "STRIPE_ROWS"]

#: Canvas rows blended at once (per thread): the float64 accumulators exist only for
#: the stripes in flight, not for the whole canvas (64 rows: 10 MB a stripe of a
#: 3 200 px wide mono mosaic with its errors, accumulators and a tile's rows; 256 took
#: four times that, for no speed).
STRIPE_ROWS = 64


def edge_distance(valid: np.ndarray) -> np.ndarray:
    """Distance (px) from each valid pixel to the nearest invalid pixel or to the tile border.

    Parameters
    ----------
    valid : ndarray, shape (h, w), bool
        The tile's valid pixels.

    Returns
    -------
    ndarray, shape (h, w), float32
        ≥ 1 on valid pixels, 0 elsewhere.
    """
    padded = np.pad(valid, 1, constant_values=False)
    return distance_transform_edt(padded)[1:-1, 1:-1].astype(np.float32)


def feather_ramp(dist: np.ndarray, feather_px: float) -> np.ndarray:
    """Raised-cosine ramp of the edge distance; 0 outside, 1 from ``feather_px`` inwards.

    Parameters
    ----------
    dist : ndarray, shape (h, w), float
        From :func:`edge_distance`.
    feather_px : float
        Ramp length; 0 gives 1 on every valid pixel.

    Returns
    -------
    ndarray, shape (h, w), float32
        The ramp, in [0, 1]; 0 where ``dist`` is 0 (invalid pixels).
    """
    if feather_px <= 0:
        return (dist > 0).astype(np.float32)
    t = np.clip(dist / np.float32(feather_px), 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * t)
    return np.where(dist > 0, ramp, 0.0).astype(np.float32)


def _blend_rows(rows: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]], images: Sequence[np.ndarray],
                weights: Sequence[np.ndarray], coverages: Sequence[np.ndarray], valid: Sequence[np.ndarray],
                ramps: Sequence[np.ndarray], corrections: Sequence[tuple[np.ndarray, np.ndarray]] | None,
                sigmas: Sequence[np.ndarray] | None, out: tuple[np.ndarray, ...],
                progress: Callable[[], None]) -> None:
    """Blend canvas rows ``[r0, r1)`` of every tile, in tile order, into ``out``.

    ``out`` is (image, weight, coverage[, uncertainty]). Every pixel goes through the
    same operations in the same order whatever the rows, so splitting the canvas into
    stripes changes no bit; a tile's correction ``x·g + o`` and its scaled error
    ``σ·|g|`` are computed here, stripe by stripe, with the float32 operations a
    whole-tile copy would use (the same bits, without the copies).
    """
    r0, r1 = rows
    width = out[0].shape[1]
    n_chan = out[0].shape[2]
    num = np.zeros((r1 - r0, width, n_chan))
    den = np.zeros((r1 - r0, width, n_chan))  # Σ b, also the numerator of the weight output
    rden = np.zeros((r1 - r0, width, n_chan))
    cnum = np.zeros((r1 - r0, width))
    cden = np.zeros((r1 - r0, width))
    unum = np.zeros((r1 - r0, width, n_chan)) if sigmas is not None else None
    for t, ((y0, x0, h, w), img, wt, cov, ok, ramp) in enumerate(zip(boxes, images, weights, coverages, valid,
                                                                       ramps)):
        a, b = max(y0, r0), min(y0 + h, r1)
        if a < b:
            sub = slice(a - y0, b - y0)
            win = (slice(a - r0, b - r0), slice(x0, x0 + w))
            ok_s = ok[sub]
            x = img[sub]
            if corrections is not None:
                gain, offset = corrections[t]
                x = x * gain + offset
            r = np.where(ok_s, ramp[sub][..., None].astype(np.float64), 0.0)
            wr = r * np.where(ok_s, wt[sub], 0.0)  # blend weight b = ramp × tile weight
            num[win] += wr * np.where(ok_s, x, 0.0)
            den[win] += wr
            rden[win] += r
            if unum is not None:
                scale = np.abs(corrections[t][0]) if corrections is not None else np.float32(1)
                unum[win] += wr * np.where(ok_s, sigmas[t][sub] * scale, 0.0)
            r2 = r.max(axis=2)
            cnum[win] += r2 * np.nan_to_num(cov[sub].astype(np.float64))
            cden[win] += r2
        progress()
    image, weight, coverage = (o[r0:r1] for o in out[:3])
    has = den > 0
    image[has] = (num[has] / den[has]).astype(np.float32)
    has_r = rden > 0
    weight[has_r] = (den[has_r] / rden[has_r]).astype(np.float32)
    has_c = cden > 0
    coverage[has_c] = (cnum[has_c] / cden[has_c]).astype(np.float32)
    if unum is not None:
        out[3][r0:r1][has] = (unum[has] / den[has]).astype(np.float32)


def blend_tiles(boxes: Sequence[tuple[int, int, int, int]], images: Sequence[np.ndarray],
                weights: Sequence[np.ndarray], coverages: Sequence[np.ndarray], valid: Sequence[np.ndarray],
                ramps: Sequence[np.ndarray], mosaic_shape: tuple[int, int], *,
                corrections: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
                uncertainties: Sequence[np.ndarray] | None = None,
                progress: Callable[[], None] = lambda: None,
                threads: int = 1) -> tuple[np.ndarray, ...]:
    """Blend (corrected) tiles onto the mosaic canvas (see the module docstring).

    Parameters
    ----------
    boxes : sequence of (y0, x0, h, w)
        Position of each tile on the mosaic.
    images : sequence of ndarray, shape (h, w, C), float32
        The tiles, photometrically corrected unless ``corrections`` is given; NaN =
        no data.
    weights : sequence of ndarray, shape (h, w, C), float32
        Tile weight maps (Σ frame weights of the tile stack).
    coverages : sequence of ndarray, shape (h, w), float32
        Frames that contributed to each tile pixel.
    valid : sequence of ndarray, shape (h, w, C), bool
        Finite with weight > 0.
    ramps : sequence of ndarray, shape (h, w), float32
        From :func:`feather_ramp`.
    mosaic_shape : (H, W)
        The canvas size.
    corrections : sequence of (ndarray, ndarray), optional
        Per tile, float32 ``gain`` and ``offset`` of shape (C,): each valid pixel is
        blended as ``x·gain + offset`` (float32), computed stripe by stripe instead of
        as a corrected copy of the tile.
    uncertainties : sequence of ndarray, shape (h, w, C), float32, optional
        Per tile, the standard error of its pixels: blended with the same weights as
        the image, scaled by ``|gain|`` (float32), into a fourth output.
    progress : callable
        Called once per tile (in the calling thread).
    threads : int
        Canvas row stripes blended at once (NumPy releases the GIL); the result does
        not depend on it.

    Returns
    -------
    image : ndarray, shape (H, W, C), float32
        NaN, without a warning, where no tile covers.
    weight : ndarray, shape (H, W, C), float32
        0 where no tile covers.
    coverage : ndarray, shape (H, W), float32
        0 where no tile covers.
    uncertainty : ndarray, shape (H, W, C), float32
        Only with ``uncertainties``: ``Σ b·σ·|g| / Σ b``, NaN where no tile covers.

    Notes
    -----
    Accumulators are float64 on the host, ``(3·C + 2) · 8`` bytes per pixel
    (``(4·C + 2) · 8`` with ``uncertainties``) of the stripes of ``STRIPE_ROWS`` canvas
    rows in flight (one per thread), on top of the tiles themselves and the outputs.
    """
    height, width = mosaic_shape
    n_chan = images[0].shape[2]
    out = (np.full((height, width, n_chan), np.nan, dtype=np.float32),
           np.zeros((height, width, n_chan), dtype=np.float32), np.zeros((height, width), dtype=np.float32))
    if uncertainties is not None:
        out += (np.full((height, width, n_chan), np.nan, dtype=np.float32),)
    args = (boxes, images, weights, coverages, valid, ramps, corrections, uncertainties, out)
    stripes = [(r, min(height, r + STRIPE_ROWS)) for r in range(0, height, STRIPE_ROWS)]
    threads = max(1, min(int(threads), len(stripes)))
    if threads == 1:
        for rows in stripes:
            _blend_rows(rows, *args, progress=lambda: None)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads, thread_name_prefix="zemosaic-blend") as pool:
            list(pool.map(lambda rows: _blend_rows(rows, *args, progress=lambda: None), stripes))
    for _ in boxes:
        progress()
    return out
