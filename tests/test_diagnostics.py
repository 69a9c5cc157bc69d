"""Seam metric (diagnostics.py): known steps, gradients, stars on the edge, channels."""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp.diagnostics import seam_segments, seam_steps
from zemosaic_xp.mosaic import TileImage


class TestSeamSteps:
    def _two_tiles(self, step: float, gradient: float = 0.0):
        # Tile 1 covers columns [0, 60), tile 2 columns [40, 100); the mosaic jumps by `step`
        # at column 60, the edge of tile 1 seen from tile 2's side, on top of a gradient.
        yy, xx = np.mgrid[0:50, 0:100].astype(np.float64)
        mosaic = 100.0 + gradient * xx + 0.5 * yy
        mosaic[:, :60] += step
        ones = np.ones((50, 60, 1), np.float32)
        tiles = [TileImage(1, 0, 0, ones, ones, ones[..., 0]), TileImage(2, 0, 40, ones, ones, ones[..., 0])]
        return mosaic, tiles

    def test_known_step_with_gradient(self):
        mosaic, tiles = self._two_tiles(7.0, gradient=2.0)
        segments = seam_segments(mosaic, tiles)
        assert [(s["tile_id"], s["side"]) for s in segments] == [(1, "x+"), (2, "x-")]
        assert segments[0]["step"][0] == pytest.approx(7.0)   # inside tile 1 is 7 higher
        assert segments[1]["step"][0] == pytest.approx(0.0, abs=1e-9)  # tile 2's edge at 40: none
        np.testing.assert_allclose(seam_steps(mosaic, tiles), [7.0, 0.0], atol=1e-9)

    def test_gradient_alone_is_not_a_seam(self):
        mosaic, tiles = self._two_tiles(0.0, gradient=5.0)
        np.testing.assert_allclose(seam_steps(mosaic, tiles), 0.0, atol=1e-9)

    def test_star_on_the_edge_is_ignored(self):
        mosaic, tiles = self._two_tiles(0.0)
        mosaic += np.random.default_rng(0).normal(0, 1.0, mosaic.shape)
        yy, xx = np.mgrid[0:50, 0:100]
        mosaic += 5000 * np.exp(-((yy - 25) ** 2 + (xx - 62) ** 2) / (2 * 1.3**2))
        assert seam_steps(mosaic, tiles).max() < 0.5

    def test_per_channel_and_no_boundary(self):
        mosaic, tiles = self._two_tiles(3.0)
        rgb = np.stack([mosaic, mosaic * 2, mosaic], axis=-1)
        assert seam_steps(rgb, tiles, per_channel=True).shape == (2, 3)
        assert seam_steps(rgb, tiles).tolist() == pytest.approx([6.0, 0.0], abs=1e-6)
        assert seam_steps(mosaic, tiles[:1]).size == 0
