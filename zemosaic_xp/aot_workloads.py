"""The representative stacks of the kernels' ahead-of-time build (``zemosaic-xp build-kernels``).

Run once with numba's JIT, they make it compile every kernel the NumPy backend calls
with the argument types of real stacks; run again with the built module, their outputs
must be the same bits. They go through the public entry points, as users do:

- classic master tiles from 16-bit FITS (BZERO 32768, the band kernels decode the
  stored samples) and float32 FITS, 16 frames (sorting network) and 52 (NumPy's sort),
  every rejection with a mean, every combine, both WSC flavours, and the default
  configuration (paired-fit normalisation, noise weights);
- in-memory ``stack()`` of float32 frames: unweighted, with user frame and per-pixel
  weights, the radial weight, ZeMosaic's WSC with weights (the NumPy ops' row kernels);
- grid cells (``NumpyOps.block_stacker``, samples last, per-sample weights) and the
  grid's bilinear reprojection samples;
- medians of rows as long as a frame's statistics sample (the sampled selection).

Small frames (about a second in all once compiled). It sits at the top of the package
(it calls the adapters); :func:`zemosaic_xp.backends.numba.aot_build.build` receives
:func:`run_all` from its callers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_all"]

_SHAPE = (24, 40)
_REJECTIONS = ("none", "kappa_sigma", "winsorized_sigma_clip", "percentile", "mad", "minmax", "gesd",
               "linear_fit_clip", "winsorized_quantile", "auto")
_PEER = {"normalize": "none", "weighting": "none"}  # what Siril's `stack ... -nonorm` compares with


def _frames(n: int, seed: int) -> np.ndarray:
    """``n`` frames of :func:`~zemosaic_xp.synthetic.make_stack` (stars, gains, offsets, cosmic
    rays, a trail, a NaN quarter in the last frame), rounded to whole ADU, float32."""
    from .synthetic import make_stack

    return np.round(make_stack(n, _SHAPE, seed=seed, n_stars=5).frames)


def _write(folder: Path, frames: np.ndarray, kind: str) -> list[str]:
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, frame in enumerate(frames):
        path = folder / f"{kind}_{k:03d}.fits"
        if kind == "u16":
            stored = np.clip(np.nan_to_num(frame, nan=0.0), 0, 65535).astype(np.int32) - 32768  # 16 bits: no NaN
            hdu = fits.PrimaryHDU(stored.astype(np.int16))
            hdu.header["BZERO"] = 32768
            hdu.header["BSCALE"] = 1
        else:
            hdu = fits.PrimaryHDU(frame)
        hdu.writeto(path, overwrite=True)
        paths.append(str(path))
    return paths


def _tile(paths: list[str], **config: Any) -> list[np.ndarray]:
    from .classic.master_tile import stack_master_tile
    from .core.config import StackConfig

    result = stack_master_tile(paths, StackConfig(**config), backend="numpy")
    return [np.asarray(a) for a in (result.image, result.coverage, result.uncertainty) if a is not None]


def _stack(frames: np.ndarray, weights: Any = None, **config: Any) -> list[np.ndarray]:
    from .api import stack
    from .core.config import StackConfig

    result = stack(frames, config=StackConfig(**config), weights=weights, backend="numpy")
    names = ("image", "weight_sum", "coverage", "rejected_low", "rejected_high", "uncertainty")
    return [np.asarray(getattr(result, name)) for name in names if getattr(result, name) is not None]


def _cells(n: int, seed: int, **config: Any) -> list[np.ndarray]:
    from .backends.numpy_xp import numpy_namespace
    from .backends.ops_numpy import NumpyOps
    from .core.config import StackConfig
    from .core.pipeline import FramePlan

    rng = np.random.default_rng(seed)
    values = np.ascontiguousarray(np.moveaxis(_frames(n, seed), 0, -1)[:, :, None, :])  # (h, w, 1, N)
    values[rng.random(values.shape) < 0.05] = np.nan
    weights = rng.uniform(0.5, 1.0, values.shape).astype(np.float32)
    plan = FramePlan(np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32),
                     rng.uniform(0.5, 1.0, (n, 1)).astype(np.float32), {}, identity=True)
    conf = StackConfig(**config)
    stacker = NumpyOps(numpy_namespace()).block_stacker(conf, plan)
    if stacker is None:
        return []
    shape = values.shape[:3]
    out = (np.empty(shape, np.float32), np.empty(shape, np.float32), *(np.empty(shape, np.int32) for _ in range(3)),
           np.empty(shape, np.float32))
    counts = stacker(values, weights, plan, out)
    return [*out, np.asarray(counts, np.int64)]


def _samples(clip: bool) -> list[np.ndarray]:
    """The grid's bilinear samples (``point_threads.sample_planes``): a read-only plane, as the
    frame cache hands them out, and a writable one (hit maps), at float64 points."""
    from .grid.point_threads import sample_planes

    rng = np.random.default_rng(3)
    cached = rng.normal(100.0, 5.0, _SHAPE).astype(np.float32)
    cached[3:5, 7:9] = np.nan
    cached.flags.writeable = False
    hits = np.zeros(_SHAPE, np.float32)
    hits[10, 10] = 1.0
    ys = rng.uniform(-1.0, _SHAPE[0], 500)
    xs = rng.uniform(-1.0, _SHAPE[1], 500)
    out = np.empty((2, ys.size), np.float32)
    sample_planes([cached, hits], ys, xs, list(out), [np.nan, 0.0], clip=clip)
    return [out]


def _long_medians() -> list[np.ndarray]:
    """Medians of rows as long as frame statistics' (the sampled selection's ``split_row``)."""
    from .backends.numpy_xp import numpy_namespace
    from .backends.select_numpy import SAMPLED_MIN_N, median_packed

    rng = np.random.default_rng(5)
    buf = rng.normal(1000.0, 30.0, (2, SAMPLED_MIN_N)).astype(np.float32)
    return [median_packed(buf, np.array([SAMPLED_MIN_N, SAMPLED_MIN_N - 1]), numpy_namespace())]


def _cases(folder: Path) -> dict[str, Callable[[], list[np.ndarray]]]:
    cases: dict[str, Callable[[], list[np.ndarray]]] = {"long-medians": _long_medians}
    for clip in (False, True):
        cases[f"grid-samples/clip={clip}"] = lambda c=clip: _samples(c)
    for n in (16, 52):
        frames = _frames(n, n)
        u16 = _write(folder / f"u16_{n}", frames, "u16")
        f32 = _write(folder / f"f32_{n}", frames, "f32")
        for reject in _REJECTIONS:
            cases[f"u16/{n}/{reject}"] = lambda p=u16, r=reject: _tile(p, reject=r, **_PEER)
        for combine in ("median", "sum", "min", "max"):
            cases[f"u16/{n}/none-{combine}"] = lambda p=u16, c=combine: _tile(p, reject="none", combine=c, **_PEER)
        cases[f"u16/{n}/wsc-zemosaic"] = lambda p=u16: _tile(p, wsc_impl="zemosaic", **_PEER)
        cases[f"u16/{n}/default"] = lambda p=u16: _tile(p)
        cases[f"f32/{n}/kappa_sigma"] = lambda p=f32: _tile(p, reject="kappa_sigma", **_PEER)
        cases[f"f32/{n}/default"] = lambda p=f32: _tile(p)
        cases[f"stack/{n}/gesd"] = lambda f=frames: _stack(f, reject="gesd", **_PEER)
        cases[f"stack/{n}/default"] = lambda f=frames: _stack(f)
        weights = np.random.default_rng(n).uniform(0.5, 1.0, frames.shape).astype(np.float32)
        cases[f"stack/{n}/pixel-weights"] = lambda f=frames, w=weights: _stack(f, w, reject="kappa_sigma")
        per_frame = weights[:, 0, 0].copy()
        cases[f"stack/{n}/frame-weights"] = lambda f=frames, w=per_frame: _stack(f, w)
        cases[f"stack/{n}/radial"] = lambda f=frames: _stack(f, radial_weight=True)
        cases[f"stack/{n}/wsc-zemosaic-weighted"] = lambda f=frames: _stack(f, wsc_impl="zemosaic")
        for reject in ("gesd", "winsorized_sigma_clip", "kappa_sigma"):
            cases[f"cells/{n}/{reject}"] = lambda k=n, r=reject: _cells(k, k + 1, reject=r)
    return cases


def run_all(folder: Path) -> dict[str, list[np.ndarray]]:
    """Run every representative stack; write its frames under ``folder`` first.

    Parameters
    ----------
    folder : Path
        Scratch folder for the FITS frames (rewritten at each call).

    Returns
    -------
    dict
        Case name → its output arrays (images, weights, counts, uncertainty maps).
    """
    return {name: case() for name, case in _cases(folder).items()}
