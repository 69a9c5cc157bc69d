"""Synthetic stacks of aligned frames with known truth and injected outliers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticStack", "make_stack", "render_sky"]


@dataclass
class SyntheticStack:
    """A synthetic stack and its ground truth.

    Attributes
    ----------
    frames : ndarray, shape (N, H, W) or (N, H, W, 3), float32
        Observed frames in ADU: ``gain_i · (sky + noise) + offset_i``, plus outliers.
    truth : ndarray, shape (H, W) or (H, W, 3), float32
        The noiseless sky in the units of a frame with gain 1 and offset 0.
    outliers : ndarray, shape (N, H, W), bool
        True where a cosmic ray or a trail was injected (all channels).
    gains, offsets : ndarray, shape (N,), float32
        Per-frame photometric gain and offset.
    noise_sigma : ndarray, shape (N,), float32
        Background noise σ of each frame in its own ADU (at the sky level).
    nan_frame : int or None
        Index of the frame that has a NaN rectangle, or None.
    nan_box : (y0, y1, x0, x1) or None
        Rows ``[y0, y1)`` and columns ``[x0, x1)`` of that rectangle.
    seed : int
        The seed everything was drawn from.
    """

    frames: np.ndarray
    truth: np.ndarray
    outliers: np.ndarray
    gains: np.ndarray
    offsets: np.ndarray
    noise_sigma: np.ndarray
    nan_frame: int | None
    nan_box: tuple[int, int, int, int] | None
    seed: int


def render_sky(shape: tuple[int, int], *, rng: np.random.Generator, sky_level: float = 1000.0,
               gradient: float = 200.0, n_stars: int = 40, star_peak: tuple[float, float] = (500.0, 20000.0),
               star_fwhm_px: float = 3.0, rgb: bool = False) -> np.ndarray:
    """Render a noiseless sky: linear background gradient plus Gaussian stars.

    Parameters
    ----------
    shape : (H, W)
        Size of the image in pixels.
    rng : numpy.random.Generator
        Source of the gradient's direction and the stars' positions, peaks and
        colours.
    sky_level : float
        Mean background, ADU.
    gradient : float
        Peak-to-peak amplitude of the linear background gradient (random direction),
        ADU.
    n_stars : int
        Number of stars, placed uniformly at random.
    star_peak : (float, float)
        Range of the star peaks, ADU; drawn log-uniform.
    star_fwhm_px : float
        FWHM of the Gaussian stars, pixels.
    rgb : bool
        Three channels: the background tinted (1, 0.9, 0.75), the stars by a random
        colour.

    Returns
    -------
    ndarray, shape (H, W) or (H, W, 3), float32
        The sky in ADU, on the host; finite everywhere.
    """
    h, w = shape
    # Pixel coordinates as a column and a row, broadcast: the same values per pixel as
    # full (H, W) grids, without allocating them (the survey's fine sky is ~10 Mpx).
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx / max(w - 1, 1) - 0.5) + np.sin(angle) * (yy / max(h - 1, 1) - 0.5))
    base = sky_level + gradient * ramp
    sigma = star_fwhm_px / 2.3548
    stars = np.zeros((h, w))
    ys = rng.uniform(0, h, n_stars)
    xs = rng.uniform(0, w, n_stars)
    peaks = np.exp(rng.uniform(np.log(star_peak[0]), np.log(star_peak[1]), n_stars))
    radius = int(np.ceil(5 * sigma))
    for y, x, peak in zip(ys, xs, peaks):
        y0, y1 = max(0, int(y) - radius), min(h, int(y) + radius + 1)
        x0, x1 = max(0, int(x) - radius), min(w, int(x) + radius + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        gy, gx = yy[y0:y1] - y, xx[:, x0:x1] - x
        stars[y0:y1, x0:x1] += peak * np.exp(-(gy * gy + gx * gx) / (2 * sigma * sigma))
    if not rgb:
        return (base + stars).astype(np.float32)
    colour = np.array([1.0, 0.9, 0.75])
    star_colour = rng.uniform(0.6, 1.2, (n_stars, 3)).mean(axis=0)
    img = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):  # one channel at a time: the float64 temporaries stay (H, W)
        img[..., c] = base * colour[c] + stars * star_colour[c]
    return img


def _trail_mask(shape: tuple[int, int], rng: np.random.Generator, width_px: float = 1.5) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    theta = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.25 * h, 0.75 * h), rng.uniform(0.25 * w, 0.75 * w)
    dist = np.abs((xx - cx) * np.sin(theta) - (yy - cy) * np.cos(theta))
    return dist <= width_px


def make_stack(n_frames: int = 16, shape: tuple[int, int] = (128, 128), *, seed: int = 0,
               rgb: bool = False, sky_level: float = 1000.0, gradient: float = 200.0,
               n_stars: int = 40, read_noise: float = 5.0, photon_scale: float = 1.0,
               gain_spread: float = 0.1, offset_spread: float = 50.0,
               cosmic_rays_per_frame: int = 20, cosmic_ray_adu: tuple[float, float] = (3000.0, 30000.0),
               trails: int = 1, trail_adu: float = 4000.0, nan_region: bool = True) -> SyntheticStack:
    """Render a reproducible synthetic stack with known truth and outliers.

    Parameters
    ----------
    n_frames : int
        N, at least 1.
    shape : (H, W)
        Frame size in pixels.
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``.
    rgb : bool
        3 channels (H, W, 3) instead of mono.
    sky_level, gradient : float
        Background level and its peak-to-peak linear gradient, ADU.
    n_stars : int
        Number of stars in the sky.
    read_noise : float
        Gaussian read noise σ, ADU.
    photon_scale : float
        Poisson-like noise: variance = photon_scale · signal + read_noise².
    gain_spread, offset_spread : float
        Per-frame gain is 1 + U(−spread, spread); offset is U(−spread, spread) ADU.
        Frame 0 always has gain 1 and offset 0 (the normalisation reference).
    cosmic_rays_per_frame : int
        Single-pixel hits per frame, amplitude log-uniform in ``cosmic_ray_adu``.
    cosmic_ray_adu : (float, float)
        Amplitude range of the cosmic rays, ADU.
    trails : int
        Number of frames crossed by a satellite trail of ``trail_adu``.
    trail_adu : float
        Amplitude of a trail (about 3 px wide), ADU.
    nan_region : bool
        Blank a rectangle (a quarter of the frame) with NaN in the last frame
        (when N > 1).

    Returns
    -------
    SyntheticStack
        Frames, truth and outlier positions as host NumPy arrays.

    Raises
    ------
    ValueError
        ``n_frames`` < 1.
    """
    if n_frames < 1:
        msg = f"`n_frames` must be >= 1, got {n_frames}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    h, w = shape
    truth = render_sky(shape, rng=rng, sky_level=sky_level, gradient=gradient, n_stars=n_stars, rgb=rgb)
    gains = 1.0 + rng.uniform(-gain_spread, gain_spread, n_frames)
    offsets = rng.uniform(-offset_spread, offset_spread, n_frames)
    gains[0], offsets[0] = 1.0, 0.0
    sigma = np.sqrt(np.maximum(truth, 0.0) * photon_scale + read_noise**2)
    frames = np.empty((n_frames,) + truth.shape, dtype=np.float32)
    outliers = np.zeros((n_frames, h, w), dtype=bool)
    trail_frames = set(rng.choice(n_frames, size=min(trails, n_frames), replace=False).tolist()) if trails else set()
    for i in range(n_frames):
        noisy = truth + sigma * rng.standard_normal(truth.shape)
        hits = np.zeros((h, w))
        if cosmic_rays_per_frame:
            ys = rng.integers(0, h, cosmic_rays_per_frame)
            xs = rng.integers(0, w, cosmic_rays_per_frame)
            amp = np.exp(rng.uniform(np.log(cosmic_ray_adu[0]), np.log(cosmic_ray_adu[1]), cosmic_rays_per_frame))
            hits[ys, xs] = amp
        if i in trail_frames:
            trail = _trail_mask(shape, rng)
            hits[trail] += trail_adu
        outliers[i] = hits > 0
        if rgb:
            hits = hits[..., None]
        frames[i] = (gains[i] * (noisy + hits) + offsets[i]).astype(np.float32)
    nan_frame = nan_box = None
    if nan_region and n_frames > 1:
        nan_frame = n_frames - 1
        nan_box = (h // 4, h // 2, w // 4, w // 2)
        frames[nan_frame, nan_box[0]:nan_box[1], nan_box[2]:nan_box[3]] = np.nan
    noise_sigma = (gains * np.sqrt(sky_level * photon_scale + read_noise**2)).astype(np.float32)
    return SyntheticStack(frames, truth, outliers, gains.astype(np.float32), offsets.astype(np.float32),
                          noise_sigma, nan_frame, nan_box, seed)


# --------------------------------------------------------------------------------------------
# Synthetic plate-solved surveys (grid mode): frames on a sky with a known truth.
# --------------------------------------------------------------------------------------------
