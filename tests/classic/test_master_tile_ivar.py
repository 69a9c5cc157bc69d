"""weighting="uncertainty" in master tiles: 1/σ² per pixel streamed from UNCERT extensions or CCDData."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, InverseVariance, StdDevUncertainty, VarianceUncertainty

from zemosaic_xp import StackConfig, stack
from zemosaic_xp.classic import stack_master_tile
from zemosaic_xp.io.uncert import ArrayUncertRows, FitsUncertRows, inverse_variance_of

_KINDS = {"std": StdDevUncertainty, "var": VarianceUncertainty, "ivar": InverseVariance}


def _frames(n=7, shape=(21, 13), seed=3, rgb=False, kind="std"):
    """CCDData frames with per-pixel σ varying over the frame and between frames, a mask each."""
    rng = np.random.default_rng(seed)
    full = (*shape, 3) if rgb else shape
    out = []
    for i in range(n):
        sigma = (1.0 + 3.0 * rng.random(full)).astype(np.float32)
        data = (50.0 + sigma * rng.standard_normal(full)).astype(np.float32)
        data[i % shape[0], :4] += 400.0  # an outlier row per frame
        mask = np.zeros(full, bool)
        mask[(i + 3) % shape[0], 2:5] = True
        value = {"std": sigma, "var": sigma**2, "ivar": 1.0 / sigma**2}[kind]
        out.append(CCDData(data, unit="electron", mask=mask, uncertainty=_KINDS[kind](value)))
    return out


def _write(tmp_path, ccds, *, drop_mask=False):
    paths = []
    for i, ccd in enumerate(ccds):
        if drop_mask:
            ccd = CCDData(np.where(ccd.mask, np.nan, ccd.data).astype(np.float32), unit=ccd.unit,
                          uncertainty=ccd.uncertainty)
        path = tmp_path / f"f{i}.fits"
        ccd.write(path, overwrite=True)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("kind", ["std", "var", "ivar"])
@pytest.mark.parametrize("rgb", [False, True])
def test_tile_equals_stack_of_the_same_ccddata(tmp_path, kind, rgb):
    ccds = _frames(kind=kind, rgb=rgb)
    config = StackConfig.plain(reject="kappa_sigma", weighting="uncertainty")
    expected = stack(ccds, config=config)
    # Streamed UNCERT (no MASK: NaN instead), MASK files read whole, and the objects.
    (tmp_path / "streamed").mkdir()
    for inputs in (_write(tmp_path / "streamed", ccds, drop_mask=True), _write(tmp_path, ccds), ccds):
        tile = stack_master_tile(inputs, config, backend="numpy")
        np.testing.assert_allclose(tile.image, expected.image, rtol=1e-6, atol=1e-5, equal_nan=True)
        np.testing.assert_array_equal(tile.coverage, expected.coverage)
        np.testing.assert_allclose(tile.uncertainty, expected.uncertainty, rtol=1e-5, equal_nan=True)
        assert tile.unit == "electron"
        assert tile.stats["weighting"] == "uncertainty"


def test_known_answer_inverse_variance_mean():
    # Two frames, σ = 1 and 2: the mean is (4·a + b) / 5.
    a = CCDData(np.full((3, 4), 10.0, np.float32), unit="adu", uncertainty=StdDevUncertainty(np.ones((3, 4))))
    b = CCDData(np.full((3, 4), 20.0, np.float32), unit="adu", uncertainty=StdDevUncertainty(np.full((3, 4), 2.0)))
    tile = stack_master_tile([a, b], StackConfig.plain(weighting="uncertainty"), backend="numpy")
    np.testing.assert_allclose(tile.image, 12.0, rtol=1e-6)
    unweighted = stack_master_tile([a, b], StackConfig.plain(), backend="numpy")
    np.testing.assert_allclose(unweighted.image, 15.0, rtol=1e-6)


def test_band_size_invariant(tmp_path):
    ccds = _frames(n=6, shape=(17, 9), seed=9)
    paths = _write(tmp_path, ccds, drop_mask=True)
    config = StackConfig.plain(reject="kappa_sigma", weighting="uncertainty")
    whole = stack_master_tile(paths, config, backend="numpy")
    row_bytes = 6 * 9 * 4
    for rows in (1, 4):
        got = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=rows * row_bytes * 30)
        assert got.stats["n_bands"] > 1
        np.testing.assert_array_equal(got.image, whole.image)
        np.testing.assert_array_equal(got.uncertainty, whole.uncertainty)


def test_zero_and_bad_uncertainties_mean_no_data():
    data = np.ones((2, 3), np.float32)
    sig = np.array([[1.0, 0.0, np.inf], [np.nan, 1.0, 1.0]])
    a = CCDData(data, unit="adu", uncertainty=StdDevUncertainty(sig))
    b = CCDData(3 * data, unit="adu", uncertainty=StdDevUncertainty(np.ones((2, 3))))
    tile = stack_master_tile([a, b], StackConfig.plain(weighting="uncertainty"), backend="numpy")
    np.testing.assert_array_equal(tile.coverage, [[2, 1, 1], [1, 2, 2]])
    np.testing.assert_allclose(tile.image, [[2.0, 3.0, 3.0], [3.0, 2.0, 2.0]])


def test_single_frame(tmp_path):
    ccd = _frames(n=1)[0]
    tile = stack_master_tile(_write(tmp_path, [ccd]), StackConfig.plain(weighting="uncertainty"), backend="numpy")
    np.testing.assert_array_equal(tile.coverage, (~ccd.mask).astype(np.int32))
    assert np.all(np.isnan(tile.uncertainty))


def test_missing_uncertainty_is_named(tmp_path):
    ccds = _frames(n=3)
    paths = _write(tmp_path, ccds, drop_mask=True)
    plain = tmp_path / "plain.fits"
    hdu = fits.PrimaryHDU(np.ones((21, 13), np.float32))
    hdu.header["BUNIT"] = "electron"
    hdu.writeto(plain)
    config = StackConfig.plain(weighting="uncertainty")
    with pytest.raises(ValueError, match="plain.fits' has no UNCERT"):
        stack_master_tile([*paths, str(plain)], config, backend="numpy")
    masked_only = CCDData(np.ones((21, 13), np.float32), unit="electron", mask=np.zeros((21, 13), bool))
    masked_only.write(tmp_path / "masked.fits")
    with pytest.raises(ValueError, match="masked.fits' has no UNCERT"):
        stack_master_tile([*paths, str(tmp_path / "masked.fits")], config, backend="numpy")
    with pytest.raises(ValueError, match=r"inputs\[1\] has no uncertainty"):
        stack_master_tile([ccds[0], CCDData(ccds[1].data, unit="electron")], config, backend="numpy")
    with pytest.raises(ValueError, match=r"inputs\[0\] is a plain array"):
        stack_master_tile([np.ones((4, 4), np.float32)], config, backend="numpy")


def test_unknown_utype_is_named(tmp_path):
    paths = _write(tmp_path, _frames(n=2), drop_mask=True)
    with fits.open(paths[1], mode="update") as hdul:
        hdul["UNCERT"].header["UTYPE"] = "Banana"
    with pytest.raises(ValueError, match="f1.fits' UNCERT extension has UTYPE 'Banana'"):
        stack_master_tile(paths, StackConfig.plain(weighting="uncertainty"), backend="numpy")


def test_uncert_rows_readers(tmp_path):
    ccd = _frames(n=1, rgb=True)[0]
    path = _write(tmp_path, [ccd], drop_mask=True)[0]
    rows = FitsUncertRows(path, (21, 13, 3))
    assert rows.kind == "std"
    whole = inverse_variance_of(ccd.uncertainty.array, "std")
    np.testing.assert_array_equal(rows.read_rows(4, 9), whole[4:9])
    np.testing.assert_array_equal(ArrayUncertRows(whole).read_rows(2, 3), whole[2:3])
    with pytest.raises(ValueError, match="UNCERT has shape"):
        FitsUncertRows(path, (21, 13, 1))


def test_streamed_files_are_read_by_rows(tmp_path):
    from zemosaic_xp.io.bands import open_sources
    from zemosaic_xp.io.fits_header import ScannedPath
    from zemosaic_xp.nddata import master_tile_inputs

    paths = _write(tmp_path, _frames(n=2), drop_mask=True)
    inputs, unit, weights = master_tile_inputs(paths, uncertainty=True)
    assert inputs == paths and unit == "electron" and weights == ["stream", "stream"]
    assert all(isinstance(p, ScannedPath) and p.hdus for p in inputs)  # opened without a second scan
    sources = open_sources(inputs, weights=weights)
    assert all(isinstance(s.ivar, FitsUncertRows) for s in sources)


def test_torch_backend_parity(tmp_path):
    pytest.importorskip("torch")
    paths = _write(tmp_path, _frames(n=5, seed=11), drop_mask=True)
    config = StackConfig.plain(reject="kappa_sigma", weighting="uncertainty")
    ref = stack_master_tile(paths, config, backend="numpy")
    got = stack_master_tile(paths, config, backend="torch")
    assert got.stats["backend"] != ref.stats["backend"]
    np.testing.assert_allclose(got.image, ref.image, rtol=1e-6, atol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(got.coverage, ref.coverage)
    np.testing.assert_allclose(got.uncertainty, ref.uncertainty, rtol=2e-5, atol=1e-6, equal_nan=True)
