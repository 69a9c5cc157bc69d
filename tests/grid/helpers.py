"""Test support for grid mode: references and stand-ins built from a :class:`SyntheticSurvey`.

- :func:`reproject_coadd_reference`: the survey co-added by ``reproject_and_coadd``
  with ``match_background=True`` (the baseline our seams must beat).
- :func:`footprint_tiles`: each frame's footprint on an output grid as a
  :class:`TileImage`, so :func:`seam_steps` can measure steps at frame edges.
- :func:`simple_grid_tiles`: a minimal grid mode (tiles on the output grid, frames
  reprojected with ``reproject_interp`` and stacked by the core with its defaults),
  enough to exercise the assembly on realistic tiles.
- :func:`fit_linear`: robust ``mosaic ≈ G·truth + O`` for residual checks.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from zemosaic_xp.io.fits import read_frame
from zemosaic_xp.mosaic import TileImage
from zemosaic_xp.synthetic import SyntheticSurvey

__all__ = ["reproject_coadd_reference", "footprint_tiles", "simple_grid_tiles", "fit_linear", "truth_on"]


def _channels(image: np.ndarray) -> list[np.ndarray]:
    return [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]


def _frames(survey: SyntheticSurvey) -> list[np.ndarray]:
    return [read_frame(p).data for p in survey.frame_paths]


def reproject_coadd_reference(survey: SyntheticSurvey, wcs_out: Any, shape_out: tuple[int, int], *,
                              match_background: bool = True, combine_function: str = "mean") -> np.ndarray:
    """``reproject_and_coadd`` of the survey frames onto ``wcs_out``; (H, W) or (H, W, C), NaN uncovered."""
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    frames = _frames(survey)
    out = []
    for c in range(frames[0].shape[2]):
        inputs = [(f[..., c], w) for f, w in zip(frames, survey.frame_wcs)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices in reproject's own code
            image, footprint = reproject_and_coadd(inputs, wcs_out, shape_out=shape_out,
                                                   reproject_function=reproject_interp,
                                                   combine_function=combine_function,
                                                   match_background=match_background)
        out.append(np.where(footprint > 0, image, np.nan).astype(np.float32))
    return out[0] if len(out) == 1 else np.stack(out, axis=-1)


def _frame_on_grid(survey: SyntheticSurvey, index: int, wcs_out: Any, shape_out: tuple[int, int],
                   data: np.ndarray | None = None, box: tuple[int, int, int, int] | None = None):
    """Frame ``index`` (or just its footprint) reprojected onto ``box`` = (y0, x0, h, w) of the output grid."""
    from reproject import reproject_interp

    y0, x0, h, w = box if box is not None else (0, 0) + tuple(shape_out)
    sub = wcs_out.deepcopy()
    sub.wcs.crpix = [sub.wcs.crpix[0] - x0, sub.wcs.crpix[1] - y0]
    sub.wcs.set()
    if data is None:
        data = np.zeros(survey.frame_shape, dtype=np.float32)[..., None]
    chans = [reproject_interp((data[..., c], survey.frame_wcs[index]), sub, shape_out=(h, w), order="bilinear")
             for c in range(data.shape[2])]
    image = np.stack([ch[0] for ch in chans], axis=-1).astype(np.float32)
    footprint = chans[0][1]
    image[footprint <= 0] = np.nan
    return image, footprint


def footprint_tiles(survey: SyntheticSurvey, wcs_out: Any, shape_out: tuple[int, int]) -> list[TileImage]:
    """Each frame's footprint on the output grid (image 0 inside, NaN outside), cropped to its box."""
    tiles = []
    for i in range(survey.n_frames):
        image, _ = _frame_on_grid(survey, i, wcs_out, shape_out)
        inside = np.isfinite(image[..., 0])
        ys, xs = np.nonzero(inside)
        if ys.size == 0:
            continue
        win = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        crop = image[win]
        tiles.append(TileImage(i, int(ys.min()), int(xs.min()), crop, np.isfinite(crop).astype(np.float32),
                               np.isfinite(crop[..., 0]).astype(np.float32)))
    return tiles


def _frame_box(survey: SyntheticSurvey, index: int, wcs_out: Any) -> tuple[float, float, float, float]:
    """Bounding box (ymin, ymax, xmin, xmax) of frame ``index`` on the output grid, from its corners."""
    h, w = survey.frame_shape
    xs, ys = np.array([-0.5, w - 0.5, w - 0.5, -0.5]), np.array([-0.5, -0.5, h - 0.5, h - 0.5])
    ox, oy = wcs_out.world_to_pixel_values(*survey.frame_wcs[index].pixel_to_world_values(xs, ys))
    return oy.min(), oy.max(), ox.min(), ox.max()


