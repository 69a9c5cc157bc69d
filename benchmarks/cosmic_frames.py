"""Cosmic-ray detectors on a dense synthetic star field: hits found, stars flagged, speed.

For each star FWHM, one 1024² frame of :func:`zemosaic_xp.synthetic.render_sky` (flat
1000 ADU sky, one star per 330 px², peaks log-uniform 320–500 000 ADU, clipped at
50 000 ADU so that the bright ones are flat-topped saturated stars), Poisson + 5 ADU
read noise, and 800 hits of 300–30 000 ADU (a quarter each: 1 px, 2 px, 2 px diagonal,
3-px streak). Reported per detector (``io.cosmic.cosmic_mask``):

- hits found: injected hit pixels masked (all of them; those on the sky, where no star
  adds 3 σ);
- star px flagged: masked pixels that are not hits but carry 3 σ of star light, and
  of them those in a star core (≥ half its peak);
- other false: masked pixels that are neither;
- M px/s: frame pixels per CPU second of the process (the detectors are
  single-threaded NumPy / C; ``OMP_NUM_THREADS=1``), i.e. per core, best of 3.

``--px-per-star 2500`` gives the star density of the project's synthetic surveys.

Run::

    OMP_NUM_THREADS=1 python -m benchmarks.cosmic_frames [--size 1024] [--methods sharp,lacosmic]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SATURATION = 50000.0
SHAPES = ([(0, 0)], [(0, 0), (0, 1)], [(0, 0), (1, 1)], [(0, 0), (1, 0), (2, 0)])


def field(size: int, fwhm: float, seed: int = 0, px_per_star: int = 330):
    """Frame with hits, the hit mask, the star-light map (ADU above the sky) and σ map."""
    from zemosaic_xp.synthetic import render_sky

    rng = np.random.default_rng(seed)
    n_stars = size * size // px_per_star
    sky = render_sky((size, size), rng=rng, sky_level=1000.0, gradient=0.0, n_stars=n_stars,
                     star_peak=(320.0, 500000.0), star_fwhm_px=fwhm).astype(np.float64)
    sigma = np.sqrt(sky + 25.0)
    frame = sky + sigma * rng.standard_normal(sky.shape)
    hits = np.zeros(sky.shape, dtype=bool)
    for k in range(800):
        y, x = int(rng.integers(1, size - 3)), int(rng.integers(1, size - 3))
        amp = float(np.exp(rng.uniform(np.log(300.0), np.log(30000.0))))
        for dy, dx in SHAPES[k % len(SHAPES)]:
            frame[y + dy, x + dx] += amp
            hits[y + dy, x + dx] = True
    return np.minimum(frame, SATURATION).astype(np.float32), hits, sky - 1000.0, sigma


def measure(size: int = 1024, fwhms=(2.0, 2.5, 3.0, 4.0), methods=("sharp", "lacosmic"), repeat: int = 3,
            px_per_star: int = 330):
    """One row per (FWHM, method); see the module docstring."""
    from scipy.ndimage import maximum_filter

    from zemosaic_xp.io.cosmic import cosmic_mask

    rows = []
    for fwhm in fwhms:
        frame, hits, star, sigma = field(size, fwhm, px_per_star=px_per_star)
        starry = star > 3 * 31.6
        core = star >= 0.5 * maximum_filter(star, size=int(2 * fwhm) | 1)
        core &= starry
        on_sky = hits & ~starry
        for method in methods:
            best = np.inf
            for _ in range(repeat if method == "sharp" else 1):
                t0 = time.process_time()  # CPU seconds: per core, whatever else loads the machine
                mask = cosmic_mask(frame, method=method)
                best = min(best, time.process_time() - t0)
            rows.append({"fwhm": fwhm, "method": method,
                         "found": (mask & hits).sum() / hits.sum(),
                         "found_sky": (mask & on_sky).sum() / on_sky.sum(),
                         "star_px": int((mask & starry & ~hits).sum()),
                         "core_px": int((mask & core & ~hits).sum()),
                         "other": int((mask & ~starry & ~hits).sum()),
                         "mpx_s": size * size / best / 1e6})
    return rows


def table(rows) -> str:
    """Markdown table of :func:`measure`'s rows."""
    lines = ["| FWHM (px) | detector | hits found (all / on sky) | star px flagged (core) | other false px "
             "| M px/s per core |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['fwhm']:g} | {r['method']} | {100 * r['found']:.1f} % / {100 * r['found_sky']:.1f} % "
                     f"| {r['star_px']} ({r['core_px']}) | {r['other']} | {r['mpx_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--methods", default="sharp,lacosmic")
    parser.add_argument("--fwhm", default="2,2.5,3,4")
    parser.add_argument("--px-per-star", type=int, default=330)
    args = parser.parse_args()
    rows = measure(args.size, tuple(float(v) for v in args.fwhm.split(",")), tuple(args.methods.split(",")),
                   px_per_star=args.px_per_star)
    print(table(rows))


if __name__ == "__main__":
    main()
