"""``blend_tiles`` with ``corrections`` and ``uncertainties``: the same bits as corrected copies blended twice."""

from __future__ import annotations

import numpy as np
import pytest

import zemosaic_xp.mosaic.blend as blend
from zemosaic_xp.mosaic.blend import blend_tiles, edge_distance, feather_ramp


def _tiles(rng, n_chan):
    boxes = [(0, 0, 40, 50), (10, 30, 45, 40), (30, 5, 35, 60)]
    images, weights, covs, sigmas, valid, ramps = [], [], [], [], [], []
    for _, _, h, w in boxes:
        img = rng.normal(100, 5, (h, w, n_chan)).astype(np.float32)
        img[rng.random((h, w, n_chan)) < 0.05] = np.nan  # holes
        img[0, 0] = -0.0  # a negative zero: x·1 + 0 makes it +0, as the corrected copy did
        wt = rng.uniform(0.5, 2.0, (h, w, n_chan)).astype(np.float32)
        wt[rng.random((h, w, n_chan)) < 0.02] = 0.0
        ok = np.isfinite(img) & (wt > 0)
        images.append(img)
        weights.append(wt)
        covs.append(rng.integers(1, 9, (h, w)).astype(np.float32))
        sigmas.append(rng.uniform(0.5, 3.0, (h, w, n_chan)).astype(np.float32))
        valid.append(ok)
        ramps.append(feather_ramp(edge_distance(ok.any(axis=2)), 6.0))
    return boxes, images, weights, covs, sigmas, valid, ramps


@pytest.mark.parametrize("n_chan", [1, 3])
@pytest.mark.parametrize("threads", [1, 3])
def test_fused_equals_corrected_copies_blended_twice(monkeypatch, n_chan, threads):
    monkeypatch.setattr(blend, "STRIPE_ROWS", 16)  # several stripes, tiles across their edges
    rng = np.random.default_rng(3)
    boxes, images, weights, covs, sigmas, valid, ramps = _tiles(rng, n_chan)
    gains = rng.uniform(0.8, 1.2, (3, n_chan))
    gains[1, 0] = -gains[1, 0]  # |gain| scales the error
    offsets = rng.normal(0, 10, (3, n_chan))
    shape = (70, 80)
    corrected = [np.where(v, im * g.astype(np.float32) + o.astype(np.float32), np.nan).astype(np.float32)
                 for im, v, g, o in zip(images, valid, gains, offsets)]
    scaled = [np.where(v, s * np.abs(g).astype(np.float32), np.nan).astype(np.float32)
              for s, v, g in zip(sigmas, valid, gains)]
    image, weight, coverage = blend_tiles(boxes, corrected, weights, covs, valid, ramps, shape)
    uncertainty = blend_tiles(boxes, scaled, weights, covs, valid, ramps, shape)[0]
    corrections = [(g.astype(np.float32), o.astype(np.float32)) for g, o in zip(gains, offsets)]
    fused = blend_tiles(boxes, images, weights, covs, valid, ramps, shape, corrections=corrections,
                        uncertainties=sigmas, threads=threads)
    assert len(fused) == 4
    for got, want in zip(fused, (image, weight, coverage, uncertainty)):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # the same bits
    assert np.isnan(fused[3][69, 0]).all() and np.isfinite(fused[3][0, 0]).all()


def test_without_options_three_outputs():
    rng = np.random.default_rng(4)
    boxes, images, weights, covs, _, valid, ramps = _tiles(rng, 1)
    assert len(blend_tiles(boxes, images, weights, covs, valid, ramps, (70, 80))) == 3
