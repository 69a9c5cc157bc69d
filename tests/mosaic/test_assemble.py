"""Mosaic assembly: photometric matching, feathered blending, outputs (mosaic/assemble.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.diagnostics import seam_steps
from zemosaic_xp.mosaic import TileImage, assemble_mosaic, write_mosaic_outputs
from zemosaic_xp.synthetic import render_sky

SHAPE = (300, 420)
TILE_PX, STRIDE = 160, 130
PHOTON_NOISE = 25.0  # read noise², added to the sky level for the noise variance


def _sky(rgb: bool, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = render_sky(SHAPE, rng=rng, n_stars=100, rgb=rgb)
    return truth if rgb else truth[..., None]


def _sigma(truth: np.ndarray) -> np.ndarray:
    return np.sqrt(truth + PHOTON_NOISE)


def _split(truth: np.ndarray, *, shared_noise: bool, noise_scale: float = 1.0, seed: int = 2,
           gain_range=(0.9, 1.1), offset_range=(-50.0, 50.0)):
    """Overlapping tiles of ``truth`` + noise, each with its own known per-channel gain and offset.

    ``shared_noise``: all tiles are cut from one noisy image (tiles of a grid run stack the
    same frames in their overlaps); otherwise each tile gets independent noise.
    """
    rng = np.random.default_rng(seed)
    sigma = _sigma(truth) * noise_scale
    noisy = truth + sigma * rng.standard_normal(truth.shape)
    tiles, applied = [], {}
    height, width, n_chan = truth.shape
    tile_id = 0
    for y0 in range(0, height - TILE_PX + STRIDE, STRIDE):
        for x0 in range(0, width - TILE_PX + STRIDE, STRIDE):
            win = (slice(y0, min(y0 + TILE_PX, height)), slice(x0, min(x0 + TILE_PX, width)))
            data = noisy[win] if shared_noise else truth[win] + sigma[win] * rng.standard_normal(truth[win].shape)
            gain, offset = rng.uniform(*gain_range, n_chan), rng.uniform(*offset_range, n_chan)
            tile_id += 1
            image = (data * gain + offset).astype(np.float32)
            tiles.append(TileImage(tile_id, y0, x0, image, np.full(image.shape, 5.0, np.float32),
                                   np.full(image.shape[:2], 5.0, np.float32)))
            applied[tile_id] = (gain, offset)
    return tiles, applied, noisy


def _expected(applied, ref: int, tile_id: int):
    """Gain and offset that map tile ``tile_id`` onto the reference tile's scale."""
    g_ref, o_ref = applied[ref]
    g_t, o_t = applied[tile_id]
    gain = g_ref / g_t
    return gain, o_ref - gain * o_t


