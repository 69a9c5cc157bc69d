"""Quality of a mosaic against the survey's known sky (``benchmarks/peers_grid.py``).

Each tool writes its mosaic on a grid of its own (SWarp's, reproject's optimal WCS, ours):
every metric is computed on the tool's own output grid, against the truth evaluated
there. Notation: σ = one frame's background noise (``noise_sigma`` of the survey, ADU);
``n(p)`` = frames covering output pixel p.

- **Truth on the output grid** (:func:`truth_on_grid`): each output pixel centre is
  taken through the output WCS to the sky and into the truth grid (same pixel scale,
  TAN), where the truth is read by cubic-spline interpolation; the truth's linear sky
  gradient is interpolated exactly, the stars (FWHM 3 px) are masked anyway. ``n(p)`` is the
  truth coverage at the nearest truth pixel; pixels outside the truth canvas get NaN.
- **Background pixels** (:func:`source_mask`): the truth is a linear plane plus stars; the
  plane is fitted with clipping, and a truth pixel holds a *source* where the truth
  exceeds the plane by more than 0.05 σ, grown by 2 px. Background = not a source.
- **Fit**: the mosaic ``m`` may differ from the truth ``t`` by a global gain and offset
  (SWarp without background subtraction averages the frames' gains and offsets; reproject
  matches offsets only): ``m ≈ a·t + b`` is fitted by least squares on the background
  pixels with data, refitted once without the pixels that the first fit makes hot (below).
  The residual is ``r = m − (a·t + b)``. A global gain or offset is not a seam.
- **Hot pixels**: background pixels with data where ``|r| > 5·σ/√n``: a cosmic ray or a
  trail left in (a rejection cannot remove it where only 1 to 3 frames overlap), or an
  artefact.
- **Seam (σ)**: ``S = box15(r·M) / box15(M)``, ``M`` = background pixels with data,
  ``n ≥ 1`` and not hot (a left-over cosmic ray would otherwise spread over 225 px and
  count as a seam), ``box15`` the 15 × 15 px sum; ``seam = RMS(S over M where box15(M) ≥ ½·225) / σ``.
  Frame-to-frame gain/offset mismatches and unmatched edges show up as patches of S; white
  noise alone leaves a floor of about σ/(15·√n) (0.03 σ at n = 4: resampling correlates
  neighbouring pixels but keeps the noise of a 15 px mean about the same).
- **Outlier pixels**: hot pixels with ``n ≥ 3`` (the depth where a rejection starts to
  have a chance). Source pixels are never hot. White noise alone gives ~6·10⁻⁷ of the
  pixels (less: resampling averages the noise).
- **Coverage**: fraction of the union footprint (output pixels with ``n ≥ 1``) where the
  tool has data (finite, with weight > 0).
- **Frame-edge steps (σ)** (:func:`frame_edge_steps`): the project's own seam metric,
  :func:`zemosaic_xp.diagnostics.seam_steps`, with each frame's footprint on the output
  grid standing for a tile: the background step across every frame edge that lies inside
  the mosaic (a least-squares step on 2 × 16 px profiles across the edge, with a local
  linear trend, lines through a source dropped, 3σ-clipped mean over the lines), measured
  on the residual ``r`` with source and hot pixels left out; reported as the median and
  the maximum over the edges, in σ. Where the seam above says how much large-scale error a
  mosaic has, this says whether it sits at the frame edges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["SOURCE_KSIGMA", "SEAM_BOX_PX", "OUTLIER_KSIGMA", "Truth", "load_truth", "source_mask",
           "truth_on_grid", "read_mosaic", "mosaic_quality", "Footprint", "frame_footprints", "frame_edge_steps"]

SOURCE_KSIGMA = 0.05
SOURCE_GROW_PX = 2
SEAM_BOX_PX = 15
OUTLIER_KSIGMA = 5.0
OUTLIER_MIN_DEPTH = 3


class Truth:
    """The survey's truth: sky, its WCS, coverage and source mask on the truth grid.

    Parameters
    ----------
    sky : ndarray, shape (H, W), float32
        Noiseless sky, ADU of frame 0.
    wcs : astropy.wcs.WCS
        The truth grid.
    coverage : ndarray, shape (H, W), int16
        Frames covering each truth pixel.
    noise_sigma : float
        One frame's σ, ADU.
    """

    def __init__(self, sky: np.ndarray, wcs: Any, coverage: np.ndarray, noise_sigma: float) -> None:
        from scipy.ndimage import spline_filter

        self.sky = np.asarray(sky, dtype=np.float64)
        self.wcs = wcs
        self.coverage = coverage
        self.noise_sigma = float(noise_sigma)
        self.source = source_mask(self.sky, noise_sigma)
        self._coeffs = spline_filter(self.sky, order=3, output=np.float64)


def load_truth(folder: Path, noise_sigma: float) -> Truth:
    """Read ``truth.npy``, ``truth_wcs.hdr`` and ``truth_coverage.npy`` of a survey folder.

    Parameters
    ----------
    folder : Path
        The survey folder (:func:`peers_grid_data.prepare_survey`).
    noise_sigma : float
        One frame's σ, ADU.

    Returns
    -------
    Truth
        The truth with its source mask.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.Header.fromstring((folder / "truth_wcs.hdr").read_text())
    return Truth(np.load(folder / "truth.npy"), WCS(header), np.load(folder / "truth_coverage.npy"), noise_sigma)


