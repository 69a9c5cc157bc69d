"""Grid runs with ``weighting="uncertainty"``: each frame's UNCERT variances reprojected with the data.

Known answer: frames of constant sky with known σ give the inverse-variance weighted mean
wherever they overlap (not the plain mean); an unusable σ (0, inf) is no weight there; a
frame without UNCERT is an error naming it before any tile; 1 and 2 workers agree bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance, StdDevUncertainty
from astropy.wcs import WCS

from zemosaic_xp import GridConfig, run_grid_mode
from zemosaic_xp.grid.config import grid_stack_config

from .frames_util import SCALE_DEG, tan_wcs

_SHAPE = (28, 36)
_VALUES = (100.0, 130.0, 170.0)
_SIGMAS = (1.0, 2.0, 4.0)
_SHIFTS = ((0, 0), (5, 4), (9, -3))  # (columns, rows) of each frame from the first


def _config(**kw) -> GridConfig:
    stack = grid_stack_config(normalize="none", weighting="uncertainty", reject="none", combine="mean")
    return GridConfig(grid_size_factor=1.0, overlap_fraction=0.2, stack=stack, match_photometry=False, **kw)


def _wcs(i: int) -> WCS:
    dx, dy = _SHIFTS[i]
    return tan_wcs(150.0 + dx * SCALE_DEG / np.cos(np.radians(30.0)), 30.0 + dy * SCALE_DEG, _SHAPE)


def _plan(folder, paths) -> None:
    lines = ["file_path,exposure"] + [f"{p.name},10.0" for p in paths]
    (folder / "stack_plan.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _mono_survey(folder, *, sigmas=None, uncert=(True, True, True)):
    """Three CCDData.write frames of constant sky; σ maps from ``sigmas`` (default constant)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, value in enumerate(_VALUES):
        sigma = np.full(_SHAPE, _SIGMAS[i]) if sigmas is None else sigmas[i]
        if not uncert[i]:
            unc = None
        elif i == 2:  # one frame stores its inverse variances
            with np.errstate(divide="ignore"):
                unc = InverseVariance(1.0 / sigma**2)
        else:
            unc = StdDevUncertainty(sigma)
        ccd = CCDData(np.full(_SHAPE, value, np.float32), unit="adu", wcs=_wcs(i), uncertainty=unc)
        path = folder / f"frame_{i:03d}.fits"
        ccd.write(path, overwrite=True)
        paths.append(path)
    _plan(folder, paths)
    return paths


def _rgb_survey(folder, channel_sigmas):
    """Three RGB frames (CHW) with a VarianceUncertainty UNCERT: σ differs per channel."""
    datas = [np.stack([np.full(_SHAPE, value * (1.0 + 0.1 * c), np.float32) for c in range(3)]) for value in _VALUES]
    variances = [np.stack([np.full(_SHAPE, sig[c] ** 2, np.float32) for c in range(3)]) for sig in channel_sigmas]
    return _write_planes(folder, datas, variances, "VarianceUncertainty")


def _write_planes(folder, datas, uncerts, utype):
    """Frames i of CHW ``datas[i]`` with an UNCERT ``uncerts[i]`` of ``utype``, and the plan."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (data, values) in enumerate(zip(datas, uncerts)):
        unc = fits.ImageHDU(np.asarray(values, np.float32), name="UNCERT")
        unc.header["UTYPE"] = utype
        path = folder / f"frame_{i:03d}.fits"
        fits.HDUList([fits.PrimaryHDU(data, header=_wcs(i).to_header()), unc]).writeto(path)
        paths.append(path)
    _plan(folder, paths)
    return paths


def _mosaic(result) -> tuple[np.ndarray, WCS]:
    with fits.open(result.mosaic_path) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float64)
        wcs = WCS(hdul[0].header).celestial
    return (data[None] if data.ndim == 2 else data), wcs


def _expected(mosaic_wcs: WCS, shape: tuple[int, int], values, ivars, valid=None):
    """Inverse-variance mean per mosaic pixel, NaN where a frame's stencil is ambiguous (an edge,
    the border of an unusable σ) or no frame covers; ``ivars[i]`` is (C,) per frame."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    ra, dec = mosaic_wcs.pixel_to_world_values(xx, yy)
    num = np.zeros((len(ivars[0]), h, w))
    den = np.zeros_like(num)
    ambiguous = np.zeros((h, w), bool)
    for i in range(len(values)):
        fx, fy = _wcs(i).world_to_pixel_values(ra, dec)
        inside = (fx >= 1) & (fx <= _SHAPE[1] - 2) & (fy >= 1) & (fy <= _SHAPE[0] - 2)
        near = (fx > -2) & (fx < _SHAPE[1] + 1) & (fy > -2) & (fy < _SHAPE[0] + 1)
        ambiguous |= near & ~inside
        use = inside.copy()
        if valid is not None and valid[i] is not None:
            ok = np.pad(valid[i], 1)
            r, c = np.rint(fy[inside]).astype(int) + 1, np.rint(fx[inside]).astype(int) + 1
            block = np.stack([ok[r + a, c + b] for a in (-1, 0, 1) for b in (-1, 0, 1)])
            all_ok, none_ok = block.all(axis=0), ~block.any(axis=0)
            amb = np.zeros((h, w), bool)
            amb[inside] = ~(all_ok | none_ok)
            ambiguous |= amb
            use[inside] = all_ok
        for ch, iv in enumerate(ivars[i]):
            num[ch][use] += iv * values[i][ch]
            den[ch][use] += iv
    with np.errstate(invalid="ignore"):
        out = num / den
    out[:, ambiguous | (den[0] == 0)] = np.nan
    return out


