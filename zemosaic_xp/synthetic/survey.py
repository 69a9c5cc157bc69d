"""Synthetic plate-solved surveys (FITS frames + stack_plan.csv) with known truth."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .stack import _trail_mask, render_sky

__all__ = ["SyntheticSurvey", "make_survey"]

_SURVEY_OVERSAMPLE = 3  # odd, so every truth pixel centre is a sample of the fine grid


@dataclass
class SyntheticSurvey:
    """A folder of plate-solved FITS frames of one synthetic sky, with its truth.

    Attributes
    ----------
    folder : Path
        The survey folder.
    plan_csv : Path
        ``stack_plan.csv`` (``file_path,exposure[,batch_id,order,filter]``, paths
        relative to ``folder``).
    frame_paths : list of Path
        FITS files, float32 (2-D mono or CHW RGB) with a TAN WCS (CD matrix) and EXPTIME.
    truth : ndarray, shape (H, W) or (H, W, 3), float32
        Noiseless sky on ``truth_wcs``, in the units of a frame with gain 1 and offset 0.
    truth_wcs : astropy.wcs.WCS
        TAN, north up, east left, at the frames' pixel scale.
    noise_sigma : float
        Background noise σ of one frame (ADU, gain-1 units) at the sky level.
    gains, offsets : ndarray, shape (N,), float32
        Frame ``i`` holds ``gains[i]·(sky + noise + outliers) + offsets[i]``; frame 0
        has gain 1 and offset 0.
    outliers : ndarray, shape (N, h, w), bool
        True where a cosmic ray or a satellite trail was injected in frame ``i``.
    frame_wcs : list of astropy.wcs.WCS
        Celestial WCS of each frame.
    frame_shape : (h, w)
        Size of every frame in pixels.
    exposure : ndarray, shape (N,), float32
        EXPTIME of each frame, seconds (also the plan's ``exposure`` column).
    rotation_deg : ndarray, shape (N,), float64
        Rotation of each frame relative to the truth grid, degrees.
    coverage : ndarray, shape (H, W), int16
        Number of frames covering each truth pixel.
    sky_level : float
        Mean background of the truth, ADU.
    seed : int
        The seed everything was drawn from.
    """

    folder: Path
    plan_csv: Path
    frame_paths: list[Path]
    truth: np.ndarray
    truth_wcs: Any
    noise_sigma: float
    gains: np.ndarray
    offsets: np.ndarray
    outliers: np.ndarray
    frame_wcs: list[Any]
    frame_shape: tuple[int, int]
    exposure: np.ndarray
    rotation_deg: np.ndarray
    coverage: np.ndarray
    sky_level: float
    seed: int
    _fine_coeffs: np.ndarray = field(repr=False, default=None)
    _fine_wcs: Any = field(repr=False, default=None)

    @property
    def n_frames(self) -> int:
        """Number of frames of the survey.

        Returns
        -------
        int
            N, the length of :attr:`frame_paths`.
        """
        return len(self.frame_paths)

    def frame_model(self, index: int) -> np.ndarray:
        """Render frame ``index`` without noise and outliers, in its own ADU.

        Parameters
        ----------
        index : int
            Frame number, ``0 <= index < N``.

        Returns
        -------
        ndarray, shape (h, w) or (h, w, 3), float32
            ``gains[index]·sky + offsets[index]``, the fine truth sampled at the
            frame's pixel centres as when the survey was written; on the host.
        """
        sky = _sample_fine(self._fine_coeffs, self._fine_wcs, self.frame_wcs[index], self.frame_shape)
        return (self.gains[index] * sky + self.offsets[index]).astype(np.float32)


def _tan_wcs(crval: tuple[float, float], crpix: tuple[float, float], scale_deg: float, rotation_deg: float = 0.0):
    """A TAN WCS with a CD matrix (east left, north up before the rotation)."""
    from astropy.wcs import WCS

    theta = np.deg2rad(rotation_deg)
    c, s = np.cos(theta), np.sin(theta)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [float(crval[0]), float(crval[1])]
    wcs.wcs.crpix = [float(crpix[0]), float(crpix[1])]
    wcs.wcs.cd = np.array([[-scale_deg * c, scale_deg * s], [scale_deg * s, scale_deg * c]])
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.set()
    return wcs


def _sample_fine(coeffs: np.ndarray, fine_wcs: Any, wcs: Any, shape: tuple[int, int]) -> np.ndarray:
    """The fine truth (cubic-spline coefficients) sampled at the pixel centres of ``wcs``."""
    from scipy.ndimage import map_coordinates

    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    ra, dec = wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    fx, fy = fine_wcs.world_to_pixel_values(ra, dec)
    coords = np.stack([fy, fx])
    chans = [coeffs] if coeffs.ndim == 2 else [coeffs[..., c] for c in range(coeffs.shape[2])]
    out = [map_coordinates(ch, coords, order=3, prefilter=False, mode="nearest").reshape(h, w) for ch in chans]
    return out[0] if coeffs.ndim == 2 else np.stack(out, axis=-1)


def _sampled_frames(coeffs: np.ndarray, fine_wcs: Any, wcss: list[Any], shape: tuple[int, int]) -> Any:
    """:func:`_sample_fine` of each frame in order, a few frames ahead on threads.

    The sampling draws no random numbers and its transforms and spline interpolation
    release the GIL, so it runs beside the caller's noise and writing; each thread has
    its own copy of ``fine_wcs``.
    """
    import copy
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, min(4, os.cpu_count() or 1))
    if threads == 1 or len(wcss) < 2:
        for wcs in wcss:
            yield _sample_fine(coeffs, fine_wcs, wcs, shape)
        return
    local = threading.local()

    def sample(wcs: Any) -> np.ndarray:
        if getattr(local, "fine_wcs", None) is None:
            local.fine_wcs = copy.deepcopy(fine_wcs)
        return _sample_fine(coeffs, local.fine_wcs, wcs, shape)

    with ThreadPoolExecutor(threads, thread_name_prefix="zemosaic-synthetic") as pool:
        pending: deque = deque()
        for wcs in wcss:
            pending.append(pool.submit(sample, wcs))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _frame_header(wcs: Any, exposure: float, index: int, rgb: bool) -> Any:
    from astropy.io import fits

    hdr = fits.Header()
    for key in ("CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
        i = int(key[-1]) - 1
        attr = {"CTYPE": wcs.wcs.ctype, "CUNIT": wcs.wcs.cunit, "CRVAL": wcs.wcs.crval, "CRPIX": wcs.wcs.crpix}
        value = attr[key[:-1]][i]
        hdr[key] = str(value) if key[:-1] in ("CTYPE", "CUNIT") else float(value)
    for i in range(2):
        for j in range(2):
            hdr[f"CD{i + 1}_{j + 1}"] = float(wcs.wcs.cd[i, j])
    if rgb:  # the channel axis: without it astropy's cdfix warns on NAXIS = 3
        hdr["CD3_3"] = 1.0
    hdr["RADESYS"] = "ICRS"
    hdr["EXPTIME"] = (float(exposure), "[s] exposure time")
    hdr["OBJECT"] = "SYNTHETIC SURVEY"
    hdr["FILTER"] = "RGB" if rgb else "L"
    hdr["FRAMEIDX"] = (index, "frame index in the synthetic survey")
    return hdr


def _pointings(rng: np.random.Generator, n_frames: int, grid: tuple[int, int], frame_shape: tuple[int, int],
               step_fraction: float, dither_px: float) -> np.ndarray:
    """Frame centres (x, y) relative to the survey centre, px: a rows × cols pattern, dithered."""
    rows, cols = grid
    h, w = frame_shape
    gy = (np.arange(rows) - (rows - 1) / 2) * step_fraction * h
    gx = (np.arange(cols) - (cols - 1) / 2) * step_fraction * w
    centres = np.array([(x, y) for y in gy for x in gx])
    pick = np.arange(n_frames) % len(centres)
    return centres[pick] + rng.uniform(-dither_px, dither_px, (n_frames, 2))


def _write_plan(folder: Path, names: list[str], exposure: np.ndarray, rgb: bool, extra: bool) -> Path:
    import csv

    path = folder / "stack_plan.csv"
    tmp = folder / ".stack_plan.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file_path", "exposure"] + (["batch_id", "order", "filter"] if extra else []))
        for i, name in enumerate(names):
            row = [name, f"{exposure[i]:g}"]
            if extra:
                row += [f"night{1 + 2 * i // max(len(names), 1)}", str(i), "RGB" if rgb else "L"]
            writer.writerow(row)
    os.replace(tmp, path)
    return path


def _survey_canvas(grid: tuple[int, int], frame_shape: tuple[int, int], step_fraction: float, dither_px: float,
                   rotation_deg_max: float) -> tuple[int, int]:
    """Truth canvas (H, W) holding every frame with its dither and rotation, plus a margin."""
    rows, cols = grid
    h, w = frame_shape
    th = np.deg2rad(abs(rotation_deg_max))
    half_w = (cols - 1) / 2 * step_fraction * w + dither_px + 0.5 * (w * np.cos(th) + h * np.sin(th)) + 8
    half_h = (rows - 1) / 2 * step_fraction * h + dither_px + 0.5 * (h * np.cos(th) + w * np.sin(th)) + 8
    return int(np.ceil(2 * half_h)), int(np.ceil(2 * half_w))


def make_survey(folder: str | os.PathLike, *, n_frames: int = 24, frame_shape: tuple[int, int] = (256, 256),
                grid: tuple[int, int] = (2, 3), pixel_scale_arcsec: float = 2.0, rotation_deg_max: float = 2.0,
                rgb: bool = False, gain_spread: float = 0.05, offset_spread: float = 20.0,
                cosmic_rays_per_frame: int = 30, trails: int = 1, seed: int = 0, plan_extra_columns: bool = True,
                center_deg: tuple[float, float] = (150.0, 30.0), step_fraction: float = 0.5,
                dither_px: float | None = None, sky_level: float = 1000.0, gradient: float = 200.0,
                star_density: float = 1 / 2500, read_noise: float = 5.0, photon_scale: float = 1.0,
                exposure_sec: float = 60.0, cosmic_ray_adu: tuple[float, float] = (3000.0, 30000.0),
                trail_adu: float = 4000.0) -> SyntheticSurvey:
    """Write a reproducible synthetic survey of plate-solved frames and its ``stack_plan.csv``.

    The truth is :func:`render_sky` (gradient + Gaussian stars) rendered 3× oversampled
    on a TAN grid centred on ``center_deg``. Frames point at a ``grid`` (rows, cols)
    pattern of centres ``step_fraction`` of a frame apart (frames are spread
    round-robin over the pointings, each dithered by up to ``dither_px`` and rotated by
    up to ``rotation_deg_max``), so neighbouring pointings overlap by half a frame and
    the core of the survey is covered by ``4·n_frames/(rows·cols)`` frames (16 with
    the defaults). Each frame samples the fine truth with a cubic spline at its pixel
    centres (resampling error ≪ noise), then gets Poisson-like noise (variance
    ``photon_scale·sky + read_noise²``), cosmic rays, satellite trails, and its
    gain and offset.

    Parameters
    ----------
    folder : str or os.PathLike
        Created if missing; frames ``survey_NNN.fits`` and ``stack_plan.csv`` go there.
    n_frames : int
        N ≥ 1.
    frame_shape : (h, w)
        Size of every frame in pixels, at least 16 each.
    grid : (rows, cols)
        Pointing pattern; the mosaic is about ``(1 + (cols − 1)·step_fraction)`` frames wide.
    pixel_scale_arcsec : float
        Pixel scale of the frames and of the truth grid, arcseconds.
    rotation_deg_max : float
        Frame rotations are uniform in ±this.
    rgb : bool
        3-channel frames (CHW on disk).
    gain_spread, offset_spread : float
        Gain 1 + U(±gain_spread), offset U(±offset_spread) ADU; frame 0 gets 1 and 0.
    cosmic_rays_per_frame : int
        Single-pixel hits, amplitude log-uniform in ``cosmic_ray_adu``.
    trails : int
        Number of frames crossed by a satellite trail of ``trail_adu``.
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    plan_extra_columns : bool
        Add ``batch_id,order,filter`` to the plan after ``file_path,exposure``.
    center_deg : (RA, Dec)
        Centre of the survey, degrees (ICRS).
    step_fraction : float
        Distance between neighbouring pointings, as a fraction of the frame size.
    dither_px : float, optional
        Default 5 % of the frame's short side.
    sky_level, gradient, star_density, read_noise, photon_scale : float
        Sky (ADU), its peak-to-peak gradient over the canvas, stars per truth pixel,
        and the noise model.
    exposure_sec : float
        EXPTIME of every frame.
    cosmic_ray_adu : (float, float)
        Amplitude range of the cosmic rays, ADU.
    trail_adu : float
        Amplitude of a trail (about 3 px wide), ADU.

    Returns
    -------
    SyntheticSurvey
        Paths, truth and per-frame parameters; arrays are host NumPy arrays.

    Raises
    ------
    ValueError
        ``n_frames`` < 1, a frame side < 16 px, or a ``grid`` side < 1.
    """
    if n_frames < 1 or min(frame_shape) < 16 or min(grid) < 1:
        msg = (f"`n_frames` must be >= 1, `frame_shape` at least 16 px and `grid` at least (1, 1); "
               f"got {n_frames}, {frame_shape}, {grid}")
        raise ValueError(msg)
    from scipy.ndimage import spline_filter

    from ..io.fits_write import write_fits

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = frame_shape
    dither = 0.05 * min(h, w) if dither_px is None else float(dither_px)
    height, width = _survey_canvas(grid, frame_shape, step_fraction, dither, rotation_deg_max)
    k = _SURVEY_OVERSAMPLE
    scale_deg = pixel_scale_arcsec / 3600.0
    crpix = ((width + 1) / 2, (height + 1) / 2)
    truth_wcs = _tan_wcs(center_deg, crpix, scale_deg)
    # fine pixel (0-based) = k·truth pixel + (k − 1)/2, so truth = fine[(k-1)/2::k, (k-1)/2::k]
    fine_wcs = _tan_wcs(center_deg, (k * (crpix[0] - 1) + (k - 1) / 2 + 1, k * (crpix[1] - 1) + (k - 1) / 2 + 1),
                        scale_deg / k)
    n_stars = int(round(star_density * height * width))
    fine = render_sky((k * height, k * width), rng=rng, sky_level=sky_level, gradient=gradient, n_stars=n_stars,
                      star_fwhm_px=3.0 * k, rgb=rgb)
    truth = np.ascontiguousarray(fine[(k - 1) // 2::k, (k - 1) // 2::k])
    coeffs = spline_filter(fine, order=3, output=np.float64) if not rgb else \
        np.stack([spline_filter(fine[..., c], order=3, output=np.float64) for c in range(3)], axis=-1)
    del fine
    gains = 1.0 + rng.uniform(-gain_spread, gain_spread, n_frames)
    offsets = rng.uniform(-offset_spread, offset_spread, n_frames)
    gains[0], offsets[0] = 1.0, 0.0
    centres = _pointings(rng, n_frames, grid, frame_shape, step_fraction, dither)
    rotations = rng.uniform(-rotation_deg_max, rotation_deg_max, n_frames)
    trail_frames = set(rng.choice(n_frames, size=min(trails, n_frames), replace=False).tolist()) if trails else set()
    exposure = np.full(n_frames, exposure_sec, dtype=np.float32)
    outliers = np.zeros((n_frames, h, w), dtype=bool)
    frame_wcs, paths = [], []
    wcss = []
    for i in range(n_frames):
        ra, dec = truth_wcs.pixel_to_world_values((width - 1) / 2 + centres[i, 0], (height - 1) / 2 + centres[i, 1])
        wcss.append(_tan_wcs((float(ra), float(dec)), ((w + 1) / 2, (h + 1) / 2), scale_deg, rotations[i]))
    for i, (wcs, sky) in enumerate(zip(wcss, _sampled_frames(coeffs, fine_wcs, wcss, frame_shape))):
        sigma = np.sqrt(np.maximum(sky, 0.0) * photon_scale + read_noise**2)
        hits = np.zeros((h, w))
        if cosmic_rays_per_frame:
            ys, xs = rng.integers(0, h, cosmic_rays_per_frame), rng.integers(0, w, cosmic_rays_per_frame)
            hits[ys, xs] = np.exp(rng.uniform(*np.log(cosmic_ray_adu), cosmic_rays_per_frame))
        if i in trail_frames:
            hits[_trail_mask(frame_shape, rng)] += trail_adu
        outliers[i] = hits > 0
        data = sky + sigma * rng.standard_normal(sky.shape) + (hits[..., None] if rgb else hits)
        data = (gains[i] * data + offsets[i]).astype(np.float32)
        path = folder / f"survey_{i:03d}.fits"
        write_fits(path, data, header=_frame_header(wcs, exposure[i], i, rgb))
        frame_wcs.append(wcs)
        paths.append(path)
    plan = _write_plan(folder, [p.name for p in paths], exposure, rgb, plan_extra_columns)
    return SyntheticSurvey(folder, plan, paths, truth, truth_wcs,
                           float(np.sqrt(sky_level * photon_scale + read_noise**2)), gains.astype(np.float32),
                           offsets.astype(np.float32), outliers, frame_wcs, (h, w), exposure, rotations,
                           _survey_coverage(truth_wcs, (height, width), frame_wcs, frame_shape), float(sky_level),
                           seed, coeffs, fine_wcs)


def _survey_coverage(truth_wcs: Any, shape: tuple[int, int], frame_wcs: list[Any],
                     frame_shape: tuple[int, int]) -> np.ndarray:
    """Frames covering each truth pixel centre, (H, W) int16.

    Each frame is tested on the truth pixels of its outline's bounding box (plus a
    margin) only; the pixels outside cannot be in the frame, and those inside get the
    same coordinates as a transform of the whole canvas would give them.
    """
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    ra, dec = truth_wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    ra, dec = ra.reshape(height, width), dec.reshape(height, width)
    count = np.zeros((height, width), dtype=np.int16)
    fh, fw = frame_shape
    edge_x, edge_y = np.linspace(-0.5, fw - 0.5, 65), np.linspace(-0.5, fh - 0.5, 65)
    outline_x = np.concatenate([edge_x, np.full(65, fw - 0.5), edge_x, np.full(65, -0.5)])
    outline_y = np.concatenate([np.full(65, -0.5), edge_y, np.full(65, fh - 0.5), edge_y])
    margin = 3
    for wcs in frame_wcs:
        tx, ty = truth_wcs.world_to_pixel_values(*wcs.pixel_to_world_values(outline_x, outline_y))
        if not (np.all(np.isfinite(tx)) and np.all(np.isfinite(ty))):
            y0, y1, x0, x1 = 0, height, 0, width
        else:
            x0, x1 = max(0, int(np.floor(tx.min())) - margin), min(width, int(np.ceil(tx.max())) + margin + 1)
            y0, y1 = max(0, int(np.floor(ty.min())) - margin), min(height, int(np.ceil(ty.max())) + margin + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        fx, fy = wcs.world_to_pixel_values(ra[y0:y1, x0:x1].ravel(), dec[y0:y1, x0:x1].ravel())
        inside = (fx >= -0.5) & (fx <= fw - 0.5) & (fy >= -0.5) & (fy <= fh - 0.5)
        count[y0:y1, x0:x1] += inside.reshape(y1 - y0, x1 - x0)
    return count