class TestPhotometricRecovery:
    @pytest.mark.parametrize("rgb", [False, True], ids=["mono", "rgb"])
    def test_shared_noise_is_recovered_exactly(self, rgb):
        # Tiles cut from one noisy image are exact linear maps of each other: the solve must
        # find the relative gains/offsets to float precision and rebuild the image itself.
        truth = _sky(rgb)
        tiles, applied, noisy = _split(truth, shared_noise=True)
        result = assemble_mosaic(tiles, SHAPE)
        ref = result.info["reference_tile"]
        for t in tiles:
            gain, offset = _expected(applied, ref, t.tile_id)
            np.testing.assert_allclose(result.gains[t.tile_id], gain, rtol=1e-4)
            np.testing.assert_allclose(result.offsets[t.tile_id], offset, atol=0.1)
        g_ref, o_ref = applied[ref]
        np.testing.assert_allclose(result.image, noisy * g_ref + o_ref, atol=0.05)
        assert result.info["max_abs_pair_residual"] < 0.01

    @pytest.mark.parametrize("rgb", [False, True], ids=["mono", "rgb"])
    def test_independent_noise_residual_at_noise_level(self, rgb):
        # Independent noise (σ/3, like a stack of 9 frames): gains to ~1 %, background level
        # to a small fraction of σ, residual vs truth no bigger than the noise itself.
        truth = _sky(rgb)
        tiles, applied, _ = _split(truth, shared_noise=False, noise_scale=1 / 3)
        result = assemble_mosaic(tiles, SHAPE)
        ref = result.info["reference_tile"]
        sky = 1000.0
        sigma_sky = np.sqrt(sky + PHOTON_NOISE) / 3
        for t in tiles:
            gain, offset = _expected(applied, ref, t.tile_id)
            np.testing.assert_allclose(result.gains[t.tile_id], gain, rtol=0.015)
            level = np.array(result.gains[t.tile_id]) * (sky - applied[t.tile_id][1]) / applied[t.tile_id][0]
            level += np.array(result.offsets[t.tile_id])
            expected_level = gain * (sky - applied[t.tile_id][1]) / applied[t.tile_id][0] + offset
            assert np.all(np.abs(level - expected_level) < 0.15 * sigma_sky)
        g_ref, o_ref = applied[ref]
        resid = (result.image - (truth * g_ref + o_ref)) / g_ref
        background = truth < sky + 100
        assert np.std(resid[background]) < 1.1 * sigma_sky
        steps = seam_steps(result.image, tiles) / g_ref.max()
        assert steps.size >= 10
        assert steps.max() < 0.5 * sigma_sky

    @pytest.mark.parametrize("feather_px", [None, 0], ids=["feathered", "hard-edges"])
    def test_matched_seams_below_half_sigma(self, feather_px):
        truth = _sky(False)
        tiles, applied, _ = _split(truth, shared_noise=True)
        result = assemble_mosaic(tiles, SHAPE, feather_px=feather_px)
        sigma_sky = np.sqrt(1000.0 + PHOTON_NOISE) * applied[result.info["reference_tile"]][0][0]
        steps = seam_steps(result.image, tiles)
        assert steps.size >= 10
        assert steps.max() < 0.5 * sigma_sky

    def test_seam_metric_detects_unmatched_tiles(self):
        # Without matching (offsets ±50 ADU) and without feathering the metric must see the seams.
        truth = _sky(False)
        tiles, _, _ = _split(truth, shared_noise=True)
        sigma_sky = np.sqrt(1000.0 + PHOTON_NOISE)
        raw = seam_steps(assemble_mosaic(tiles, SHAPE, match_photometry=False, feather_px=0).image, tiles)
        matched = seam_steps(assemble_mosaic(tiles, SHAPE, feather_px=0).image, tiles)
        assert np.median(raw) > 0.5 * sigma_sky
        assert raw.max() > 1.5 * sigma_sky
        assert np.median(matched) < 0.2 * np.median(raw)

    def test_reference_tile_is_fixed(self):
        tiles, applied, _ = _split(_sky(False), shared_noise=True)
        result = assemble_mosaic(tiles, SHAPE, reference_tile=3)
        assert result.info["reference_tile"] == 3
        assert result.gains[3] == [1.0] and result.offsets[3] == [0.0]
        gain, offset = _expected(applied, 3, 5)
        np.testing.assert_allclose(result.gains[5], gain, rtol=1e-4)

    def test_corrupted_overlap_is_clipped(self):
        # A 250 ADU blob over a third of one overlap (a bad flat, a ghost) must not bias the fit.
        tiles, applied, _ = _split(_sky(False), shared_noise=True)
        tiles[0].image[140:160, 130:160] += 250.0
        result = assemble_mosaic(tiles, SHAPE, reference_tile=1)
        for t in tiles[1:]:
            gain, offset = _expected(applied, 1, t.tile_id)
            np.testing.assert_allclose(result.gains[t.tile_id], gain, rtol=2e-3)
            level = result.gains[t.tile_id][0] * 1000 + result.offsets[t.tile_id][0]
            assert abs(level - (gain[0] * 1000 + offset[0])) < 1.0

    def test_disconnected_tile_keeps_identity(self):
        tiles, _, _ = _split(_sky(False), shared_noise=True)
        lone = TileImage(99, 0, 0, np.full((20, 20, 1), 7.0, np.float32), np.ones((20, 20, 1), np.float32),
                         np.ones((20, 20), np.float32))
        far = [t for t in tiles if t.tile_id != 1]  # tile 1 owns (0, 0); without it the corner is free
        result = assemble_mosaic(far + [lone], SHAPE)
        assert result.info["unconnected_tiles"] == [99]
        assert result.gains[99] == [1.0] and result.offsets[99] == [0.0]
        json.dumps(result.info)

    def test_no_matching_is_identity(self):
        tiles, _, _ = _split(_sky(False), shared_noise=True)
        result = assemble_mosaic(tiles, SHAPE, match_photometry=False)
        assert all(g == [1.0] for g in result.gains.values())
        assert all(o == [0.0] for o in result.offsets.values())


