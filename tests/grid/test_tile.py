"""One tile: reprojection into the patch store, stacking through the core, band/budget
invariance (the upstream NaN-hole hazard), ALPHA and exposure weights, tile FITS I/O."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.grid.config import GridConfig
from zemosaic_xp.grid.geometry import build_global_grid
from zemosaic_xp.grid.plan import load_stack_plan
from zemosaic_xp.grid.tile import FrameRef, read_tile, stack_tile, write_tile

from .frames_util import write_frames


def _setup(folder, **kw):
    grid = build_global_grid(load_stack_plan(folder).entries, grid_size_factor=kw.pop("factor", 1.5),
                             overlap_fraction=0.2)
    tile = max(grid.tiles, key=lambda t: len(t.frames))
    frames = [FrameRef(i, grid.frames[i].path, grid.frames[i].exposure) for i in tile.frames]
    return grid, tile, frames


def _stack(grid, tile, frames, scratch, **cfg):
    config = GridConfig(**cfg)
    return stack_tile(tile, grid.wcs, frames, config, scratch_dir=scratch, channels=grid.channels)


@pytest.fixture(scope="module")
def rgb_tile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rgb")
    write_frames(folder, n=6, shape=(40, 56), channels=3, rows=2, gains=[1, 1.1, 0.9, 1.05, 0.95, 1.0],
                 offsets=[0, 30, -20, 10, 0, -5])
    return folder, _setup(folder)


def test_tile_is_identical_for_any_chunk_budget(rgb_tile, tmp_path):
    folder, (grid, tile, frames) = rgb_tile
    big = _stack(grid, tile, frames, tmp_path, stack_chunk_budget_mb=4096.0)
    tiny = _stack(grid, tile, frames, tmp_path, stack_chunk_budget_mb=0.01)
    assert big.stats["n_bands"] < tiny.stats["n_bands"] == tile.shape[0]
    assert tiny.stats["spilled"] and not big.stats["spilled"]
    np.testing.assert_array_equal(tiny.image, big.image)
    np.testing.assert_array_equal(tiny.weight, big.weight)
    np.testing.assert_array_equal(tiny.coverage, big.coverage)
    # no NaN hole where any frame has data, and NaN exactly where none has
    covered = big.coverage > 0
    assert np.isfinite(big.image[covered]).all() and np.isnan(big.image[~covered]).all()
    assert not any(p.name.startswith(".patches_") for p in tmp_path.iterdir())  # scratch removed


@pytest.mark.parametrize("cosmic", ["off", "always"])
@pytest.mark.parametrize("budget_mb", [0.01, 0.5, 4096.0])
def test_tile_is_identical_for_any_thread_count(rgb_tile, tmp_path, monkeypatch, budget_mb, cosmic):
    # threads > 1: transforms and samples split (parts of 64 px here), with and without
    # the cosmic-ray hit maps, and cells stacked at once (from RAM or from a spilled
    # store's scratch file); the same tile to the bit.
    from zemosaic_xp import StackConfig
    from zemosaic_xp.grid import point_threads
    from zemosaic_xp.io.framecache import FRAMES

    folder, (grid, tile, frames) = rgb_tile
    config = GridConfig(stack_chunk_budget_mb=budget_mb) if cosmic == "off" else GridConfig(
        stack=StackConfig(cosmic=cosmic), stack_chunk_budget_mb=budget_mb)
    FRAMES.clear()
    one = stack_tile(tile, grid.wcs, frames, config, scratch_dir=tmp_path, channels=grid.channels)
    monkeypatch.setattr(point_threads, "MIN_POINTS_PER_THREAD", 64)
    FRAMES.clear()  # the frames read (and their hits found) again
    three = stack_tile(tile, grid.wcs, frames, config, scratch_dir=tmp_path, channels=grid.channels, threads=3)
    assert three.stats["n_bands"] == one.stats["n_bands"]
    for name in ("image", "weight", "coverage", "uncertainty"):
        np.testing.assert_array_equal(getattr(three, name), getattr(one, name))
    assert np.isfinite(one.image).any()


@pytest.mark.parametrize("budget_mb", [0.01, 4096.0], ids=["one-row-bands", "one-band"])
def test_tile_equals_the_core_stack_of_all_its_frames(rgb_tile, tmp_path, budget_mb):
    # Same result as zemosaic_xp.stack on the whole reprojected stack: every band saw every frame,
    # through the same core (no second stacking implementation).
    from zemosaic_xp import StackConfig, stack
    from zemosaic_xp.grid.geometry import frame_wcs
    from zemosaic_xp.grid.reproject_tile import reproject_patch
    from zemosaic_xp.io.fits import read_frame

    folder, (grid, tile, frames) = rgb_tile
    config = StackConfig(normalize="none", weighting="none", reject="kappa_sigma")
    result = stack_tile(tile, grid.wcs, frames, GridConfig(stack=config, stack_chunk_budget_mb=budget_mb),
                        scratch_dir=tmp_path, channels=3)
    patches, weights = [], []
    for ref in frames:
        frame = read_frame(ref.path)
        patch, weight = reproject_patch(frame.data, frame.alpha, frame_wcs(frame.header, ref.path), grid.wcs,
                                        tile.y0, tile.x0, (0, tile.shape[0], 0, tile.shape[1]))
        patches.append(patch)
        weights.append(weight)
    expected = stack(np.stack(patches), config=config, weights=np.stack(weights))
    np.testing.assert_array_equal(result.image, expected.image)
    np.testing.assert_array_equal(result.weight, expected.weight_sum)


def test_frame_maps_are_applied_before_stacking(tmp_path):
    # Frames with known gains/offsets, stacked with the inverse maps, give the calibrated stack.
    from dataclasses import replace

    from zemosaic_xp import StackConfig

    gains, offsets = [1.0, 1.2, 0.8, 1.1], [0.0, 50.0, -40.0, 20.0]
    write_frames(tmp_path / "raw", n=4, shape=(48, 48), rows=2, gains=gains, offsets=offsets, noise=2.0)
    write_frames(tmp_path / "cal", n=4, shape=(48, 48), rows=2, noise=2.0)
    config = {"stack": StackConfig(normalize="none", weighting="none", reject="none")}
    grid, tile, frames = _setup(tmp_path / "raw", factor=2.0)
    frames = [replace(f, gain=(1.0 / gains[f.index],), offset=(-offsets[f.index] / gains[f.index],))
              for f in frames]
    raw = _stack(grid, tile, frames, tmp_path, **config)
    grid_c, tile_c, frames_c = _setup(tmp_path / "cal", factor=2.0)
    cal = _stack(grid_c, tile_c, frames_c, tmp_path, **config)
    np.testing.assert_allclose(raw.image, cal.image, rtol=1e-5, atol=0.05)
    assert raw.stats["gains"][1][0] == pytest.approx(1 / 1.2)


def test_alpha_and_nan_frames_carry_no_weight(tmp_path):
    write_frames(tmp_path, n=4, shape=(48, 48), rows=2, alpha=True)
    grid, tile, frames = _setup(tmp_path, factor=2.0)
    with_alpha = _stack(grid, tile, frames, tmp_path)
    nan_path = tmp_path / "frame_003.fits"
    with fits.open(nan_path, mode="update") as hdul:
        hdul[0].data[:] = np.nan
    grid, tile, frames = _setup(tmp_path, factor=2.0)
    without = _stack(grid, tile, frames, tmp_path)
    assert without.stats["n_frames"] == with_alpha.stats["n_frames"] - 1
    assert without.coverage.max() <= with_alpha.coverage.max()
    # the ALPHA=0 quarter of frame 0 reaches the tile as zero weight: coverage below the frame count there
    assert (with_alpha.coverage[np.isfinite(with_alpha.image[..., 0])] >= 1).all()


def test_tile_of_only_empty_frames_is_an_error(tmp_path):
    write_frames(tmp_path, n=1, shape=(32, 32), rows=1)
    with fits.open(tmp_path / "frame_000.fits", mode="update") as hdul:
        hdul[0].data[:] = np.nan
    grid, tile, frames = _setup(tmp_path, factor=1.0)
    with pytest.raises(ValueError, match="no frame has data"):
        _stack(grid, tile, frames, tmp_path)


def test_exposure_weights_multiply_the_quality_weights(tmp_path):
    write_frames(tmp_path, n=2, shape=(40, 40), rows=1, exposures=[10.0, 30.0], noise=3.0)
    grid, tile, frames = _setup(tmp_path, factor=2.0)
    result = _stack(grid, tile, frames, tmp_path)
    w = np.asarray(result.stats["weights"])[:, 0]
    exposure = np.asarray([f.exposure for f in frames])
    assert sorted(exposure.tolist()) == [10.0, 30.0]
    # equal noise: the quality weights are close, so the 30 s frame weighs about 3x the 10 s one
    ratio = w[np.argmax(exposure)] / w[np.argmin(exposure)]
    assert 2.2 < ratio < 4.0


def test_tile_fits_round_trip(rgb_tile, tmp_path):
    folder, (grid, tile, frames) = rgb_tile
    product = _stack(grid, tile, frames, tmp_path)
    path = write_tile(tmp_path / "tile_0001.fits", tile, grid.wcs, product, GridConfig())
    back, header = read_tile(path)
    np.testing.assert_array_equal(back.image, product.image)
    np.testing.assert_array_equal(back.weight, product.weight)
    np.testing.assert_array_equal(back.coverage, product.coverage)
    assert product.uncertainty is not None and np.isfinite(product.uncertainty).any()
    np.testing.assert_array_equal(back.uncertainty, product.uncertainty)
    with fits.open(path) as hdul:
        assert hdul[0].data.shape == hdul["WEIGHT"].data.shape == hdul["UNCERT"].data.shape == (3,) + tile.shape
        assert hdul["COVERAGE"].data.shape == tile.shape
        alpha = hdul["ALPHA"].data
        np.testing.assert_array_equal(alpha > 0, (product.weight > 0).any(axis=-1))
    assert header["TILEID"] == tile.tile_id and header["TILEY0"] == tile.y0 and header["ZMT_REJ"] == "gesd"
    assert header["CTYPE1"].startswith("RA---TAN")


@pytest.mark.parametrize("config", [
    {},  # the default: quality weights, winsorized sigma clip, mean
    {"reject": "kappa_sigma", "combine": "median"},
    {"reject": "linear_fit_clip", "combine": "sum", "normalize": "none"},
    {"reject": "gesd", "combine": "mean", "weighting": "none"},
], ids=["default", "kappa-median", "lfc-sum", "gesd"])
def test_native_cells_equal_the_core_band_path(rgb_tile, tmp_path, config):
    # Issue 14: on the CPU a tile's cells go through the numba block stacker (weights
    # of the footprint × ALPHA, quality and exposure); the core's band path must agree.
    from unittest import mock

    from zemosaic_xp import StackConfig

    kernels = pytest.importorskip("zemosaic_xp.backends.numba.kernels")
    folder, (grid, tile, frames) = rgb_tile
    grid_config = GridConfig(stack=StackConfig(**config), stack_chunk_budget_mb=0.05)
    calls = []
    original = kernels.stack_block

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with mock.patch.object(kernels, "stack_block", spy):
        fast = stack_tile(tile, grid.wcs, frames, grid_config, scratch_dir=tmp_path, channels=3)
    with mock.patch.object(kernels, "supports", lambda *args: False):
        core = stack_tile(tile, grid.wcs, frames, grid_config, scratch_dir=tmp_path, channels=3)
    assert calls  # the cells went through the numba block stacker
    for name in ("image", "weight", "coverage"):
        assert getattr(fast, name).tobytes() == getattr(core, name).tobytes(), name
    np.testing.assert_allclose(fast.uncertainty, core.uncertainty, rtol=1e-6, equal_nan=True)
