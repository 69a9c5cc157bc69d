"""Diagnostics of a mosaic: the seam metric, the background step across every tile boundary.

Used by the ``demo`` command (its "seam max / sigma" line) and by the tests of grid
mode and of the assembly; any object with ``tile_id``, ``y0``, ``x0``, ``image`` and
``weight`` (a :class:`zemosaic_xp.mosaic.TileImage`, a frame footprint) can be measured.

Definition (what :func:`seam_steps` returns). A *boundary segment* is one side
(``x-``, ``x+``, ``y-``, ``y+``: facing decreasing/increasing column/row) of one tile's
valid region. For a tile ``T`` and its side facing −x (the other sides are the same
after a rotation), a *line* is a mosaic row and a column ``c`` such that, on the
``K = 4·band_px`` pixels ``[c, c + K)``, ``T`` is valid and the mosaic finite and, on
``[c − K, c)``, ``T`` is not valid but another tile is and the mosaic is finite. On
each line the profile of the 2K pixels, at offsets ``p = −K + ½ … K − ½`` from the edge, is fitted by least squares
with ``a + s·p + step·[p > 0]``: a local linear trend plus a step, so a sky gradient
across the edge is not counted as a seam. ``step`` is a fixed linear combination of the
profile (weights piecewise linear in ``p``, largest next to the edge); with white noise
σ its error per line is ``σ·√(2/K)`` (0.71σ for ``band_px = 4``), as small as the plain
difference of the two ``band_px`` bands touching the edge, which the trend would bias.
Lines whose profile holds a source (a pixel more than 5σ from the segment's median
profile, σ from the MAD) are dropped with the 3 rows either side. The segment's value,
per channel, is the 3σ-clipped mean of ``step`` over the remaining lines
(:func:`zemosaic_xp.mosaic.robust.clipped_mean`: median centre, MAD scale; faint stars
or a left-over outlier on a few lines do not move it).
Segments with fewer than ``min_lines`` lines are skipped. The result is ``|value|``,
the maximum over channels unless ``per_channel``.

Feathering turns a tile mismatch into a ramp, which this step metric sees only
faintly; to test photometric matching alone, assemble with ``feather_px=0``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .core.nanstats import MAD_TO_SIGMA
from .mosaic.robust import clipped_mean

__all__ = ["seam_steps", "seam_segments"]

# The side facing −x after np.rot90(·, k), k = 0..3: rot90 turns row 0 (low y) into column 0.
_SIDES = ("x-", "y-", "x+", "y+")
_SOURCE_KSIGMA = 5.0
_SOURCE_GROW = 3


def _tile_valid(tile: Any) -> np.ndarray:
    image = np.asarray(tile.image)
    weight = np.asarray(tile.weight)
    if image.ndim == 2:
        image, weight = image[..., None], weight[..., None]
    return (np.isfinite(image) & (weight > 0)).all(axis=2)


def _run_sum(a: np.ndarray, length: int) -> np.ndarray:
    """Sums of ``length`` consecutive values along axis 1: out[:, j] = a[:, j:j+length].sum(1)."""
    cs = np.concatenate([np.zeros(a.shape[:1] + (1,) + a.shape[2:]), np.cumsum(a, axis=1, dtype=np.float64)], axis=1)
    return cs[:, length:] - cs[:, :-length]


def _step_coefficients(half: int) -> np.ndarray:
    """Least-squares weights giving ``step`` of ``a + s·p + step·[p > 0]`` on 2·half pixels."""
    p = np.arange(-half, half) + 0.5
    design = np.stack([np.ones_like(p), p, (p > 0).astype(np.float64)], axis=1)
    return np.linalg.pinv(design)[2]


def _left_steps(inside: np.ndarray, covered: np.ndarray, mosaic: np.ndarray, half: int) -> np.ndarray:
    """Per-line steps (L, C) for edges facing −x: ``inside``/``covered`` (h, w) bool, mosaic (h, w, C)."""
    width = inside.shape[1]
    if width < 2 * half:
        return np.zeros((0, mosaic.shape[2]))
    in_run = _run_sum((inside & covered).astype(np.float64), half)  # [j, j+half) inside, finite
    out_run = _run_sum((~inside & covered).astype(np.float64), half)
    # a line at column c: outside on [c − half, c), inside on [c, c + half)
    ok = (out_run[:, : width - 2 * half + 1] == half) & (in_run[:, half:] == half)
    rows, cols = np.nonzero(ok)
    if rows.size == 0:
        return np.zeros((0, mosaic.shape[2]))
    span = cols[:, None] + np.arange(2 * half)                  # [c − half, c + half)
    profiles = mosaic[rows[:, None], span]                      # (L, 2·half, C)
    steps = np.einsum("k,lkc->lc", _step_coefficients(half), profiles)
    return steps[_source_free(rows, profiles)]


def _source_free(rows: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Lines (bool, L) whose profile has no pixel beyond 5σ of the segment's background.

    A star straddling the edge gives a large "step" on several lines; those lines and
    the ``_SOURCE_GROW`` rows either side of them are dropped (the star's wings).
    """
    resid = profiles - np.median(profiles, axis=0)
    scale = MAD_TO_SIGMA * np.median(np.abs(resid), axis=(0, 1))
    hot = (np.abs(resid) > _SOURCE_KSIGMA * np.maximum(scale, 1e-30)).any(axis=(1, 2))
    if not hot.any():
        return np.ones(rows.size, dtype=bool)
    near = np.abs(rows[:, None] - rows[hot][None, :]).min(axis=1) <= _SOURCE_GROW
    return ~near