class TestBlending:
    def test_nan_where_no_tile_covers(self):
        img = np.full((10, 10, 1), 5.0, np.float32)
        tiles = [TileImage(1, 0, 0, img, np.ones_like(img), np.ones((10, 10), np.float32)),
                 TileImage(2, 0, 20, img, np.ones_like(img), np.ones((10, 10), np.float32))]
        result = assemble_mosaic(tiles, (12, 30))
        assert np.isnan(result.image[:, 10:20]).all() and np.isnan(result.image[10:]).all()
        assert (result.weight[:, 10:20] == 0).all() and (result.coverage[10:] == 0).all()
        np.testing.assert_array_equal(result.image[:10, :10], 5.0)

    def test_zero_and_negative_pixels_are_data(self):
        # Upstream treated |x| <= 1e-6 as "no data"; here only NaN is.
        img = np.zeros((8, 8, 1), np.float32)
        img[0, 0] = -3.0
        result = assemble_mosaic([TileImage(1, 0, 0, img, np.ones_like(img), np.ones((8, 8), np.float32))], (8, 8))
        np.testing.assert_array_equal(result.image, img)

    def test_tile_with_nan_hole(self):
        truth = _sky(False)
        tiles, applied, noisy = _split(truth, shared_noise=True)
        tiles[4].image[60:90, 60:90] = np.nan         # hole inside tile 5 only: filled by nobody
        tiles[4].image[0:20, 0:20] = np.nan           # hole in an overlap: filled by its neighbours
        result = assemble_mosaic(tiles, SHAPE)
        y0, x0 = tiles[4].y0, tiles[4].x0
        assert np.isnan(result.image[y0 + 60:y0 + 90, x0 + 60:x0 + 90]).all()
        g_ref, o_ref = applied[result.info["reference_tile"]]
        corner = (slice(y0, y0 + 20), slice(x0, x0 + 20))
        np.testing.assert_allclose(result.image[corner], noisy[corner] * g_ref + o_ref, atol=0.05)
        assert np.isfinite(result.image).sum() == np.prod(SHAPE) - 900

    @pytest.mark.parametrize("rgb", [False, True], ids=["mono", "rgb"])
    def test_coverage_is_a_frame_count_not_summed_over_channels(self, rgb):
        n_chan = 3 if rgb else 1
        a = TileImage(1, 0, 0, np.ones((10, 20, n_chan), np.float32), np.full((10, 20, n_chan), 5.0, np.float32),
                      np.full((10, 20), 5.0, np.float32))
        b = TileImage(2, 0, 10, np.ones((10, 20, n_chan), np.float32), np.full((10, 20, n_chan), 7.0, np.float32),
                      np.full((10, 20), 7.0, np.float32))
        result = assemble_mosaic([a, b], (10, 30), match_photometry=False, feather_px=4)
        assert result.image.shape == (10, 30, n_chan) and result.coverage.shape == (10, 30)
        np.testing.assert_allclose(result.coverage[:, :10], 5.0)
        np.testing.assert_allclose(result.coverage[:, 20:], 7.0)
        assert result.coverage.min() >= 5.0 and result.coverage.max() <= 7.0
        np.testing.assert_allclose(result.weight[:, :10], 5.0)
        assert result.weight.min() >= 5.0 and result.weight.max() <= 7.0

    def test_feather_ramp_is_smooth_across_a_mismatch(self):
        # Two flat tiles 100 ADU apart, no matching: feathering turns the step into a ramp.
        a = np.zeros((20, 60, 1), np.float32)
        tiles = [TileImage(1, 0, 0, a, np.ones_like(a), np.ones((20, 60), np.float32)),
                 TileImage(2, 0, 30, a + 100, np.ones_like(a), np.ones((20, 60), np.float32))]
        hard = assemble_mosaic(tiles, (20, 90), match_photometry=False, feather_px=0).image[10, :, 0]
        soft = assemble_mosaic(tiles, (20, 90), match_photometry=False, feather_px=30).image[10, :, 0]
        assert np.abs(np.diff(hard)).max() == pytest.approx(50.0)
        assert np.abs(np.diff(soft)).max() < 10.0
        assert soft[0] == 0.0 and soft[-1] == 100.0

    def test_info_and_progress(self):
        tiles, _, _ = _split(_sky(False), shared_noise=True)
        events = []
        result = assemble_mosaic(tiles, SHAPE, progress_callback=lambda *a, **k: events.append((a, k)))
        assert events and all(a[0] == "STAGE_PROGRESS" for a, _ in events)
        assert events[-1][0][2] == events[-1][1]["total"]
        info = json.loads(json.dumps(result.info))
        assert info["pairs_used"] == info["n_overlaps"] > 0 and info["feather_px"] == 30


