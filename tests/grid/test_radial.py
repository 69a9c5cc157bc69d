"""Radial weighting in grid tiles (issue 16): the frame's own map, carried with its patch.

The map is a function of the position in the ORIGINAL frame (its centre, its half
diagonal), evaluated at the frame position each tile pixel samples. So a tile's image and
WEIGHT do not depend on the memory budget, the cell layout, the device, or which
overlapping tile a pixel is in.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import zemosaic_xp.grid.cells as cells
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.gpu.testing import FaultInjector
from zemosaic_xp.grid.config import GridConfig
from zemosaic_xp.grid.geometry import build_global_grid, frame_wcs
from zemosaic_xp.grid.plan import load_stack_plan
from zemosaic_xp.grid.reproject_tile import reproject_patch
from zemosaic_xp.grid.tile import FrameRef, stack_tile
from zemosaic_xp.io.fits import read_frame

from .frames_util import tan_wcs, write_frames

RADIAL = StackConfig(radial_weight=True)


def _radial(y, x, h, w, feather=0.8, power=2.0, floor=0.05):
    """ZeMosaic's make_radial_weight_map at one frame pixel (upstream_spec §2.5)."""
    r = math.hypot(y - (h - 1) / 2, x - (w - 1) / 2) / (0.5 * math.hypot(h, w))
    return max(math.cos(math.pi / 2 * min(max(r / feather, 0.0), 1.0)) ** power, floor)


class TestPatchWeight:
    """reproject_patch with ``radial``: a frame reprojected onto its own pixel grid."""

    def _patch(self, box, shape=(5, 5), config=RADIAL):
        wcs = tan_wcs(10.0, 20.0, shape)
        data = np.full(shape + (1,), 100.0, dtype=np.float32)
        return reproject_patch(data, None, wcs, wcs, 0, 0, box, radial=config)

    def test_known_answer_5x5(self):
        # Centre (2, 2), half diagonal 0.5·hypot(5, 5) = 3.5355, feather 0.8, power 2, floor 0.05:
        # (2, 2): r = 0 -> 1; (2, 0): r = 2/3.5355 = 0.5657, /0.8 = 0.7071 -> cos²(π/2·0.7071) = 0.19715;
        # (0, 0): r = 2.828/3.5355 = 0.8 -> at the feather -> the floor 0.05.
        _, weight = self._patch((0, 5, 0, 5))
        assert weight[2, 2] == pytest.approx(1.0, abs=1e-6)
        assert weight[2, 0] == pytest.approx(0.197150, rel=1e-4)
        assert weight[0, 0] == pytest.approx(0.05, rel=1e-4)
        expected = [[_radial(y, x, 5, 5) for x in range(5)] for y in range(5)]
        np.testing.assert_allclose(weight, expected, rtol=1e-5)

    def test_a_sub_patch_keeps_the_frames_map(self):
        # Patch rows/cols 1..3 of the frame: its corner is frame pixel (1, 1), r = 1.414/3.5355 = 0.4,
        # /0.8 = 0.5 -> cos²(π/4) = 0.5; its centre is the frame's centre -> 1. Not the patch's own map.
        _, weight = self._patch((1, 4, 1, 4))
        assert weight.shape == (3, 3)
        assert weight[0, 0] == pytest.approx(0.5, rel=1e-4)
        assert weight[1, 1] == pytest.approx(1.0, abs=1e-6)
        full = self._patch((0, 5, 0, 5))[1]
        np.testing.assert_allclose(weight, full[1:4, 1:4], rtol=1e-6)

    def test_off_the_frame_weighs_nothing(self):
        # Tile pixels beyond the frame: NaN sample, weight 0 (not the floor).
        patch, weight = self._patch((3, 8, 3, 8))
        assert np.all(weight[3:, :] == 0) and np.all(np.isnan(patch[3:, :, 0]))
        assert np.all(weight[:2, :2] > 0)

    def test_without_radial_weight_the_weight_is_the_footprint(self):
        _, weight = self._patch((0, 5, 0, 5), config=StackConfig())
        np.testing.assert_array_equal(weight, np.ones((5, 5), dtype=np.float32))


