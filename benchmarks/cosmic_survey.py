"""Outliers left in a grid mosaic of a shallow synthetic survey, by depth, with and without ``cosmic``.

A survey of ``--frames`` frames on a 3 × 3 pointing pattern (4 exposures per pointing
with the defaults, neighbouring pointings overlapping by ``1 - step`` of a frame), cosmic
rays on ~0.08 % of the pixels of every frame and ``--trails`` satellite trails [1], goes through
``run_grid_mode`` once per ``cosmic`` mode (and rejection). A mosaic pixel is an
outlier left when, in the sky background (no star within 5 px), its residual against
the truth (after one global gain/offset fit) exceeds 5 σ/√depth, σ being the noise of
one frame; depth = the frames covering the pixel (the coverage map of the run without
masks). An injected hit counts as left when an outlier lies within 1 px of where it
falls on the mosaic. Run::

    python -m benchmarks.cosmic_survey [--frames 36] [--size 192] [--workers 1] [--trails 1] [--demo]

It prints one Markdown table (docs/algorithms.md, "Cosmic rays").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = (("1", 1, 1), ("2-4", 2, 4), (">=5", 5, 10**6))


def _mosaic(survey, out: Path, config: dict, workers: int):
    from astropy.io import fits
    from astropy.wcs import WCS

    from zemosaic_xp import run_grid_mode

    t0 = time.perf_counter()
    result = run_grid_mode(survey.folder, out, config={"grid_size_factor": 1.0, "grid_workers": workers, **config})
    seconds = time.perf_counter() - t0
    with fits.open(result.mosaic_path) as hdul:
        image = np.asarray(hdul[0].data, dtype=np.float32)
        wcs = WCS(hdul[0].header, naxis=2)
    coverage = np.asarray(fits.getdata(result.coverage_path), dtype=np.float32)
    return image[0] if image.ndim == 3 else image, wcs, coverage, seconds  # colour: CHW, channel 0


def _hit_positions(survey, wcs) -> np.ndarray:
    """Mosaic pixel (y, x) of every injected outlier pixel, rounded."""
    points = []
    for i in range(survey.n_frames):
        ys, xs = np.nonzero(survey.outliers[i])
        ra, dec = survey.frame_wcs[i].pixel_to_world_values(xs, ys)
        mx, my = wcs.world_to_pixel_values(ra, dec)
        points.append(np.stack([np.rint(my), np.rint(mx)], axis=1))
    return np.concatenate(points).astype(int)


def measure(frames: int = 36, size: int = 192, workers: int = 1, seed: int = 5, step: float = 0.8,
            trails: int = 1, runs: tuple = (), demo: bool = False) -> list[dict]:
    """Run the survey once per entry of ``runs`` and count the outliers left by depth.

    ``demo``: the survey of ``zemosaic-xp demo`` instead (its defaults, RGB, seed 0).
    """
    from scipy.ndimage import maximum_filter, median_filter

    from tests.grid.helpers import fit_linear, truth_on
    from zemosaic_xp.synthetic import make_survey

    runs = runs or (("off", {}), ("auto", {"cosmic": "auto"}), ("always", {"cosmic": "always"}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if demo:
            from zemosaic_xp.cli.demo_cmd import _DEMO

            survey = make_survey(tmp / "survey", n_frames=_DEMO["n_frames"], frame_shape=_DEMO["frame_shape"],
                                 grid=_DEMO["grid"], rgb=True, seed=0)
        else:
            survey = make_survey(tmp / "survey", n_frames=frames, frame_shape=(size, size), grid=(3, 3),
                                 step_fraction=step, cosmic_rays_per_frame=max(1, round(0.0008 * size * size)),
                                 trails=trails, seed=seed)
        depth = None
        for k, (name, config) in enumerate(runs):
            image, wcs, coverage, seconds = _mosaic(survey, tmp / f"out{k}", config, workers)
            if depth is None:
                depth = coverage
                truth = truth_on(survey, wcs, image.shape)[..., 0]
                background = maximum_filter(truth - median_filter(truth, 15), 11) < 20
                hits = _hit_positions(survey, wcs)
                inside = ((hits[:, 0] >= 0) & (hits[:, 0] < image.shape[0]) & (hits[:, 1] >= 0)
                          & (hits[:, 1] < image.shape[1]))
                hits = hits[inside]
                hits = hits[background[hits[:, 0], hits[:, 1]]]
            fit = background & np.isfinite(image) & (depth >= 2)
            gain, offset = fit_linear(image, truth, fit)
            resid = image - gain * truth - offset
            limit = 5 * survey.noise_sigma / np.sqrt(np.maximum(depth, 1))
            outlier = background & np.isfinite(resid) & (np.abs(resid) > limit)
            near = maximum_filter(outlier, 3)
            holes = background & (depth > 0) & ~np.isfinite(image)
            row = {"run": name, "seconds": seconds, "holes_px": int(holes.sum())}
            for label, lo, hi in BANDS:
                band = (depth >= lo) & (depth <= hi)
                at = band[hits[:, 0], hits[:, 1]]
                row[f"px_{label}"] = int((outlier & band).sum())
                row[f"hits_{label}"] = int(at.sum())
                row[f"left_{label}"] = int(near[hits[at, 0], hits[at, 1]].sum())
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of :func:`measure`'s rows."""
    head = ("| run | outlier px, depth 1 / 2–4 / ≥ 5 | hits left, depth 1 | hits left, depth 2–4 | "
            "hits left, depth ≥ 5 | holes (px) | grid run (s) |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[f'left_{b}']} / {r[f'hits_{b}']}" for b, _, _ in BANDS]
        lines.append(f"| {r['run']} | {r['px_1']} / {r['px_2-4']} / {r['px_>=5']} | " + " | ".join(cells)
                     + f" | {r['holes_px']} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--step", type=float, default=0.8)
    parser.add_argument("--trails", type=int, default=1, help="frames crossed by a satellite trail")
    parser.add_argument("--demo", action="store_true", help="the survey of `zemosaic-xp demo` (RGB) instead")
    args = parser.parse_args()
    print(table(measure(args.frames, args.size, args.workers, args.seed, args.step, args.trails, demo=args.demo)))


if __name__ == "__main__":
    main()
