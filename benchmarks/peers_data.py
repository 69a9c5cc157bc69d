"""Frames for the peer benchmark (``benchmarks/peers.py``): 16-bit camera FITS with known truth.

A case ``NxS`` is N aligned mono frames of S × S pixels, written as a camera writes them
(``BITPIX 16``, ``BZERO 32768``: astropy's ``PrimaryHDU`` of a uint16 array). Each frame
is the same noiseless sky (:func:`zemosaic_xp.synthetic.render_sky`: a ~1000 ADU gradient
and a few Gaussian stars) plus Gaussian noise of σ = 10 ADU, rounded to uint16 (the
*clean* frame); then outliers are added: cosmic rays on ~0.05 % of the pixels of every
frame (+3000 to +30 000 ADU, log-uniform) and one satellite trail (+1500 ADU, 3 px wide)
across the middle frame.

Beside the ``frames/`` folder the case keeps its truth for the quality metrics:

- ``clean_mean.npy``: float64 (S, S), the mean of the clean frames, accumulated frame by
  frame (so memory stays at a few frames whatever N is); a perfect rejection followed by
  a mean gives exactly this;
- ``outlier_count.npy``: uint16 (S, S), how many frames had an outlier at each pixel.

A case is generated once per ``--workdir`` and reused while its ``manifest.json`` holds
the same parameters (:func:`outofcore._dataset`, the one home of that logic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CaseData", "NOISE_SIGMA_ADU", "parse_case", "prepare_case", "generate_case"]

#: Gaussian noise of every frame, ADU (at a ~1000 ADU sky).
NOISE_SIGMA_ADU = 10.0
SKY_LEVEL_ADU = 1000.0
COSMIC_FRACTION = 0.0005  # of the pixels of each frame
COSMIC_RANGE_ADU = (3000.0, 30000.0)
TRAIL_ADU = 1500.0
TRAIL_HALF_WIDTH_PX = 1.5
_DATA_VERSION = 1  # bump when the recipe above changes: old data sets are then rebuilt


@dataclass(frozen=True)
class CaseData:
    """One generated case on disk.

    Parameters
    ----------
    name : str
        ``"NxS"``, e.g. ``"32x1024"``.
    n_frames, size : int
        Frame count and frame side (pixels).
    folder : Path
        The case folder: ``frames/``, ``clean_mean.npy``, ``outlier_count.npy``,
        ``manifest.json``; the tools run with it as working directory.
    frames : tuple of Path
        The frame files, in order.
    generation_sec : float
        Seconds spent writing the data this time (0 when reused).
    reused : bool
        True when the data were already there with the same parameters.
    """

    name: str
    n_frames: int
    size: int
    folder: Path
    frames: tuple[Path, ...]
    generation_sec: float
    reused: bool

    @property
    def input_bytes(self) -> int:
        """Total size of the frame files, bytes."""
        return sum(p.stat().st_size for p in self.frames)


def parse_case(spec: str) -> tuple[int, int]:
    """Read a case spec ``"NxS"`` (N frames of S × S pixels).

    Parameters
    ----------
    spec : str
        E.g. ``"32x1024"``, ``"6x64"``.

    Returns
    -------
    (int, int)
        ``(n_frames, size)``.

    Raises
    ------
    ValueError
        Not of the form ``NxS`` with N ≥ 2 and S ≥ 16.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", spec)
    if match is None or int(match.group(1)) < 2 or int(match.group(2)) < 16:
        msg = (f"`--cases` entry {spec!r} is not NxS with N >= 2 frames of S >= 16 pixels square; "
               f"e.g. 32x1024")
        raise ValueError(msg)
    return int(match.group(1)), int(match.group(2))


