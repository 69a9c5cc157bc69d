"""Normalisation precision: gains from noise alone, star fluxes, and real gain/offset/gradient recovery.

Frames are a dense synthetic star field (:func:`zemosaic_xp.synthetic.render_sky`: flat
1000 ADU sky, one star per 330 px², FWHM 2.5 px, peaks log-uniform 320–500 000 ADU
clipped at 50 000 ADU like a saturated sensor), Poisson + 5 ADU read noise. Each
estimator's gains and offsets come from
:func:`zemosaic_xp.core.normalize.normalization` on the sub-samples ``stack()`` uses
(``frame_stats_samples`` = 65 536: every pixel of a 256² frame, every 16th of a 1024²
one); reference = frame 0.

Cases (8 frames each, seeds 0…``--seeds``−1):

- ``noise``: the frames differ only by noise. Reported: the largest |gain − 1| of any
  frame, and the change of star fluxes in the mean stack, normalised against
  un-normalised (aperture 5 px, sky from the 8–12 px annulus median, unsaturated stars
  with peaks 1 000–30 000 ADU): mean and worst over stars and seeds;
- ``gain``: frame i is ``g_i·x + o_i`` (g uniform in [0.8, 1.2], o in ±200 ADU, then
  clipped at 50 000 ADU); reported: largest |gain·g_i − 1| and |offset + o_i/g_i| (ADU);
- ``gradient``: as ``gain`` plus a linear sky gradient of 0–300 ADU peak to peak in a
  random direction, different in every frame;
- ``sparse``: :func:`zemosaic_xp.synthetic.make_stack` (128², 40 stars, gradient shared,
  gains ±30 %, offsets ±200 ADU, cosmic rays, a trail and a NaN quarter);
- ``no stars``: flat sky and noise only, nothing to pair on (``linear_fit`` keeps its
  percentile start there).

``percentile`` is the former ``linear_fit`` (25th/90th percentiles matched, ZeMosaic's
rule), which is now the paired fit's start.

Run::

    python -m benchmarks.norm_precision [--seeds 5] [--sizes 256,1024]

It prints the Markdown table of docs/algorithms.md ("Normalisation precision").
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SATURATION = 50000.0
METHODS = ("percentile", "linear_fit", "additive_scaling", "multiplicative")
FWHM = 2.5


def dense(size: int, n: int = 8, *, seed: int = 0, gains=None, offsets=None, gradients=None,
          stars: bool = True):
    """Frames ``(n, size, size)`` float32 and the stars ``(y, x, peak)`` of the field."""
    from zemosaic_xp.synthetic import render_sky

    n_stars = size * size // 330 if stars else 0
    replay = np.random.default_rng(seed)  # render_sky draws angle, ys, xs, peaks in this order
    replay.uniform(0, 2 * np.pi)
    star_yx = np.stack([replay.uniform(0, size, n_stars), replay.uniform(0, size, n_stars),
                        np.exp(replay.uniform(np.log(320.0), np.log(500000.0), n_stars))], axis=1)
    rng = np.random.default_rng(seed)
    truth = render_sky((size, size), rng=rng, sky_level=1000.0, gradient=0.0, n_stars=n_stars,
                       star_peak=(320.0, 500000.0), star_fwhm_px=FWHM).astype(np.float64)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    frames = np.empty((n, size, size), dtype=np.float32)
    for i in range(n):
        x = truth + np.sqrt(truth + 25.0) * rng.standard_normal(truth.shape)
        g = 1.0 if gains is None else gains[i]
        o = 0.0 if offsets is None else offsets[i]
        grad = 0.0 if gradients is None else gradients[i]
        angle = rng.uniform(0, 2 * np.pi)
        # A gain (transparency, exposure) scales the light the sensor then clips.
        frames[i] = np.minimum(g * x + o + grad * (np.cos(angle) * xx + np.sin(angle) * yy), SATURATION)
    return frames, star_yx


def gains_offsets(frames: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` gains and offsets of ``method`` (``percentile`` = the former linear_fit)."""
    import array_api_compat.numpy as xp

    from zemosaic_xp import StackConfig
    from zemosaic_xp.core.frames import FrameStack
    from zemosaic_xp.core.framestats import FrameSamples
    from zemosaic_xp.core.normalize import _percentile_match, normalization

    config = StackConfig(normalize="linear_fit" if method == "percentile" else method)
    stats = FrameSamples(FrameStack(frames).samples(config.frame_stats_samples), xp=xp)
    if method == "percentile":
        g, o = _percentile_match(stats, 0)
    else:
        g, o = normalization(stats, config)
    return np.asarray(g, dtype=np.float64)[:, 0], np.asarray(o, dtype=np.float64)[:, 0]


