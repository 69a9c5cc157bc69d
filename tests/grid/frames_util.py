"""Small plate-solved FITS frames for grid unit tests (the end-to-end tests use
``zemosaic_xp.synthetic.make_survey``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

SCALE_DEG = 2.0 / 3600.0


def tan_wcs(ra: float, dec: float, shape: tuple[int, int], *, rot_deg: float = 0.0,
            scale_deg: float = SCALE_DEG) -> WCS:
    """A TAN WCS centred on (ra, dec) for a frame of ``shape`` (H, W)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    c, s = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    w.wcs.cd = scale_deg * np.array([[-c, s], [s, c]])
    w.wcs.set()
    return w


def sky(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth analytic sky (ADU) as a function of position, so frames agree."""
    return 1000.0 + 400.0 * np.sin(np.radians(ra) * 300.0) + 300.0 * np.cos(np.radians(dec) * 250.0)


def write_frames(folder: Path, *, n: int = 6, shape: tuple[int, int] = (48, 64), channels: int = 1,
                 step_deg: float = 40 * SCALE_DEG, rows: int = 2, seed: int = 0, noise: float = 5.0,
                 gains: list[float] | None = None, offsets: list[float] | None = None,
                 alpha: bool = False, plan: bool = True, exposures: list[float] | None = None) -> list[Path]:
    """Write ``n`` overlapping frames on a ``rows``-row raster plus ``stack_plan.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    cols = int(np.ceil(n / rows))
    for i in range(n):
        r, c = divmod(i, cols)
        ra, dec = 150.0 + c * step_deg / np.cos(np.radians(30.0)), 30.0 + r * step_deg * 0.8
        w = tan_wcs(ra, dec, shape, rot_deg=2.0 * (i % 3 - 1))
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
        wra, wdec = w.pixel_to_world_values(xx, yy)
        base = sky(wra, wdec)
        g = 1.0 if gains is None else gains[i]
        o = 0.0 if offsets is None else offsets[i]
        planes = [g * (base * (1.0 + 0.1 * ch) + noise * rng.standard_normal(shape)) + o for ch in range(channels)]
        data = np.stack(planes, axis=0).astype(np.float32)
        if channels == 1:
            data = data[0]
        hdus = [fits.PrimaryHDU(data, header=w.to_header())]
        if alpha:
            a = np.full(shape, 255, dtype=np.uint8)
            a[:, : shape[1] // 4] = 0
            hdus.append(fits.ImageHDU(a, name="ALPHA"))
        path = folder / f"frame_{i:03d}.fits"
        fits.HDUList(hdus).writeto(path, overwrite=True)
        paths.append(path)
    if plan:
        lines = ["file_path,exposure"]
        for i, p in enumerate(paths):
            lines.append(f"{p.name},{exposures[i] if exposures else 10.0}")
        (folder / "stack_plan.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths
