"""Mosaic uncertainty: the tiles' |gain|·σ with the blend weights, written as UNCERT."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty

from zemosaic_xp.mosaic import TileImage, assemble_mosaic, write_mosaic_outputs


def _tile(tile_id, x0, value, sigma, *, uncertainty=True):
    shape = (10, 12, 1)
    return TileImage(tile_id, 0, x0, np.full(shape, value, np.float32), np.ones(shape, np.float32),
                     np.full(shape[:2], 4.0, np.float32),
                     np.full(shape, sigma, np.float32) if uncertainty else None)


def test_blend_of_tile_errors_and_fits_round_trip(tmp_path):
    tiles = [_tile(0, 0, 10.0, 1.0), _tile(1, 8, 10.0, 3.0)]
    m = assemble_mosaic(tiles, (10, 20), match_photometry=False, feather_px=0)
    u = m.uncertainty[..., 0]
    assert u[0, 0] == pytest.approx(1.0) and u[0, 19] == pytest.approx(3.0)
    # Overlap (columns 8-11), equal weights: the mean of the two errors.
    np.testing.assert_allclose(u[:, 8:12], 2.0, rtol=1e-6)
    paths = write_mosaic_outputs(m, tmp_path)
    ccd = CCDData.read(paths["mosaic"], unit="adu")
    assert isinstance(ccd.uncertainty, StdDevUncertainty)
    np.testing.assert_array_equal(ccd.uncertainty.array, u)


def test_gain_scales_the_error_and_missing_maps_give_none():
    tiles = [_tile(0, 0, 10.0, 1.0), _tile(1, 8, 20.0, 1.0)]
    m = assemble_mosaic(tiles, (10, 20), match_photometry=True, reference_tile=0, feather_px=0)
    gain = m.gains[1][0]
    assert m.uncertainty[0, 19, 0] == pytest.approx(abs(gain), rel=1e-5)
    m = assemble_mosaic([_tile(0, 0, 10.0, 1.0), _tile(1, 8, 10.0, 1.0, uncertainty=False)], (10, 20),
                        match_photometry=False)
    assert m.uncertainty is None