def _fit_plane(sky: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Least-squares plane ``c0 + c1·x + c2·y`` through ``sky[keep]``, evaluated everywhere."""
    h, w = sky.shape
    yy, xx = np.nonzero(keep)
    step = max(1, yy.size // 200_000)  # a plane needs few points
    yy, xx = yy[::step], xx[::step]
    design = np.stack([np.ones(yy.size), xx / w, yy / h], axis=1)
    coef = np.linalg.lstsq(design, sky[yy, xx], rcond=None)[0]
    return coef[0] + coef[1] * (np.arange(w) / w)[None, :] + coef[2] * (np.arange(h) / h)[:, None]


def source_mask(sky: np.ndarray, noise_sigma: float) -> np.ndarray:
    """Pixels where the truth holds a source: above its fitted plane by > 0.05 σ, grown by 2 px.

    Parameters
    ----------
    sky : ndarray, shape (H, W), float
        Noiseless sky (plane + sources).
    noise_sigma : float
        One frame's σ, ADU.

    Returns
    -------
    ndarray, shape (H, W), bool
        True on source pixels.
    """
    from scipy.ndimage import binary_dilation

    keep = np.ones(sky.shape, dtype=bool)
    threshold = SOURCE_KSIGMA * noise_sigma
    for _ in range(6):  # the stars bias the first fit up; each refit drops more of them
        excess = sky - _fit_plane(sky, keep)
        new_keep = excess <= threshold
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    grow = np.ones((2 * SOURCE_GROW_PX + 1,) * 2, dtype=bool)
    return binary_dilation(~keep, structure=grow)


def truth_on_grid(truth: Truth, wcs: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truth sky, coverage and source mask at the pixel centres of an output grid.

    Parameters
    ----------
    truth : Truth
        The survey's truth.
    wcs : astropy.wcs.WCS
        Celestial WCS of the output grid.
    shape : (H, W)
        Output grid size.

    Returns
    -------
    sky : ndarray, shape (H, W), float64
        Cubic-spline interpolated truth; NaN outside the truth canvas.
    coverage : ndarray, shape (H, W), int16
        Frames covering the nearest truth pixel (0 outside).
    source : ndarray, shape (H, W), bool
        Source mask at the nearest truth pixel (False outside).
    """
    from scipy.ndimage import map_coordinates

    h, w = shape
    sky = np.full((h, w), np.nan)
    coverage = np.zeros((h, w), dtype=np.int16)
    source = np.zeros((h, w), dtype=bool)
    th, tw = truth.sky.shape
    rows = max(1, 4_000_000 // max(w, 1))  # bands of rows: the transforms' temporaries stay small
    xx = np.arange(w, dtype=np.float64)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        gx = np.broadcast_to(xx, (y1 - y0, w)).ravel()
        gy = np.repeat(np.arange(y0, y1, dtype=np.float64), w)
        tx, ty = truth.wcs.world_to_pixel_values(*wcs.pixel_to_world_values(gx, gy))
        inside = np.isfinite(tx) & np.isfinite(ty) & (tx >= -0.5) & (tx <= tw - 0.5) & (ty >= -0.5) & (ty <= th - 0.5)
        values = map_coordinates(truth._coeffs, np.stack([ty, tx]), order=3, prefilter=False, mode="nearest")
        sky[y0:y1] = np.where(inside, values, np.nan).reshape(y1 - y0, w)
        ix = np.clip(np.rint(np.where(inside, tx, 0)).astype(np.int64), 0, tw - 1)
        iy = np.clip(np.rint(np.where(inside, ty, 0)).astype(np.int64), 0, th - 1)
        coverage[y0:y1] = np.where(inside, truth.coverage[iy, ix], 0).reshape(y1 - y0, w)
        source[y0:y1] = (inside & truth.source[iy, ix]).reshape(y1 - y0, w)
    return sky, coverage, source


def read_mosaic(path: Path, *, weight_path: Path | None = None, weight_hdu: str | int | None = None,
                ) -> tuple[np.ndarray, np.ndarray, Any]:
    """A tool's mosaic as (image, has-data mask, celestial WCS).

    Parameters
    ----------
    path : Path
        FITS file whose primary HDU is the image (H, W) or a one-plane cube (1, H, W).
    weight_path : Path, optional
        A separate weight map (SWarp's ``coadd.weight.fits``): data where it is > 0.
    weight_hdu : str or int, optional
        An HDU of ``path`` holding the weight or footprint (ours: ``WEIGHT``;
        reproject: the footprint): data where it is > 0.

    Returns
    -------
    image : ndarray, shape (H, W), float64
        NaN where the tool has no data.
    has_data : ndarray, shape (H, W), bool
        Finite and with weight > 0.
    wcs : astropy.wcs.WCS
        The image's celestial WCS.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    def plane(data: np.ndarray) -> np.ndarray:
        data = np.asarray(data, dtype=np.float64)
        while data.ndim > 2 and data.shape[0] == 1:
            data = data[0]
        if data.ndim != 2:
            msg = f"'{path}' holds an image of shape {data.shape}; expected one (H, W) plane"
            raise ValueError(msg)
        return data

    with fits.open(path, memmap=False) as hdul:
        image = plane(hdul[0].data)
        wcs = WCS(hdul[0].header).celestial
        weight = plane(hdul[weight_hdu].data) if weight_hdu is not None else None
    if weight_path is not None:
        with fits.open(weight_path, memmap=False) as hdul:
            weight = plane(hdul[0].data)
    has_data = np.isfinite(image)
    if weight is not None:
        has_data &= np.isfinite(weight) & (weight > 0)
    return np.where(has_data, image, np.nan), has_data, wcs


def mosaic_quality(image: np.ndarray, has_data: np.ndarray, sky: np.ndarray, coverage: np.ndarray,
                   source: np.ndarray, noise_sigma: float, footprints: list | None = None) -> dict:
    """Seam, outlier pixels and coverage of one mosaic against the truth on its grid.

    Parameters
    ----------
    image : ndarray, shape (H, W), float
        The mosaic (NaN = no data).
    has_data : ndarray, shape (H, W), bool
        Where the tool has data.
    sky : ndarray, shape (H, W), float
        Truth on the same grid (NaN outside the truth canvas).
    coverage : ndarray, shape (H, W), integer
        Frames covering each pixel (the truth's, not the tool's).
    source : ndarray, shape (H, W), bool
        Truth source mask on the same grid.
    noise_sigma : float
        One frame's σ, ADU.
    footprints : list of Footprint, optional
        The frames' footprints on this grid: adds :func:`frame_edge_steps`'s figures.

    Returns
    -------
    dict
        ``seam_sigma``, ``outlier_pixels``, ``coverage`` (see the module docstring), with
        ``gain`` and ``offset`` (the fitted a, b), ``seam_pixels`` (pixels S was evaluated
        on), ``background_pixels`` and ``footprint_pixels``.
    """
    from scipy.ndimage import uniform_filter

    footprint = coverage >= 1
    usable = has_data & footprint & np.isfinite(sky) & np.isfinite(image) & ~source
    n_usable = int(np.count_nonzero(usable))
    result = {"coverage": float(np.count_nonzero(has_data & footprint) / max(np.count_nonzero(footprint), 1)),
              "footprint_pixels": int(np.count_nonzero(footprint)), "background_pixels": n_usable}
    if n_usable < 16:
        return dict(result, seam_sigma=float("nan"), outlier_pixels=0, gain=float("nan"), offset=float("nan"),
                    seam_pixels=0)
    t, m = sky[usable], image[usable]
    depth = np.maximum(coverage, 1).astype(np.float64)
    limit = OUTLIER_KSIGMA * noise_sigma / np.sqrt(depth)  # the hot-pixel threshold, per pixel
    keep = np.ones(t.size, dtype=bool)
    for _ in range(2):  # fit, then refit without the pixels that are hot after the first fit
        if np.ptp(t[keep]) > 1e-6 * max(1.0, float(np.abs(t[keep]).max())):
            design = np.stack([t[keep], np.ones(int(keep.sum()))], axis=1)
            gain, offset = np.linalg.lstsq(design, m[keep], rcond=None)[0]
        else:  # a flat truth: the gain is undetermined, fit the offset alone
            gain, offset = 1.0, float(np.mean(m[keep] - t[keep]))
        keep = np.abs(m - (gain * t + offset)) <= limit[usable]
        if not keep.any():
            break
    residual = np.zeros(image.shape)
    residual[usable] = image[usable] - (gain * sky[usable] + offset)
    hot = usable & (np.abs(residual) > limit)
    calm = usable & ~hot  # the seam is measured without the outliers (counted on their own)
    residual[hot] = 0.0
    total = uniform_filter(residual, size=SEAM_BOX_PX, mode="constant")
    count = uniform_filter(calm.astype(np.float64), size=SEAM_BOX_PX, mode="constant")
    enough = calm & (count >= 0.5)
    smooth = total[enough] / count[enough]
    outliers = hot & (coverage >= OUTLIER_MIN_DEPTH)
    out = dict(result, seam_sigma=float(np.sqrt(np.mean(smooth**2)) / noise_sigma) if smooth.size else float("nan"),
               outlier_pixels=int(np.count_nonzero(outliers)), gain=float(gain), offset=float(offset),
               seam_pixels=int(smooth.size))
    if footprints is not None:
        clean = np.where(calm, residual, np.nan)
        out.update(frame_edge_steps(clean, footprints, noise_sigma))
    return out


class Footprint(NamedTuple):
    """A frame's footprint on an output grid, in the shape :func:`zemosaic_xp.diagnostics.seam_steps` reads.

    Parameters
    ----------
    tile_id : int
        The frame's index.
    y0, x0 : int
        Output pixel of the footprint box's corner.
    image : ndarray, shape (h, w)
        Ones (a broadcast view: no memory); the footprint is ``weight``.
    weight : ndarray, shape (h, w), bool
        True on the output pixels whose centre falls in the frame.
    """

    tile_id: int
    y0: int
    x0: int
    image: np.ndarray
    weight: np.ndarray


def frame_footprints(frame_wcs: list[Any], frame_shape: tuple[int, int], wcs: Any,
                     shape: tuple[int, int]) -> list[Footprint]:
    """Each frame's footprint on an output grid.

    The frame pixel coordinates of the output pixels are computed exactly (astropy) on
    nodes 16 px apart over the frame's box, and bilinearly interpolated in between: two
    TAN projections a few degrees apart differ from an affine map by far less than a
    pixel over 16 px.

    Parameters
    ----------
    frame_wcs : list of astropy.wcs.WCS
        Celestial WCS of each frame.
    frame_shape : (h, w)
        Frame size, pixels.
    wcs : astropy.wcs.WCS
        The output grid.
    shape : (H, W)
        Output grid size.

    Returns
    -------
    list of Footprint
        One per frame that lands on the grid.
    """
    from scipy.ndimage import map_coordinates

    fh, fw = frame_shape
    height, width = shape
    ex, ey = np.linspace(-0.5, fw - 0.5, 33), np.linspace(-0.5, fh - 0.5, 33)
    ox = np.concatenate([ex, np.full(33, fw - 0.5), ex, np.full(33, -0.5)])  # the frame's outline
    oy = np.concatenate([np.full(33, -0.5), ey, np.full(33, fh - 0.5), ey])
    out = []
    for index, fwcs in enumerate(frame_wcs):
        tx, ty = wcs.world_to_pixel_values(*fwcs.pixel_to_world_values(ox, oy))
        if not (np.all(np.isfinite(tx)) and np.all(np.isfinite(ty))):
            continue
        x0, x1 = max(0, int(np.floor(tx.min())) - 1), min(width, int(np.ceil(tx.max())) + 2)
        y0, y1 = max(0, int(np.floor(ty.min())) - 1), min(height, int(np.ceil(ty.max())) + 2)
        if x0 >= x1 or y0 >= y1:
            continue
        nx = np.unique(np.append(np.arange(x0, x1, 16), x1 - 1)).astype(np.float64)
        ny = np.unique(np.append(np.arange(y0, y1, 16), y1 - 1)).astype(np.float64)
        gx, gy = np.meshgrid(nx, ny)
        fx, fy = fwcs.world_to_pixel_values(*wcs.pixel_to_world_values(gx.ravel(), gy.ravel()))
        fx, fy = fx.reshape(gx.shape), fy.reshape(gx.shape)
        py = np.interp(np.arange(y0, y1), ny, np.arange(ny.size))  # fractional node index of each row
        px = np.interp(np.arange(x0, x1), nx, np.arange(nx.size))
        coords = np.stack(np.meshgrid(py, px, indexing="ij"))
        frame_x = map_coordinates(fx, coords, order=1)
        frame_y = map_coordinates(fy, coords, order=1)
        inside = (frame_x >= -0.5) & (frame_x <= fw - 0.5) & (frame_y >= -0.5) & (frame_y <= fh - 0.5)
        if inside.any():
            out.append(Footprint(index, y0, x0, np.broadcast_to(np.float32(1.0), inside.shape), inside))
    return out


def frame_edge_steps(residual: np.ndarray, footprints: list[Footprint], noise_sigma: float) -> dict:
    """Median and maximum background step across the frame edges, in σ.

    Parameters
    ----------
    residual : ndarray, shape (H, W), float
        Mosaic minus the fitted truth; NaN where there is no data or a source or a hot pixel.
    footprints : list of Footprint
        From :func:`frame_footprints` on the same grid.
    noise_sigma : float
        One frame's σ, ADU.

    Returns
    -------
    dict
        ``edge_step_median_sigma``, ``edge_step_max_sigma`` (NaN when no frame edge lies
        inside the mosaic) and ``edge_segments``.
    """
    from zemosaic_xp.diagnostics import seam_steps

    steps = seam_steps(residual, footprints)
    steps = steps[np.isfinite(steps)] / noise_sigma
    if steps.size == 0:
        return {"edge_step_median_sigma": float("nan"), "edge_step_max_sigma": float("nan"), "edge_segments": 0}
    return {"edge_step_median_sigma": float(np.median(steps)), "edge_step_max_sigma": float(steps.max()),
            "edge_segments": int(steps.size)}