def seam_segments(mosaic: np.ndarray, tiles: Sequence[Any], *, band_px: int = 4,
                  min_lines: int = 32) -> list[dict[str, Any]]:
    """Every boundary segment with its signed per-channel step; see the module docstring.

    Parameters
    ----------
    mosaic : ndarray, shape (H, W) or (H, W, C), float
        NaN = no data.
    tiles : sequence of TileImage
        As in :func:`seam_steps`.
    band_px : int
        Sets the profile half-length ``K = 4·band_px`` pixels on each side of the edge.
    min_lines : int
        Segments with fewer lines are skipped.

    Returns
    -------
    list of dict
        ``tile_id``, ``side`` ('x-', 'x+', 'y-', 'y+'), ``n_lines`` and
        ``step`` (list of C floats, inside − outside, image units).
    """
    mosaic = np.asarray(mosaic, dtype=np.float64)
    if mosaic.ndim == 2:
        mosaic = mosaic[..., None]
    if band_px < 1:
        msg = f"`band_px` must be >= 1, got {band_px}"
        raise ValueError(msg)
    height, width = mosaic.shape[:2]
    half = 4 * band_px
    pad = half
    valids = [_tile_valid(tile) for tile in tiles]
    n_tiles = np.zeros((height, width), dtype=np.int32)  # tiles valid at each mosaic pixel
    for tile, valid in zip(tiles, valids):
        y0, x0 = int(tile.y0), int(tile.x0)
        ys = slice(max(y0, 0), min(y0 + valid.shape[0], height))
        xs = slice(max(x0, 0), min(x0 + valid.shape[1], width))
        n_tiles[ys, xs] += valid[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0]
    # outside a tile, "covered" means another tile is valid there and the mosaic is finite
    covered_all = np.isfinite(mosaic).all(axis=2) & (n_tiles > 0)
    out = []
    for tile, valid in zip(tiles, valids):
        h, w = valid.shape
        y0, x0 = int(tile.y0), int(tile.x0)
        ya, yb = max(0, y0 - pad), min(height, y0 + h + pad)
        xa, xb = max(0, x0 - pad), min(width, x0 + w + pad)
        inside = np.zeros((yb - ya, xb - xa), dtype=bool)
        ty0, tx0 = max(y0, 0), max(x0, 0)
        ty1, tx1 = min(y0 + h, height), min(x0 + w, width)
        inside[ty0 - ya: ty1 - ya, tx0 - xa: tx1 - xa] = valid[ty0 - y0: ty1 - y0, tx0 - x0: tx1 - x0]
        covered = covered_all[ya:yb, xa:xb]
        window = mosaic[ya:yb, xa:xb]
        for k, side in enumerate(_SIDES):
            steps = _left_steps(np.rot90(inside, k), np.rot90(covered, k), np.rot90(window, k), half)
            if steps.shape[0] < min_lines:
                continue
            out.append({"tile_id": int(tile.tile_id), "side": side, "n_lines": int(steps.shape[0]),
                        "step": [clipped_mean(steps[:, c])[0] for c in range(steps.shape[1])]})
    return out


def seam_steps(mosaic: np.ndarray, tiles: Sequence[Any], *, band_px: int = 4, min_lines: int = 32,
               per_channel: bool = False) -> np.ndarray:
    """Background step across every tile boundary inside the mosaic.

    Parameters
    ----------
    mosaic : ndarray, shape (H, W) or (H, W, C), float
        NaN = no data.
    tiles : sequence of TileImage
        Only ``tile_id``, ``y0``, ``x0`` and the valid region (finite image with
        weight > 0 in every channel) are used, so any object with those attributes
        works (e.g. frame footprints, to measure seams at frame edges).
    band_px : int
        Sets the profile half-length ``K = 4·band_px`` pixels on each side of the edge.
    min_lines : int
        Segments with fewer lines are skipped.
    per_channel : bool
        Return (n_segments, C) instead of the maximum over channels.

    Returns
    -------
    ndarray, shape (n_segments,) or (n_segments, C), float64
        ``|median step|`` per segment (see the module docstring for the exact
        definition), image units; empty when no boundary lies inside the mosaic.
    """
    segments = seam_segments(mosaic, tiles, band_px=band_px, min_lines=min_lines)
    n_chan = 1 if np.ndim(mosaic) == 2 else np.shape(mosaic)[2]
    steps = np.abs(np.array([s["step"] for s in segments], dtype=np.float64).reshape(-1, n_chan))
    return steps if per_channel else steps.max(axis=1, initial=0.0) if steps.size else np.zeros(0)