def _overlap_of_all(mosaic_wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    ra, dec = mosaic_wcs.pixel_to_world_values(xx, yy)
    every = np.ones((h, w), bool)
    for i in range(len(_VALUES)):
        fx, fy = _wcs(i).world_to_pixel_values(ra, dec)
        every &= (fx >= 1) & (fx <= _SHAPE[1] - 2) & (fy >= 1) & (fy <= _SHAPE[0] - 2)
    return every


def test_mono_mosaic_is_the_inverse_variance_mean(tmp_path):
    _mono_survey(tmp_path / "in")
    result = run_grid_mode(tmp_path / "in", tmp_path / "out", config=_config())
    assert result.tiles_processed == result.tiles_total > 1
    mosaic, mwcs = _mosaic(result)
    expected = _expected(mwcs, mosaic.shape[1:], [(v,) for v in _VALUES], [(s**-2,) for s in _SIGMAS])
    checked = np.isfinite(expected)
    assert checked.sum() > 200
    np.testing.assert_allclose(mosaic[checked], expected[checked], rtol=2e-6)
    every = _overlap_of_all(mwcs, mosaic.shape[1:])
    assert every.sum() > 50
    ivw = sum(v / s**2 for v, s in zip(_VALUES, _SIGMAS)) / sum(s**-2 for s in _SIGMAS)
    np.testing.assert_allclose(mosaic[0][every], ivw, rtol=2e-6)
    assert abs(ivw - np.mean(_VALUES)) > 20  # not the plain mean
    with fits.open(result.mosaic_path) as hdul:
        assert hdul[0].header["ZMT_WGHT"] == "uncertainty"


def test_unusable_sigma_gets_no_weight(tmp_path):
    sigmas = [np.full(_SHAPE, s) for s in _SIGMAS]
    sigmas[0][4:14, 6:18] = 0.0  # σ = 0 → no weight (not infinite weight)
    sigmas[0][18:26, 20:32] = np.inf  # σ = inf → no weight
    sigmas[1][8:20, 2:12] = np.nan
    _mono_survey(tmp_path / "in", sigmas=sigmas)
    result = run_grid_mode(tmp_path / "in", tmp_path / "out", config=_config())
    mosaic, mwcs = _mosaic(result)
    valid = [np.isfinite(s) & (s > 0) for s in sigmas]
    expected = _expected(mwcs, mosaic.shape[1:], [(v,) for v in _VALUES], [(s**-2,) for s in _SIGMAS],
                         valid=valid)
    checked = np.isfinite(expected)
    np.testing.assert_allclose(mosaic[checked], expected[checked], rtol=2e-6)
    # The regions without frame 0 are checked, and they give other values than with it.
    without0 = _expected(mwcs, mosaic.shape[1:], [(v,) for v in _VALUES], [(s**-2,) for s in _SIGMAS],
                         valid=[np.zeros(_SHAPE, bool), None, None])
    with0 = _expected(mwcs, mosaic.shape[1:], [(v,) for v in _VALUES], [(s**-2,) for s in _SIGMAS])
    dropped = checked & np.isfinite(without0) & np.isfinite(with0) & (np.abs(without0 - with0) > 1) \
        & (np.abs(expected - without0) < 1e-9)
    assert dropped.sum() > 20


def test_rgb_weights_each_channel_by_its_own_sigma(tmp_path):
    channel_sigmas = [(1.0, 3.0, 2.0), (2.0, 1.0, 2.0), (4.0, 1.5, 2.0)]
    _rgb_survey(tmp_path / "in", channel_sigmas)
    result = run_grid_mode(tmp_path / "in", tmp_path / "out", config=_config())
    mosaic, mwcs = _mosaic(result)
    values = [tuple(v * (1.0 + 0.1 * c) for c in range(3)) for v in _VALUES]
    ivars = [tuple(s**-2 for s in row) for row in channel_sigmas]
    expected = _expected(mwcs, mosaic.shape[1:], values, ivars)
    checked = np.isfinite(expected)
    assert checked.sum() > 600
    np.testing.assert_allclose(mosaic[checked], expected[checked], rtol=2e-6)
    # A budget that spills every patch to disk (per-channel weights in the scratch file) changes no bit.
    spilled = run_grid_mode(tmp_path / "in", tmp_path / "out_spill", config=_config(stack_chunk_budget_mb=0.01))
    np.testing.assert_array_equal(_mosaic(spilled)[0], mosaic)


def test_frame_without_uncert_is_named_before_any_tile(tmp_path):
    _mono_survey(tmp_path / "in", uncert=(True, False, True))
    with pytest.raises(ValueError, match=r"frame_001\.fits' has no UNCERT extension; weighting='uncertainty'"):
        run_grid_mode(tmp_path / "in", tmp_path / "out", config=_config())
    assert not list((tmp_path / "out").rglob("tile_*.fits"))
    # Without uncertainty weighting the same frames run.
    plain = GridConfig(grid_size_factor=1.0, overlap_fraction=0.2, match_photometry=False,
                       stack=grid_stack_config(normalize="none", weighting="none", reject="none"))
    assert run_grid_mode(tmp_path / "in", tmp_path / "out_plain", config=plain).mosaic_path.exists()


def test_zemosaic_key_selects_it(tmp_path):
    _mono_survey(tmp_path / "in")
    cfg = GridConfig.from_dict({"grid_size_factor": 1.0, "stacking_weighting_method": "uncertainty"})
    assert cfg.stack.weighting == "uncertainty"


def test_two_workers_give_the_same_mosaic_as_one(tmp_path):
    sigmas = [np.full(_SHAPE, s) for s in _SIGMAS]
    sigmas[1][5:12, 5:30] = np.inf
    _mono_survey(tmp_path / "in", sigmas=sigmas)
    one = run_grid_mode(tmp_path / "in", tmp_path / "w1", config=_config(), grid_workers=1)
    two = run_grid_mode(tmp_path / "in", tmp_path / "w2", config=_config(), grid_workers=2)
    assert two.workers == 2 and two.tiles_processed == two.tiles_total
    assert two.mosaic_path.read_bytes() == one.mosaic_path.read_bytes()


@pytest.fixture(scope="module")
def noisy_rgb(tmp_path_factory):
    """Noisy RGB frames whose σ varies per pixel and channel (a zero-σ and a NaN patch included)."""
    folder = tmp_path_factory.mktemp("noisy")
    rng = np.random.default_rng(4)
    datas, sigmas = [], []
    for value in _VALUES:
        sigma = rng.uniform(0.5, 6.0, (3, *_SHAPE))
        sigma[0, 3:8, 4:9] = 0.0
        sigma[2, 10:14, :] = np.nan
        data = (value + sigma * rng.standard_normal(sigma.shape)).astype(np.float32)
        data[1, 20, 20] = 5000.0  # an outlier for the rejection
        datas.append(data)
        sigmas.append(sigma)
    _write_planes(folder, datas, sigmas, "StdDevUncertainty")
    return folder


def test_native_cells_equal_the_core_band_path_with_channel_weights(noisy_rgb, tmp_path):
    # The numba block stacker takes the (h, w, C, n) inverse-variance weights as the core does.
    from unittest import mock

    from zemosaic_xp.grid.geometry import build_global_grid
    from zemosaic_xp.grid.plan import load_stack_plan
    from zemosaic_xp.grid.tile import FrameRef, stack_tile

    kernels = pytest.importorskip("zemosaic_xp.backends.numba.kernels")
    grid = build_global_grid(load_stack_plan(noisy_rgb).entries, grid_size_factor=1.0, overlap_fraction=0.2)
    tile = max(grid.tiles, key=lambda t: len(t.frames))
    frames = [FrameRef(i, grid.frames[i].path, grid.frames[i].exposure) for i in tile.frames]
    stack = grid_stack_config(normalize="none", weighting="uncertainty", reject="winsorized_sigma_clip")
    config = GridConfig(stack=stack, stack_chunk_budget_mb=0.05)
    calls = []
    original = kernels.stack_block

    def spy(*args, **kwargs):
        calls.append(args[1].shape)
        return original(*args, **kwargs)

    with mock.patch.object(kernels, "stack_block", spy):
        fast = stack_tile(tile, grid.wcs, frames, config, scratch_dir=tmp_path, channels=3)
    with mock.patch.object(kernels, "supports", lambda *args: False):
        core = stack_tile(tile, grid.wcs, frames, config, scratch_dir=tmp_path, channels=3)
    assert calls and all(shape[2] == 3 for shape in calls)  # one weight per channel
    for name in ("image", "weight", "coverage"):
        assert getattr(fast, name).tobytes() == getattr(core, name).tobytes(), name
    # float32 sums in another order (as the master tiles' ivar test allows)
    np.testing.assert_allclose(fast.uncertainty, core.uncertainty, rtol=1e-5, equal_nan=True)
    # The weights are inverse variances, per channel: far above the footprint's [0, 1].
    assert np.nanmax(fast.weight[..., 0]) > 1.0
    assert not np.array_equal(fast.weight[..., 0], fast.weight[..., 1])


def test_gpu_blocks_match_the_cpu(noisy_rgb, tmp_path):
    from zemosaic_xp.gpu.testing import FaultInjector

    stack = grid_stack_config(normalize="none", weighting="uncertainty", reject="winsorized_sigma_clip")
    config = GridConfig(grid_size_factor=1.0, overlap_fraction=0.2, stack=stack, match_photometry=False)
    cpu = run_grid_mode(noisy_rgb, tmp_path / "cpu", config=config)
    injector = FaultInjector()
    gpu = run_grid_mode(noisy_rgb, tmp_path / "gpu", config=config, gpu_policy=injector.policy(grid=True))
    assert gpu.use_gpu and gpu.gpu_fallbacks == 0 and len(injector.gpu_attempts) > 1
    np.testing.assert_array_equal(_mosaic(gpu)[0], _mosaic(cpu)[0])


@pytest.mark.parametrize("cosmic", ["off", "always"])
def test_radial_map_and_cosmic_holes_combine_with_the_inverse_variance(tmp_path, cosmic):
    # One frame: its tile weight is footprint × radial map / σ² (here σ = 2), the radial map's
    # weight of the same run without uncertainty weighting divided by 4; cosmic holes stay holes.
    from zemosaic_xp.grid.geometry import build_global_grid
    from zemosaic_xp.grid.plan import load_stack_plan
    from zemosaic_xp.grid.tile import FrameRef, stack_tile

    folder = tmp_path / "in"
    folder.mkdir()
    data = (100.0 + 2.0 * np.random.default_rng(2).standard_normal(_SHAPE)).astype(np.float32)
    data[10, 12] = data[20, 25] = 9000.0  # two cosmic-ray hits
    CCDData(data, unit="adu", wcs=_wcs(0), uncertainty=StdDevUncertainty(np.full(_SHAPE, 2.0))).write(
        folder / "frame_000.fits")
    _plan(folder, [folder / "frame_000.fits"])
    grid = build_global_grid(load_stack_plan(folder).entries, grid_size_factor=1.0, overlap_fraction=0.2)
    tile = max(grid.tiles, key=lambda t: len(t.frames))
    frames = [FrameRef(i, grid.frames[i].path, grid.frames[i].exposure) for i in tile.frames]
    out = {}
    for weighting in ("none", "uncertainty"):
        stack = grid_stack_config(normalize="none", weighting=weighting, reject="none", radial_weight=True,
                                  cosmic=cosmic)
        out[weighting] = stack_tile(tile, grid.wcs, frames, GridConfig(stack=stack), scratch_dir=tmp_path,
                                    channels=1)
    plain, weighted = out["none"], out["uncertainty"]
    assert np.ptp(plain.weight[plain.weight > 0]) > 0.1  # the radial map varies over the tile
    np.testing.assert_allclose(weighted.weight, plain.weight / 4.0, rtol=1e-6)
    np.testing.assert_array_equal(np.isnan(weighted.image), np.isnan(plain.image))
    hot = np.nanmax(weighted.image) > 1000.0  # a hit reached the tile, unless masked
    assert hot == (cosmic == "off") and hot == (np.nanmax(plain.image) > 1000.0)
