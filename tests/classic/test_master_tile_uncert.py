"""Master tiles carry the uncertainty map and write it as an UNCERT HDU that CCDData.read returns."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from tests.classic.helpers import write_frames
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.classic import stack_master_tile, write_master_tile


@pytest.mark.parametrize("rgb", [False, True])
def test_uncertainty_written_and_read_by_ccddata(tmp_path, rgb):
    rng = np.random.default_rng(5)
    shape = (7, 24, 18, 3) if rgb else (7, 24, 18)
    frames = (100 + 3 * rng.standard_normal(shape)).astype(np.float32)
    frames[:6, 0, 0] = np.nan  # one sample left: no standard error there
    paths = write_frames(tmp_path / "in", frames)
    config = StackConfig.plain(reject="kappa_sigma")
    tile = stack_master_tile(paths, config, backend="numpy")
    expected = stack(frames, config=config).uncertainty
    np.testing.assert_allclose(tile.uncertainty, expected, rtol=2e-5, equal_nan=True)
    assert np.all(np.isnan(tile.uncertainty[0, 0]))
    out = write_master_tile(tile, tmp_path / "tile.fits", header={"BUNIT": "adu"})
    with fits.open(out) as hdul:
        assert hdul["UNCERT"].header["UTYPE"] == "StdDevUncertainty"
        assert hdul["UNCERT"].data.shape == hdul[0].data.shape
    ccd = CCDData.read(out)
    assert ccd.unit == "adu"
    assert isinstance(ccd.uncertainty, StdDevUncertainty)
    image_axes = np.moveaxis(tile.uncertainty, -1, 0) if rgb else tile.uncertainty
    np.testing.assert_array_equal(ccd.uncertainty.array, image_axes)


def test_ccddata_files_and_objects(tmp_path):
    rng = np.random.default_rng(8)
    paths, objects, masked = [], [], []
    for i in range(6):
        data = (20 + rng.standard_normal((16, 11))).astype(np.float32)
        mask = np.zeros(data.shape, bool)
        mask[i, :3] = True
        ccd = CCDData(data, unit="electron", mask=mask, uncertainty=StdDevUncertainty(np.ones_like(data)))
        ccd.write(tmp_path / f"f{i}.fits")
        paths.append(str(tmp_path / f"f{i}.fits"))
        objects.append(ccd)
        masked.append(np.where(mask, np.nan, data))
    config = StackConfig.plain()
    expected = stack(np.array(masked), config=config)
    for inputs in (paths, objects):
        tile = stack_master_tile(inputs, config, backend="numpy")
        assert tile.unit == "electron"
        np.testing.assert_allclose(tile.image, expected.image, rtol=1e-6)
        np.testing.assert_array_equal(tile.coverage, expected.coverage)
    out = write_master_tile(tile, tmp_path / "tile.fits")
    back = CCDData.read(out)
    assert back.unit == "electron"
    np.testing.assert_array_equal(back.uncertainty.array, tile.uncertainty)


def test_mixed_units_are_refused(tmp_path):
    a = CCDData(np.ones((4, 4), np.float32), unit="electron")
    b = CCDData(np.ones((4, 4), np.float32), unit="adu")
    with pytest.raises(ValueError, match="share one unit"):
        stack_master_tile([a, b], StackConfig.plain(), backend="numpy")
