"""Satellite and aircraft trails in one frame: long, straight, bright linear features.

A trail is smooth along its length, so the line test of the ``"sharp"`` cosmic-ray
detector (:mod:`.cosmic`) never flags it: the neighbours along the trail predict every
one of its pixels. Where a few frames overlap, the rejection cannot remove it either.
It is, however, unlike anything else in the sky: a connected set of pixels above the
sky that is long and thin.

:func:`trail_mask`: the pixels standing 3 σ above the local sky (the same 32 × 32 px
block sky and σ as the cosmic-ray detector) are grouped into 8-connected components;
a component is a trail when its pixels span ≥ 40 px along their principal axis and ≥
85 % of them lie within 2.5 px of that axis (a chain of stars is neither straight nor
thin; a trail that crosses a star keeps most of its pixels on the line). The trail's
pixels within 2.5 px of the axis, grown by one pixel, are masked.
"""

from __future__ import annotations

import numpy as np

__all__ = ["trail_mask", "TRAIL_DEFAULTS"]

#: Parameters of :func:`trail_mask` (docs/algorithms.md, "Cosmic rays").
TRAIL_DEFAULTS = {"sigma": 3.0, "min_length_px": 40.0, "half_width_px": 2.5, "on_line": 0.85}

_MIN_AREA = 40
_LINES_PER_COMPONENT = 2
_MAX_GAP_PX = 10.0
_HOUGH_STEP_DEG = 2.0  # over a 40 px segment, 1° is 0.7 px at its ends: 2° still fits ±2.5 px


def trail_mask(image: np.ndarray, sky_grid: np.ndarray, sigma_grid: np.ndarray, *, sigma: float = 3.0,
               min_length_px: float = 40.0, half_width_px: float = 2.5, on_line: float = 0.85) -> np.ndarray:
    """Find the trail pixels of one frame.

    Parameters
    ----------
    image : ndarray, shape (H, W), float32
        The frame (colour frames: the sum of their channels), ADU; NaN = no data.
    sky_grid, sigma_grid : ndarray, shape (nby, nbx)
        Sky and robust σ of its 32 × 32 px blocks (``cosmic._block_sky``).
    sigma : float
        A trail pixel stands this many σ above the local sky.
    min_length_px : float
        Least extent of a trail along its axis, pixels.
    half_width_px : float
        Pixels within this distance of the axis are on the line.
    on_line : float
        Least fraction of a component's pixels on the line.

    Returns
    -------
    ndarray, shape (H, W), bool
        True on the trails' pixels (grown by one pixel); never True where ``image`` is
        NaN.
    """
    from scipy import ndimage

    from .cosmic import _at, _candidates

    h, w = image.shape
    mask = np.zeros((h, w), dtype=bool)
    noise = float(np.median(sigma_grid))
    if sky_grid.size * 32 * 32 < h * w / 4 or not np.isfinite(noise) or noise <= 0:
        return mask  # no sky estimate (a frame without data)
    ys, xs = _candidates(image, sky_grid + sigma * noise)
    if ys.size < _MIN_AREA:
        return mask
    # The frame's typical σ, not the block's: in a crowded block the stars inflate the
    # block σ, and a faint trail crossing it would break into pieces.
    sky = _at(sky_grid[None], ys, xs)[0]
    keep = image[ys, xs] - sky > sigma * noise
    ys, xs = ys[keep], xs[keep]
    if ys.size < _MIN_AREA:
        return mask
    bright = np.zeros((h, w), dtype=bool)
    bright[ys, xs] = True
    labels, n = ndimage.label(bright, structure=np.ones((3, 3), dtype=bool))
    lab = labels[ys, xs]
    # Only components with enough pixels for a trail, and then only those whose
    # pixels span the trail length (vectorised: a dense field has thousands of stars).
    sel = (np.bincount(lab, minlength=n + 1) >= _MIN_AREA)[lab]
    if not sel.any():
        return mask
    order = np.argsort(lab[sel], kind="stable")
    sy, sx, slab = ys[sel][order], xs[sel][order], lab[sel][order]
    starts = np.flatnonzero(np.r_[True, slab[1:] != slab[:-1]])
    extent = np.hypot(np.maximum.reduceat(sy, starts) - np.minimum.reduceat(sy, starts),
                      np.maximum.reduceat(sx, starts) - np.minimum.reduceat(sx, starts))
    stops = np.r_[starts[1:], slab.size]
    for i0, i1 in zip(starts[extent + 1 >= min_length_px], stops[extent + 1 >= min_length_px]):
        py, px = sy[i0:i1].astype(np.float64), sx[i0:i1].astype(np.float64)
        for _ in range(_LINES_PER_COMPONENT):
            line = _line(py, px, min_length_px=min_length_px, half_width_px=half_width_px, on_line=on_line)
            if line is None:
                break
            on, a, centre, (s0, s1) = line
            _follow(mask, (ys, xs), a, centre, s0, s1, half_width_px)
            py, px = py[~on], px[~on]
    if not mask.any():
        return mask
    mask = ndimage.binary_dilation(mask, structure=np.ones((3, 3), dtype=bool))
    return mask & np.isfinite(image)