class TestValidation:
    def _tile(self, tile_id=1, y0=0, x0=0, shape=(10, 10, 1)):
        return TileImage(tile_id, y0, x0, np.ones(shape, np.float32), np.ones(shape, np.float32),
                         np.ones(shape[:2], np.float32))

    @pytest.mark.parametrize(("tiles", "kwargs", "match"), [
        ([], {}, "empty"),
        (["a", "a"], {}, "unique"),
        (["far"], {}, "does not fit"),
        (["a"], {"reference_tile": 7}, "not one of the tile ids"),
        (["a"], {"feather_px": -1}, "feather_px"),
        (["a", "rgb"], {}, "channel"),
    ])
    def test_errors(self, tiles, kwargs, match):
        made = {"a": self._tile(), "far": self._tile(y0=15), "rgb": self._tile(2, shape=(10, 10, 3))}
        with pytest.raises(ValueError, match=match):
            assemble_mosaic([made[t] for t in tiles], (20, 20), **kwargs)

    def test_shape_mismatch(self):
        t = self._tile()
        t.weight = np.ones((10, 9, 1), np.float32)
        with pytest.raises(ValueError, match="tile 1"):
            assemble_mosaic([t], (20, 20))


class TestOutputs:
    @pytest.mark.parametrize("rgb", [False, True], ids=["mono", "rgb"])
    def test_fits_layout(self, tmp_path, rgb):
        tiles, _, _ = _split(_sky(rgb), shared_noise=True)
        tiles[0].image[:5, :5] = np.nan  # an uncovered corner
        result = assemble_mosaic(tiles, SHAPE)
        header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 30.0})
        paths = write_mosaic_outputs(result, tmp_path, header=header)
        assert set(paths) == {"mosaic", "coverage", "preview"}
        with fits.open(paths["mosaic"]) as hdul:
            data, weight, alpha = hdul[0].data, hdul["WEIGHT"].data, hdul["ALPHA"].data
            assert hdul[0].header["CTYPE1"] == "RA---TAN" and hdul[0].header["REFTILE"] == result.info[
                "reference_tile"]
            expected = np.moveaxis(result.image, -1, 0) if rgb else result.image[..., 0]
            expected_w = np.moveaxis(result.weight, -1, 0) if rgb else result.weight[..., 0]
            assert data.dtype.kind == "f" and data.shape == expected.shape == weight.shape
            np.testing.assert_array_equal(data, expected)           # NaN kept, no baseline shift
            np.testing.assert_array_equal(weight, expected_w)       # same axis order as the image
            assert np.isnan(data[..., :5, :5]).all() and (alpha[:5, :5] == 0).all() and alpha[100, 100] == 255
        with fits.open(paths["coverage"]) as hdul:
            hdr = hdul[0].header
            assert hdr["EXTNAME"] == "COVERAGE" and hdr["BUNIT"] == "count" and hdr["CTYPE2"] == "DEC--TAN"
            assert hdul[0].data.shape == SHAPE
            np.testing.assert_array_equal(hdul[0].data, result.coverage)
            assert hdul[0].data.max() == 5.0  # 5 frames per tile, whatever the channel count
        assert paths["preview"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


def test_paths_are_pathlib(tmp_path):
    img = np.ones((8, 8, 1), np.float32)
    result = assemble_mosaic([TileImage(1, 0, 0, img, img, np.ones((8, 8), np.float32))], (8, 8))
    paths = write_mosaic_outputs(result, str(tmp_path / "out"))
    assert all(isinstance(p, Path) and p.exists() for p in paths.values())
