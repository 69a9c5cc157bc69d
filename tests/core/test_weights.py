"""Radial weight map (alone and times quality weights) and per-channel noise weights on RGB."""

from __future__ import annotations

import math

import numpy as np
import pytest
from array_api_compat import numpy as np_xp

from tests.conftest import assert_on, host, on
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.core.weights import radial_weight_at, radial_weight_map


def _radial(y, x, h, w, feather=0.8, power=2.0, floor=0.05):
    """ZeMosaic's make_radial_weight_map at one pixel, straight from upstream_spec §2.5."""
    r = math.hypot(y - (h - 1) / 2, x - (w - 1) / 2) / (0.5 * math.hypot(h, w))
    return max(math.cos(math.pi / 2 * min(max(r / feather, 0.0), 1.0)) ** power, floor)


class TestRadialMap:
    def test_known_answer_3x3(self, backend):
        got = host(radial_weight_map(3, 3, xp=backend.xp, device=backend.device))
        # centre r = 0 -> 1; edge r = 1/2.121 = 0.4714 -> cos²(π/2·0.5893) = 0.6014² = 0.3616;
        # corner r = 0.667 -> cos²(π/2·0.833) = 0.0670 (above the 0.05 floor)
        np.testing.assert_allclose(got[1, 1], 1.0)
        np.testing.assert_allclose(got[0, 1], 0.361628, rtol=1e-5)
        np.testing.assert_allclose(got[0, 0], 0.066987, rtol=1e-4)
        assert got.dtype == np.float32

    @pytest.mark.parametrize(("feather", "power", "floor"), [(0.8, 2.0, 0.05), (0.5, 1.0, 0.0), (1.0, 3.5, 0.2),
                                                             (0.02, 2.0, 0.05)])
    def test_matches_upstream_formula(self, feather, power, floor):
        h, w = 17, 24
        got = radial_weight_map(h, w, feather_fraction=feather, shape_power=power, floor=floor, xp=np_xp)
        # ZeMosaic clamps the feather fraction to [0.1, 1].
        f = min(max(feather, 0.1), 1.0)
        expected = [[_radial(y, x, h, w, f, power, floor) for x in range(w)] for y in range(h)]
        np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)
        assert got.min() >= floor

    def test_bands_reassemble_the_full_map(self):
        full = radial_weight_map(23, 11, xp=np_xp)
        parts = [radial_weight_map(min(5, 23 - r0), 11, row_start=r0, full_height=23, xp=np_xp)
                 for r0 in range(0, 23, 5)]
        np.testing.assert_array_equal(np.concatenate(parts), full)

    def test_cells_reassemble_the_full_map(self):
        # Blocks of rows AND columns (grid cells) give the frame's map, not the block's own.
        full = radial_weight_map(23, 31, xp=np_xp)
        rows = [np.concatenate([radial_weight_map(min(5, 23 - r0), min(7, 31 - c0), row_start=r0, full_height=23,
                                                  col_start=c0, full_width=31, xp=np_xp)
                                for c0 in range(0, 31, 7)], axis=1) for r0 in range(0, 23, 5)]
        np.testing.assert_array_equal(np.concatenate(rows), full)

    def test_at_frame_positions(self, backend):
        # radial_weight_at on a 5x5 frame: centre 1; (2, 0): r = 2/3.5355 = 0.5657, /0.8 -> cos²(π/2·0.7071)
        # = 0.19715; (0, 0): r = 0.8 = feather -> floor 0.05; (2, 2.5) between pixels; NaN stays NaN.
        xp = backend.xp
        y = xp.asarray([2.0, 2.0, 0.0, 2.0, float("nan")], dtype=xp.float64, device=backend.device)
        x = xp.asarray([2.0, 0.0, 0.0, 2.5, 1.0], dtype=xp.float64, device=backend.device)
        got = radial_weight_at(y, x, height=5, width=5, xp=xp)
        assert_on(got, backend)
        got = host(got)
        np.testing.assert_allclose(got[:4], [1.0, 0.197150, 0.05, _radial(2.0, 2.5, 5, 5)], rtol=1e-5)
        assert np.isnan(got[4]) and got.dtype == np.float32
        grid = host(radial_weight_map(5, 5, xp=xp, device=backend.device))
        assert grid[2, 0] == got[1] and grid[0, 0] == got[2]  # the same formula, one home


def test_radial_weight_in_the_stack(backend):
    frames = np.full((4, 9, 12, 3), 50.0, dtype=np.float32)
    frames[1] = 70.0
    config = StackConfig.plain(radial_weight=True)
    r = stack(on(backend, frames), config=config)
    assert_on(r.weight_sum, backend)
    radial = host(radial_weight_map(9, 12, xp=np_xp))
    # Every frame gets the same map: the mean is unchanged, the weight sum is 4 × map.
    np.testing.assert_allclose(host(r.image), 55.0, rtol=1e-6)
    np.testing.assert_allclose(host(r.weight_sum), 4 * radial[..., None] * np.ones(3), rtol=1e-6)