def _line(py: np.ndarray, px: np.ndarray, *, min_length_px: float, half_width_px: float,
          on_line: float) -> tuple | None:
    """The pixels of the dominant straight line of one component, or None when it is no trail.

    A Hough transform (2° × 1 px) finds the line holding most pixels within
    ``half_width_px``, refined by the principal axis of those pixels; it is a trail
    when those pixels span ``min_length_px``, cover ``on_line`` of the 1-px steps of
    that span, and at least half of the steps have no
    pixel of the component on the line's flanks (a trail is thin; a cluster of stars,
    however elongated, is not).
    """
    if py.size < _MIN_AREA:
        return None
    theta = np.deg2rad(np.arange(0.0, 180.0, _HOUGH_STEP_DEG))
    n_angles = theta.size
    cos, sin = np.cos(theta), np.sin(theta)
    rho = px[:, None] * cos[None, :] + py[:, None] * sin[None, :]
    lo = np.floor(rho.min())
    bins = (rho - lo).astype(np.intp)
    n_bins = int(bins.max()) + 1
    counts = np.bincount((np.arange(n_angles)[None, :] * n_bins + bins).ravel(), minlength=n_angles * n_bins)
    counts = counts.reshape(n_angles, n_bins)
    width = int(2 * half_width_px) + 1
    csum = np.concatenate([np.zeros((n_angles, 1), dtype=counts.dtype), np.cumsum(counts, axis=1)], axis=1)
    window = csum[:, width:] - csum[:, :-width] if n_bins >= width else csum[:, -1:]
    a, b = np.unravel_index(int(np.argmax(window)), window.shape)
    on = (bins[:, a] >= b) & (bins[:, a] < b + width)
    # Refine the line by the principal axis of its pixels (twice): the Hough angle is
    # good to 1°, which over a long trail is pixels.
    for _ in range(2):
        my, mx = float(np.mean(py[on])), float(np.mean(px[on]))
        dy, dx = py[on] - my, px[on] - mx
        normal = 0.5 * np.arctan2(2.0 * np.sum(dx * dy), np.sum(dx * dx) - np.sum(dy * dy)) + 0.5 * np.pi
        c, s = np.cos(normal), np.sin(normal)
        dist = np.abs((px - mx) * c + (py - my) * s)
        on = dist <= half_width_px
        if on.sum() < 2:
            return None
    centre = mx * c + my * s
    along = -px[on] * s + py[on] * c
    steps = np.floor(along - along.min()).astype(np.intp)
    span = int(steps.max()) + 1
    if span < min_length_px or np.unique(steps).size < on_line * span:
        return None
    flank = (dist > half_width_px + 1.0) & (dist <= half_width_px + 4.0)
    if flank.any():
        flank_steps = np.floor(-px[flank] * s + py[flank] * c - along.min()).astype(np.intp)
        crowded = np.isin(np.unique(steps), flank_steps).sum()
        if crowded > 0.5 * np.unique(steps).size:
            return None
    return on, float(np.rad2deg(normal)), float(centre), (float(along.min()), float(along.max()))


def _follow(mask: np.ndarray, bright: tuple, a: float, centre: float, s0: float, s1: float,
            half_width_px: float) -> None:
    """Mask the line's bright pixels from the segment ``[s0, s1]`` outwards, across gaps ≤ 10 px.

    A faint trail crossing crowded sky breaks into pieces above the threshold; they
    lie on one line, so the line is followed beyond the component it was found in.
    """
    theta = np.deg2rad(float(a))
    cos, sin = np.cos(theta), np.sin(theta)
    yy, xx = bright
    rho = xx * cos + yy * sin
    on = np.abs(rho - centre) <= half_width_px
    yy, xx = yy[on], xx[on]
    along = -xx * sin + yy * cos
    order = np.argsort(along)
    yy, xx, along = yy[order], xx[order], along[order]
    i0, i1 = np.searchsorted(along, [s0, s1])
    i1 = max(i1, i0 + 1)
    gaps = np.diff(along) > _MAX_GAP_PX
    # Extend down from i0 and up from i1 − 1 until the first gap.
    while i0 > 0 and not gaps[i0 - 1]:
        i0 -= 1
    while i1 < along.size and not gaps[i1 - 1]:
        i1 += 1
    mask[yy[i0:i1], xx[i0:i1]] = True