@pytest.fixture(scope="module")
def rgb_tile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("radial")
    write_frames(folder, n=6, shape=(60, 120), channels=3, rows=2, gains=[1, 1.1, 0.9, 1.05, 0.95, 1.0],
                 offsets=[0, 30, -20, 10, 0, -5])
    grid = build_global_grid(load_stack_plan(folder).entries, grid_size_factor=1.5, overlap_fraction=0.2)
    tile = max(grid.tiles, key=lambda t: len(t.frames))
    frames = [FrameRef(i, grid.frames[i].path, grid.frames[i].exposure) for i in tile.frames]
    return grid, tile, frames


def _stack(rgb_tile, tmp_path, budget_mb=4096.0, config=RADIAL, policy=None):
    grid, tile, frames = rgb_tile
    return stack_tile(tile, grid.wcs, frames, GridConfig(stack=config, stack_chunk_budget_mb=budget_mb),
                      scratch_dir=tmp_path, channels=3, gpu_policy=policy, noise_samples=4096)


def test_one_band_and_many_bands_give_the_same_tile(rgb_tile, tmp_path):
    one = _stack(rgb_tile, tmp_path, 4096.0)
    many = _stack(rgb_tile, tmp_path, 0.01)
    assert one.stats["n_bands"] < many.stats["n_bands"] == rgb_tile[1].shape[0]  # one row per band
    # Bit-identical, not just close: the map is per frame pixel, the core per output pixel.
    np.testing.assert_array_equal(many.image, one.image)
    np.testing.assert_array_equal(many.weight, one.weight)
    # ... and the radial map really is in there: WEIGHT differs from the unweighted tile.
    plain = _stack(rgb_tile, tmp_path, 4096.0, config=StackConfig())
    assert np.nanmax(np.abs(plain.weight - one.weight)) > 0.5


@pytest.mark.parametrize("cell_cols", [16, 4096])
def test_the_cell_layout_does_not_change_the_tile(rgb_tile, tmp_path, monkeypatch, cell_cols):
    # Before issue 16 the map was the block's (cell columns), WEIGHT changed by 2.9 of 4.8 with CELL_COLS.
    reference = _stack(rgb_tile, tmp_path)
    monkeypatch.setattr(cells, "CELL_COLS", cell_cols)
    other = _stack(rgb_tile, tmp_path)
    np.testing.assert_array_equal(other.image, reference.image)
    np.testing.assert_array_equal(other.weight, reference.weight)


def test_tile_equals_the_core_stack_of_its_radially_weighted_patches(rgb_tile, tmp_path):
    # Parity with stack(): the patches and footprint × (frame's radial map) weights built by hand
    # through reproject_patch(radial=None) and the frame's map at the sampled frame positions.
    from zemosaic_xp.grid.geometry import tile_wcs
    from zemosaic_xp.grid.reproject_tile import _frame_coords, radial_at_patch

    grid, tile, frames = rgb_tile
    config = StackConfig(normalize="none", weighting="none", reject="kappa_sigma", radial_weight=True)
    result = _stack(rgb_tile, tmp_path, 0.01, config=config)
    box = (0, tile.shape[0], 0, tile.shape[1])
    target = tile_wcs(grid.wcs, tile.y0, tile.x0, tile.shape)
    patches, weights = [], []
    for ref in frames:
        frame = read_frame(ref.path)
        fw = frame_wcs(frame.header, ref.path)
        patch, footprint = reproject_patch(frame.data, frame.alpha, fw, grid.wcs, tile.y0, tile.x0, box)
        coords = _frame_coords(fw, target, tile.shape, frame.data.shape[:2])
        radial = np.nan_to_num(radial_at_patch(coords, frame.data.shape[:2], tile.shape, config))
        patches.append(patch)
        weights.append(footprint * radial)
    expected = stack(np.stack(patches), config=config.replace(radial_weight=False), weights=np.stack(weights))
    np.testing.assert_array_equal(result.image, expected.image)
    np.testing.assert_array_equal(result.weight, expected.weight_sum)