def test_radial_times_quality_and_user_weights():
    rng = np.random.default_rng(1)
    sigmas = np.array([2.0, 4.0])
    frames = (100 + sigmas[:, None, None] * rng.standard_normal((2, 64, 48))).astype(np.float32)
    user = np.array([1.0, 3.0], dtype=np.float32)
    base = StackConfig(normalize="none", weighting="noise_variance", reject="none")
    plain = stack(frames, config=base, weights=user)
    radial = stack(frames, config=base.replace(radial_weight=True), weights=user)
    w = np.array(plain.stats["weights"])[:, 0]
    np.testing.assert_allclose(w, user * [1.0, 0.25], rtol=0.05)  # noise weights × user weights
    expected_sum = w.sum() * radial_weight_map(64, 48, xp=np_xp)
    np.testing.assert_allclose(radial.weight_sum, expected_sum, rtol=1e-5)
    # The same map on every frame cancels in the weighted mean.
    np.testing.assert_allclose(radial.image, plain.image, rtol=1e-5)


def test_radial_weight_is_band_invariant(backend):
    rng = np.random.default_rng(3)
    frames = on(backend, rng.normal(10, 1, (5, 13, 9)).astype(np.float32))
    config = StackConfig(radial_weight=True, radial_feather_fraction=0.6, radial_floor=0.1)
    whole = stack_frames(frames, config=config, band_rows=13)
    for rows in (1, 4):
        banded = stack_frames(frames, config=config, band_rows=rows)
        np.testing.assert_array_equal(host(banded.weight_sum), host(whole.weight_sum))
        np.testing.assert_array_equal(host(banded.image), host(whole.image))


def test_noise_weights_per_channel_on_rgb(backend):
    # σ differs per frame AND channel; w = min_var / var over all frames and channels.
    rng = np.random.default_rng(7)
    sigmas = np.array([[1.0, 2.0, 4.0], [2.0, 1.0, 1.0], [4.0, 4.0, 2.0]])
    frames = (500 + sigmas[:, None, None, :] * rng.standard_normal((3, 96, 96, 3))).astype(np.float32)
    config = StackConfig(normalize="none", weighting="noise_variance", reject="none")
    r = stack(on(backend, frames), config=config)
    w = np.array(r.stats["weights"])
    expected = 1.0 / sigmas**2
    np.testing.assert_allclose(w, expected / expected.max(), rtol=0.05)
    assert w.max() == 1.0 and np.sum(w == 1.0) >= 1
    image = np.sum(w[:, None, None, :] * frames, axis=0) / w.sum(axis=0)
    np.testing.assert_allclose(host(r.image), image, rtol=1e-5)
    np.testing.assert_allclose(host(r.weight_sum)[0, 0], w.sum(axis=0), rtol=1e-6)


def test_radial_weight_in_cell_blocks_of_the_band_driver(backend):
    # The band driver hands each block its place in the frame (rows AND columns): blocks of
    # 4 x 5 px (grid cells) give the full-width result bit for bit, on every backend.
    from zemosaic_xp.core.band_driver import BandDevice, Block, band_blocks, stack_bands
    from zemosaic_xp.core.frames import FrameStack
    from zemosaic_xp.core.framestats import FrameSamples
    from zemosaic_xp.core.in_memory import ArrayBandSource
    from zemosaic_xp.core.ops import ops_for
    from zemosaic_xp.core.pipeline import plan_frames

    rng = np.random.default_rng(11)
    frames = FrameStack(on(backend, rng.normal(10, 1, (4, 13, 17, 2)).astype(np.float32)))
    xp, ops = frames.xp, ops_for(frames.xp, frames.device)
    config = StackConfig(normalize="none", weighting="none", reject="kappa_sigma", radial_weight=True)
    plan = plan_frames(FrameSamples(frames.samples(64, ops=ops), xp=xp), config)
    full_width = ArrayBandSource(frames, None, ops)

    class Cells:
        height, width, channels = full_width.height, full_width.width, full_width.channels

        def read(self, block):
            values, weights = full_width.read(Block(block.r0, block.r1))
            return values[:, block.c0:block.c1, ...], weights

    cells = [Block(r0, min(13, r0 + 4), c0, min(17, c0 + 5)) for r0 in range(0, 13, 4) for c0 in range(0, 17, 5)]
    device = BandDevice(xp, ops=ops, device=frames.device)
    whole, _ = stack_bands(full_width, band_blocks(13, 13), config=config, plan=plan, device=device)
    cut, _ = stack_bands(Cells(), cells, config=config, plan=plan, device=device)
    for name in ("image", "weight_sum"):
        np.testing.assert_array_equal(host(cut[name]), host(whole[name]))
    radial = host(radial_weight_map(13, 17, xp=np_xp))
    np.testing.assert_allclose(host(whole["weight_sum"])[..., 0], 4 * radial, rtol=1e-6)  # no rejection here
