"""Reproject one frame onto the part of a tile it touches.

All channels and the ALPHA plane go through a single ``reproject_interp`` call
(reproject broadcasts the leading axis), so the costly celestial coordinate
transforms run once per output pixel instead of once per channel, and only over the
frame's patch box, not the whole tile.
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.wcs import WCS

from .geometry import tile_wcs

__all__ = ["reproject_patch"]

# The round-trip check (world -> input pixel -> world) of reproject guards all-sky
# projections where two pixels share one sky position. Frames and tiles here are
# TAN-like fields a few degrees wide, where it cannot trigger, and it doubles the
# cost of the coordinate transforms, so it is off.
_ROUNDTRIP_COORDS = False


def reproject_patch(data: np.ndarray, alpha: np.ndarray | None, frame_wcs: WCS, grid_wcs: WCS,
                    tile_y0: int, tile_x0: int,
                    box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Reproject a frame onto a patch box of a tile.

    Parameters
    ----------
    data : ndarray, shape (H, W, C), float32
        The frame; NaN = no data.
    alpha : ndarray, shape (H, W), float32 in [0, 1], or None
        The frame's ALPHA weights (None = 1 everywhere).
    frame_wcs : WCS
        The frame's celestial WCS (distortion included).
    grid_wcs : WCS
        The canvas WCS.
    tile_y0, tile_x0 : int
        Canvas position of the tile.
    box : (py0, py1, px0, px1)
        The patch box in tile pixels.

    Returns
    -------
    patch : ndarray, shape (py1 - py0, px1 - px0, C), float32
        Bilinear samples of the frame; NaN where it has no data.
    weight : ndarray, shape (py1 - py0, px1 - px0), float32
        Reprojection footprint × ALPHA, in [0, 1]; 0 where ``patch`` is all NaN.
    """
    from reproject import reproject_interp

    py0, py1, px0, px1 = box
    h, w = py1 - py0, px1 - px0
    channels = data.shape[2]
    planes = np.moveaxis(data, -1, 0)
    if alpha is not None:
        planes = np.concatenate([planes, alpha[None, ...]], axis=0)
    planes = np.ascontiguousarray(planes, dtype=np.float32)
    n_planes = planes.shape[0]
    out = np.empty((n_planes, h, w), dtype=np.float32)
    footprint = np.empty((n_planes, h, w), dtype=np.float32)
    target = tile_wcs(grid_wcs, tile_y0 + py0, tile_x0 + px0, (h, w))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # distorted-inverse convergence warnings at far pixels
        reproject_interp((planes, frame_wcs), target, shape_out=(n_planes, h, w), output_array=out,
                         output_footprint=footprint, roundtrip_coords=_ROUNDTRIP_COORDS, parallel=False)
    # A pixel counts where any channel interpolated (a NaN in one channel stays NaN there).
    weight = np.max(footprint[:channels], axis=0)
    if alpha is not None:
        a = np.where(np.isfinite(out[channels]), out[channels], 0.0)
        weight = weight * np.clip(a, 0.0, 1.0)
    weight = np.where(np.isfinite(weight) & (weight > 0), weight, 0.0).astype(np.float32)
    patch = np.moveaxis(out[:channels], 0, -1)
    patch = np.where(weight[..., None] > 0, patch, np.float32(np.nan))
    return np.ascontiguousarray(patch, dtype=np.float32), weight
