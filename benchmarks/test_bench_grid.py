"""Grid mode vs ``reproject_and_coadd``: the demo survey mosaicked three ways, in one run.

- ``grid`` with 1 worker (in this process) and with 2 worker processes (spawn start-up
  included), default settings but ``kappa_sigma`` rejection (linear_fit, noise_variance,
  kappa_sigma, mean; the grid default is ``mad``, ~1.5x slower to stack);
- ``reproject_and_coadd(combine_function="mean")`` of the same frames onto the same
  output WCS and shape (one call per channel, as it only takes 2-D images), no
  background matching, no rejection.

Full size (the ``zemosaic-xp demo`` survey: 40 RGB frames of 384x384) with
``ZEMOSAIC_BENCH_FULL=1``; a tiny survey otherwise, so ``--benchmark-disable`` runs stay
quick. ``test_report`` prints the wall times and the two ratios the issue targets
(2 workers ≥ 1.6x 1 worker; grid ≥ 1.5x faster than reproject_and_coadd(mean)).
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from zemosaic_xp import run_grid_mode
from zemosaic_xp.io.fits import read_frame
from zemosaic_xp.synthetic import make_survey

FULL = os.environ.get("ZEMOSAIC_BENCH_FULL") == "1"
SURVEY = ({"n_frames": 40, "frame_shape": (384, 384), "grid": (3, 5), "rgb": True} if FULL else
          {"n_frames": 8, "frame_shape": (64, 64), "grid": (2, 2), "rgb": False})
ROUNDS = 3 if FULL else 1
_WALL: dict[str, float] = {}


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return make_survey(tmp_path_factory.mktemp("bench_grid"), seed=0, **SURVEY)


@pytest.fixture(scope="module")
def target(survey, tmp_path_factory):
    """Output WCS and shape of the grid's canvas (reproject_and_coadd uses the same)."""
    result = run_grid_mode(survey.folder, tmp_path_factory.mktemp("probe"))
    with fits.open(result.mosaic_path) as hdul:
        return WCS(hdul[0].header, naxis=2), result.mosaic_shape


def _timed(name, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    wall = time.perf_counter() - t0
    _WALL[name] = min(wall, _WALL.get(name, float("inf")))
    return out


def _grid(survey, out, workers):
    return run_grid_mode(survey.folder, out, grid_workers=workers, resume=False,
                         config={"stacking_rejection_algorithm": "kappa_sigma"})


@pytest.mark.benchmark(group="grid")
@pytest.mark.parametrize("workers", [1, 2], ids=["grid-1-worker", "grid-2-workers"])
def test_grid_mode(benchmark, survey, tmp_path, workers):
    name = f"grid-{workers}w"
    result = benchmark.pedantic(_timed, args=(name, _grid, survey, tmp_path, workers), rounds=ROUNDS,
                                iterations=1)
    assert result.failed_tiles == {} and result.tiles_processed == result.tiles_total
    benchmark.extra_info.update(tiles=result.tiles_total, frames=result.n_frames, workers=workers)


def _coadd(survey, wcs, shape):
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    frames = [read_frame(p).data for p in survey.frame_paths]
    planes = []
    for c in range(frames[0].shape[2]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            image, _ = reproject_and_coadd([(f[..., c], w) for f, w in zip(frames, survey.frame_wcs)], wcs,
                                           shape_out=shape, reproject_function=reproject_interp,
                                           combine_function="mean")
        planes.append(image)
    return np.stack(planes, axis=-1)


@pytest.mark.benchmark(group="grid")
def test_reproject_and_coadd_mean(benchmark, survey, target):
    wcs, shape = target
    image = benchmark.pedantic(_timed, args=("reproject_and_coadd-mean", _coadd, survey, wcs, shape),
                               rounds=ROUNDS, iterations=1)
    assert image.shape[:2] == tuple(shape)


def test_report(benchmark, capsys):
    """Wall times (best round) and the ratios; recorded in extra_info, printed with -s."""
    if not {"grid-1w", "grid-2w", "reproject_and_coadd-mean"} <= set(_WALL):
        pytest.skip("run with the other grid benchmarks")
    one, two, coadd = _WALL["grid-1w"], _WALL["grid-2w"], _WALL["reproject_and_coadd-mean"]
    report = {"grid_1_worker_sec": one, "grid_2_workers_sec": two, "reproject_and_coadd_mean_sec": coadd,
              "speedup_2_vs_1_workers": one / two, "grid_2w_vs_coadd": coadd / two,
              "grid_1w_vs_coadd": coadd / one, "full_size": FULL}
    benchmark.extra_info.update(report)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    with capsys.disabled():
        print("\n[grid benchmark] " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in report.items()))
