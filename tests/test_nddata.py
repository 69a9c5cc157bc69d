"""astropy NDData / CCDData in and out: masks, units, uncertainty weights, CCDData round trip."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import CCDData, InverseVariance, StdDevUncertainty, VarianceUncertainty

from zemosaic_xp import StackConfig, stack


def _frames(n=6, shape=(12, 9), seed=0, kind=StdDevUncertainty, sigmas=None):
    rng = np.random.default_rng(seed)
    sigmas = np.linspace(1.0, 3.0, n) if sigmas is None else sigmas
    out = []
    for i in range(n):
        data = (50 + sigmas[i] * rng.standard_normal(shape)).astype(np.float32)
        mask = np.zeros(shape, bool)
        mask[i % shape[0], 0] = True
        unc = {StdDevUncertainty: sigmas[i], VarianceUncertainty: sigmas[i] ** 2,
               InverseVariance: 1 / sigmas[i] ** 2}[kind]
        out.append(CCDData(data, unit="electron", mask=mask, uncertainty=kind(np.full(shape, unc))))
    return out


def test_mask_is_no_data_and_unit_is_kept():
    frames = _frames()
    r = stack(frames, config=StackConfig.plain())
    assert r.unit == u.electron and r.stats["unit"] == "electron"
    data = np.array([f.data for f in frames])
    data[np.array([f.mask for f in frames])] = np.nan
    np.testing.assert_allclose(r.image, np.nanmean(data, axis=0), rtol=1e-6)
    assert r.coverage[0, 0] == 5 and r.coverage[0, 1] == 6


def test_mixed_units_are_refused():
    frames = _frames()
    frames[3] = CCDData(frames[3].data, unit="adu")
    with pytest.raises(ValueError, match=r"frames\[3\] has unit adu"):
        stack(frames)


@pytest.mark.parametrize("kind", [StdDevUncertainty, VarianceUncertainty, InverseVariance])
def test_uncertainty_weighting_is_inverse_variance(kind):
    frames = _frames(kind=kind)
    r = stack(frames, config=StackConfig.plain(weighting="uncertainty"))
    data = np.array([np.where(f.mask, np.nan, f.data) for f in frames])
    w = 1 / np.linspace(1.0, 3.0, 6) ** 2
    w = np.where(np.isnan(data), 0, w[:, None, None])
    expected = np.nansum(np.nan_to_num(data) * w, axis=0) / w.sum(axis=0)
    np.testing.assert_allclose(r.image, expected, rtol=1e-5)


def test_uncertainty_weighting_needs_uncertainties():
    with pytest.raises(ValueError, match="needs astropy NDData"):
        stack(np.ones((3, 4, 4), np.float32), config=StackConfig.plain(weighting="uncertainty"))
    frames = _frames()
    frames[1] = CCDData(frames[1].data, unit="electron")
    with pytest.raises(ValueError, match=r"frames\[1\] has no uncertainty"):
        stack(frames, config=StackConfig.plain(weighting="uncertainty"))


def test_to_ccddata_round_trip(tmp_path):
    frames = _frames()
    blank = CCDData(np.full((12, 9), np.nan, np.float32), unit="electron")
    r = stack([*frames, blank], config=StackConfig.plain(reject="kappa_sigma"))
    r.image[2, 3] = np.nan  # a pixel without data: masked
    ccd = r.to_ccddata()
    assert ccd.unit == u.electron and ccd.mask[2, 3] and not ccd.mask[2, 4]
    assert isinstance(ccd.uncertainty, StdDevUncertainty)
    path = tmp_path / "stack.fits"
    ccd.write(path)
    back = CCDData.read(path)
    np.testing.assert_array_equal(back.data, ccd.data)
    np.testing.assert_array_equal(back.mask, ccd.mask)
    np.testing.assert_array_equal(back.uncertainty.array, ccd.uncertainty.array)
    assert back.unit == ccd.unit


def test_to_ccddata_needs_a_unit():
    r = stack(np.ones((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="pass unit="):
        r.to_ccddata()
    assert r.to_ccddata(unit="adu").unit == u.adu