def test_overlapping_tiles_agree_on_the_weight_of_a_shared_pixel(tmp_path):
    # With the tile's own map (before), the same frame weighed differently in two overlapping tiles.
    write_frames(tmp_path, n=4, shape=(60, 80), channels=1, rows=2)
    grid = build_global_grid(load_stack_plan(tmp_path).entries, grid_size_factor=0.8, overlap_fraction=0.4)
    a, b = next((a, b) for a in grid.tiles for b in grid.tiles
                if a.tile_id < b.tile_id and a.y0 == b.y0 and a.x0 < b.x0 < a.x0 + a.shape[1]
                and set(a.frames) == set(b.frames))
    config = GridConfig(stack=StackConfig(normalize="none", weighting="none", reject="none", radial_weight=True))

    def weight(tile):
        frames = [FrameRef(i, grid.frames[i].path) for i in tile.frames]
        return stack_tile(tile, grid.wcs, frames, config, scratch_dir=tmp_path, channels=1).weight[..., 0]

    wa, wb = weight(a), weight(b)
    h = min(a.shape[0], b.shape[0])
    shared_a = wa[:h, b.x0 - a.x0:]
    shared_b = wb[:h, :shared_a.shape[1]]
    assert shared_a.size > 0 and np.ptp(shared_a) > 0.1  # a real radial gradient in the overlap
    np.testing.assert_allclose(shared_b, shared_a, rtol=1e-6, atol=1e-7)  # float32 rounding of the WCS paths


def test_gpu_blocks_and_an_oom_fallback_give_the_cpu_tile(rgb_tile, tmp_path):
    cpu = _stack(rgb_tile, tmp_path)
    healthy = _stack(rgb_tile, tmp_path, policy=FaultInjector().policy(grid=True))
    oom = _stack(rgb_tile, tmp_path, policy=FaultInjector(["oom"]).policy(grid=True))
    assert healthy.stats["gpu_bands"] > 0 and oom.stats["gpu_fallbacks"] == 1
    for other in (healthy, oom):
        np.testing.assert_array_equal(other.image, cpu.image)
        np.testing.assert_array_equal(other.weight, cpu.weight)


def test_single_frame_tile_weight_is_footprint_times_the_frame_map(tmp_path):
    # One frame: the image is the frame's samples (radial weights cancel), WEIGHT is
    # exposure × footprint × its radial map, and NaN pixels of the frame weigh nothing.
    write_frames(tmp_path, n=1, shape=(40, 40), channels=1, rows=1, exposures=[2.0])
    grid = build_global_grid(load_stack_plan(tmp_path).entries, grid_size_factor=1.0, overlap_fraction=0.0)
    tile = max(grid.tiles, key=lambda t: len(t.frames))
    frames = [FrameRef(i, grid.frames[i].path, grid.frames[i].exposure) for i in tile.frames]
    cfg = StackConfig(normalize="none", weighting="none", reject="none")
    plain = stack_tile(tile, grid.wcs, frames, GridConfig(stack=cfg), scratch_dir=tmp_path, channels=1)
    radial = stack_tile(tile, grid.wcs, frames, GridConfig(stack=cfg.replace(radial_weight=True)),
                        scratch_dir=tmp_path, channels=1)
    # w·x / w of one sample: equal to float32 rounding (1 ulp), not bit for bit.
    np.testing.assert_allclose(radial.image, plain.image, rtol=2e-7)
    covered = plain.weight > 0
    ratio = radial.weight[covered] / plain.weight[covered]
    assert ratio.min() >= 0.05 - 1e-6 and ratio.max() <= 1.0 + 1e-6 and ratio.max() > 0.95
    np.testing.assert_array_equal(radial.weight[~covered], 0)