def simple_grid_tiles(survey: SyntheticSurvey, wcs_out: Any, shape_out: tuple[int, int], *, tile_px: int = 192,
                      overlap_px: int = 48, config: Any = None, calibrate: bool = False,
                      tile_gain_spread: float = 0.0, tile_offset_spread: float = 0.0,
                      seed: int = 0) -> tuple[list[TileImage], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """A minimal grid mode: square tiles, frames reprojected (bilinear) and stacked per tile.

    Parameters
    ----------
    config : StackConfig, optional
        Default ZeMosaic's (``linear_fit`` to each tile's first frame, so tiles come out
        with different gains and offsets, as in a real grid run); with ``calibrate`` the
        default is ``normalize="none"``.
    calibrate : bool
        Undo each frame's known gain and offset first, so tiles are internally
        consistent and only the per-tile gains below separate them.
    tile_gain_spread, tile_offset_spread : float
        Each tile is then multiplied by 1 + U(±spread) and shifted by U(±spread).

    Returns
    -------
    tiles : list of TileImage
    applied : dict of tile id to (gain, offset), shape (C,) each
        What was applied to each tile after stacking.
    """
    from zemosaic_xp import StackConfig, stack

    config = config or (StackConfig(normalize="none") if calibrate else StackConfig())
    rng = np.random.default_rng(seed)
    frames = _frames(survey)
    if calibrate:
        frames = [(f - o) / g for f, g, o in zip(frames, survey.gains, survey.offsets)]
    boxes = [_frame_box(survey, i, wcs_out) for i in range(survey.n_frames)]
    height, width = shape_out
    stride = tile_px - overlap_px
    tiles, applied, tile_id = [], {}, 0
    for y0 in range(0, max(height - overlap_px, 1), stride):
        for x0 in range(0, max(width - overlap_px, 1), stride):
            h, w = min(tile_px, height - y0), min(tile_px, width - x0)
            tile_id += 1
            patches = []
            for i, data in enumerate(frames):
                fy0, fy1, fx0, fx1 = boxes[i]
                if fy1 < y0 or fy0 > y0 + h or fx1 < x0 or fx0 > x0 + w:
                    continue
                image, footprint = _frame_on_grid(survey, i, wcs_out, shape_out, data, (y0, x0, h, w))
                if np.count_nonzero(footprint > 0) > 0.02 * h * w:
                    patches.append(image)
            if len(patches) < 3:
                continue
            result = stack(np.stack(patches), config=config)
            n_chan = patches[0].shape[2]
            gain = 1.0 + rng.uniform(-tile_gain_spread, tile_gain_spread, n_chan)
            offset = rng.uniform(-tile_offset_spread, tile_offset_spread, n_chan)
            image = (np.asarray(result.image) * gain + offset).astype(np.float32)
            weight = np.asarray(result.weight_sum, dtype=np.float32)
            coverage = np.asarray(result.coverage).max(axis=2).astype(np.float32)
            tiles.append(TileImage(tile_id, y0, x0, image, weight, coverage))
            applied[tile_id] = (gain, offset)
    return tiles, applied


def truth_on(survey: SyntheticSurvey, wcs_out: Any, shape_out: tuple[int, int]) -> np.ndarray:
    """The survey truth resampled (bicubic) onto the output grid, (H, W, C)."""
    from reproject import reproject_interp

    truth = survey.truth if survey.truth.ndim == 3 else survey.truth[..., None]
    chans = [reproject_interp((truth[..., c], survey.truth_wcs), wcs_out, shape_out=shape_out, order="bicubic",
                              return_footprint=False) for c in range(truth.shape[2])]
    return np.stack(chans, axis=-1).astype(np.float32)


def fit_linear(mosaic: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Robust least squares ``mosaic ≈ G·truth + O`` over finite (and ``mask``) pixels, 3σ-clipped."""
    ok = np.isfinite(mosaic) & np.isfinite(truth)
    if mask is not None:
        ok &= mask
    x, y = truth[ok].astype(np.float64), mosaic[ok].astype(np.float64)
    keep = np.ones(x.size, dtype=bool)
    for _ in range(10):
        gain, offset = np.polyfit(x[keep], y[keep], 1)
        resid = y - gain * x - offset
        scale = 1.4826 * np.median(np.abs(resid - np.median(resid)))
        new = np.abs(resid) <= 3 * scale
        if np.array_equal(new, keep):
            break
        keep = new
    return float(gain), float(offset)