def prepare_case(workdir: Path, spec: str, *, seed: int = 13) -> CaseData:
    """Generate case ``spec`` under ``workdir``, or reuse it when its manifest matches.

    Parameters
    ----------
    workdir : Path
        The benchmark's working folder; the case goes to ``workdir / spec``.
    spec : str
        ``"NxS"`` (see :func:`parse_case`).
    seed : int
        Seed of the sky, the noise and the outliers.

    Returns
    -------
    CaseData
        The case on disk.
    """
    from outofcore import _dataset  # sibling script: manifest check, build in a temp folder, rename

    n_frames, size = parse_case(spec)
    name = f"{n_frames}x{size}"
    params = {"kind": "peers", "n_frames": n_frames, "size": size, "seed": seed,
              "noise_sigma_adu": NOISE_SIGMA_ADU, "peers_version": _DATA_VERSION}
    folder, seconds, reused = _dataset(workdir, name, params,
                                       lambda tmp: generate_case(tmp, n_frames, size, seed=seed))
    frames = tuple(sorted((folder / "frames").glob("frame_*.fits")))
    return CaseData(name, n_frames, size, folder, frames, seconds, reused)


def generate_case(folder: Path, n_frames: int, size: int, *, seed: int = 13) -> dict:
    """Write the frames and the truth of one case into ``folder``.

    Parameters
    ----------
    folder : Path
        An existing, empty folder.
    n_frames, size : int
        N frames of ``size`` × ``size`` pixels.
    seed : int
        Seed of everything random.

    Returns
    -------
    dict
        Summary for the manifest: outlier pixel count, sky median, trail frame.
    """
    from astropy.io import fits

    from zemosaic_xp.synthetic import render_sky

    shape = (size, size)
    sky = render_sky(shape, rng=np.random.default_rng(seed), sky_level=SKY_LEVEL_ADU, gradient=100.0,
                     n_stars=max(4, size * size // 20000)).astype(np.float64)
    trail_frame = n_frames // 2
    total = np.zeros(shape, dtype=np.float64)
    count = np.zeros(shape, dtype=np.uint16)
    (folder / "frames").mkdir()
    for i in range(n_frames):
        rng = np.random.default_rng([seed, i])
        clean = _quantise(sky + NOISE_SIGMA_ADU * rng.standard_normal(shape))
        total += clean
        hit = _cosmic_rays(shape, rng)
        if i == trail_frame:
            hit += _trail(shape, rng)
        frame = _quantise(clean + hit)
        count += (frame != clean).astype(np.uint16)
        fits.PrimaryHDU(frame).writeto(folder / "frames" / f"frame_{i:04d}.fits")
    np.save(folder / "clean_mean.npy", total / n_frames)
    np.save(folder / "outlier_count.npy", count)
    return {"outlier_pixels": int(np.count_nonzero(count)), "sky_median_adu": float(np.median(sky)),
            "trail_frame": trail_frame}


def _quantise(values: np.ndarray) -> np.ndarray:
    """ADU as a 16-bit camera stores them: rounded and clipped to uint16."""
    return np.clip(np.rint(values), 0, 65535).astype(np.uint16)


def _cosmic_rays(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Single-pixel hits on ``COSMIC_FRACTION`` of the pixels, float64 ADU to add."""
    hit = np.zeros(shape, dtype=np.float64)
    n_hits = max(1, round(COSMIC_FRACTION * hit.size))
    where = rng.integers(0, hit.size, n_hits)
    low, high = np.log(COSMIC_RANGE_ADU[0]), np.log(COSMIC_RANGE_ADU[1])
    hit.reshape(-1)[where] = np.exp(rng.uniform(low, high, n_hits))
    return hit


def _trail(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A straight satellite trail through the central half of the frame, float64 ADU to add."""
    h, w = shape
    angle = rng.uniform(0.0, np.pi)
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    yy = np.arange(h, dtype=np.float64)[:, None] - cy
    xx = np.arange(w, dtype=np.float64)[None, :] - cx
    distance = np.abs(yy * np.cos(angle) - xx * np.sin(angle))
    return np.where(distance <= TRAIL_HALF_WIDTH_PX, TRAIL_ADU, 0.0)