def star_fluxes(image: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """Aperture (5 px) fluxes minus the 8–12 px annulus median, unsaturated stars only."""
    h, w = image.shape
    out = []
    for y, x, peak in stars:
        if not 1000.0 <= peak <= 30000.0 or not (13 <= y < h - 13 and 13 <= x < w - 13):
            continue
        y0, x0 = int(y) - 13, int(x) - 13
        cut = image[y0:y0 + 27, x0:x0 + 27]
        yy, xx = np.mgrid[y0:y0 + 27, x0:x0 + 27]
        r = np.hypot(yy - y, xx - x)
        sky = np.median(cut[(r >= 8) & (r < 12)])
        ap = r < 5
        out.append(float(np.sum(cut[ap] - sky)))
    return np.asarray(out)


def measure(sizes=(256, 1024), seeds: int = 5, methods=METHODS) -> dict:
    """``{case: {method: (value, ...)}}``; see the module docstring."""
    out: dict = {}
    for size in sizes:
        worst_g = {m: 0.0 for m in methods}
        flux = {m: [] for m in methods}
        for seed in range(seeds):
            frames, stars = dense(size, seed=seed)
            plain = star_fluxes(frames.mean(axis=0), stars)
            for m in methods:
                g, o = gains_offsets(frames, m)
                worst_g[m] = max(worst_g[m], float(np.max(np.abs(g - 1))))
                normed = (g[:, None, None] * frames + o[:, None, None]).mean(axis=0)
                flux[m].extend(star_fluxes(normed, stars) / plain - 1)
        out[f"noise {size}²"] = {m: (worst_g[m], float(np.mean(flux[m])), float(np.max(np.abs(flux[m]))))
                                 for m in methods}
    rng = np.random.default_rng(100)
    for case in ("gain", "gradient"):
        worst = {m: [0.0, 0.0] for m in methods}
        for seed in range(seeds):
            g_true = rng.uniform(0.8, 1.2, 8)
            o_true = rng.uniform(-200, 200, 8)
            g_true[0], o_true[0] = 1.0, 0.0
            grads = rng.uniform(0, 300, 8) if case == "gradient" else None
            frames, _ = dense(256, seed=seed, gains=g_true, offsets=o_true, gradients=grads)
            for m in methods:
                g, o = gains_offsets(frames, m)
                worst[m][0] = max(worst[m][0], float(np.max(np.abs(g * g_true - 1))))
                worst[m][1] = max(worst[m][1], float(np.max(np.abs(o + o_true * g))))
        out[case] = {m: tuple(v) for m, v in worst.items()}
    from zemosaic_xp.synthetic import make_stack

    worst = {m: 0.0 for m in methods}
    for seed in range(seeds):
        s = make_stack(n_frames=8, shape=(128, 128), seed=seed, gain_spread=0.3, offset_spread=200.0)
        for m in methods:
            g, _ = gains_offsets(s.frames, m)
            worst[m] = max(worst[m], float(np.max(np.abs(g * s.gains - 1))))
    out["sparse"] = {m: (v,) for m, v in worst.items()}
    worst = {m: 0.0 for m in methods}
    for seed in range(seeds):
        frames, _ = dense(256, seed=seed, stars=False)
        for m in methods:
            g, _ = gains_offsets(frames, m)
            worst[m] = max(worst[m], float(np.max(np.abs(g - 1))))
    out["no stars"] = {m: (v,) for m, v in worst.items()}
    return out


def _cost(size: int = 1024, repeat: int = 3) -> dict:
    """CPU seconds of the normalisation of 8 frames, best of ``repeat``, per method."""
    frames, _ = dense(size)
    out = {}
    for m in METHODS:
        best = np.inf
        for _ in range(repeat):
            t0 = time.process_time()
            gains_offsets(frames, m)
            best = min(best, time.process_time() - t0)
        out[m] = best
    return out


def table(result: dict, cost: dict | None = None) -> str:
    """The Markdown table of docs/algorithms.md."""
    methods = list(next(iter(result.values())))
    lines = ["| case | metric | " + " | ".join(f"`{m}`" for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for case, row in result.items():
        if case.startswith("noise"):
            metrics = [("max \\|gain − 1\\| %", 0, 100), ("star flux change, mean %", 1, 100),
                       ("star flux change, worst %", 2, 100)]
        elif case in ("gain", "gradient"):
            metrics = [("max gain error %", 0, 100), ("max offset error ADU", 1, 1)]
        else:
            metrics = [("max gain error %", 0, 100)]
        for name, k, scale in metrics:
            cells = [f"{row[m][k] * scale:+.3f}" if "mean" in name else f"{row[m][k] * scale:.3f}" for m in methods]
            lines.append(f"| {case} | {name} | " + " | ".join(cells) + " |")
    if cost:
        lines.append("| 8 × 1024², 65 536 samples | CPU s (best of 3) | "
                     + " | ".join(f"{cost[m]:.2f}" for m in methods) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    """Command line: print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--no-cost", action="store_true", help="skip the CPU-time row")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)
    result = measure(sizes=sizes, seeds=args.seeds)
    print(table(result, None if args.no_cost else _cost()))


if __name__ == "__main__":
    main()
