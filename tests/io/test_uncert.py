"""io/uncert.py for grid tiles: variances of every kind, the UNCERT extension found and checked
from the headers (fast reader and astropy agree), and the frame cache's variance planes."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.io import uncert
from zemosaic_xp.io.framecache import FrameCache
from zemosaic_xp.io.uncert import FitsUncertRows, read_variance_planes, uncert_hdu, variance_of

from ..grid.frames_util import tan_wcs


def test_variance_of_each_kind_and_unusable_values():
    sigma = np.array([2.0, 0.0, np.inf, np.nan, -1.0, 0.5])
    expected = np.array([4.0, np.nan, np.nan, np.nan, 1.0, 0.25], np.float32)  # σ = -1 squares to 1
    np.testing.assert_array_equal(variance_of(sigma, "std"), expected)
    var = np.array([4.0, 0.0, np.inf, np.nan, -1.0, 0.25])
    np.testing.assert_array_equal(variance_of(var, "var"), [4.0, np.nan, np.nan, np.nan, np.nan, 0.25])
    ivar = np.array([0.25, 0.0, np.inf, np.nan, -1.0, 4.0])
    np.testing.assert_array_equal(variance_of(ivar, "ivar"), [4.0, np.nan, np.nan, np.nan, np.nan, 0.25])
    assert variance_of(sigma, "std").dtype == np.float32
    assert np.isnan(variance_of([1e30], "std"))  # past float32: not finite
    with pytest.raises(ValueError, match="unknown uncertainty kind"):
        variance_of(sigma, "sigma")


def _frame(path, data, unc=None, utype="VarianceUncertainty", *, extra_first=False):
    hdus = [fits.PrimaryHDU(data, header=tan_wcs(150.0, 30.0, data.shape[-2:]).to_header())]
    if extra_first:
        hdus.append(fits.ImageHDU(np.zeros(data.shape[-2:], np.uint8), name="MASK"))
    if unc is not None:
        hdu = fits.ImageHDU(unc, name="UNCERT")
        if utype is not None:
            hdu.header["UTYPE"] = utype
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_variance_planes_of_an_rgb_frame(tmp_path, layout):
    rng = np.random.default_rng(0)
    var = rng.uniform(1.0, 9.0, (3, 5, 7)).astype(np.float32)
    written = var if layout == "chw" else np.moveaxis(var, 0, -1)
    path = _frame(tmp_path / "f.fits", np.zeros((3, 5, 7), np.float32), written, extra_first=True)
    assert uncert_hdu(path, (5, 7, 3)) == (2, layout.upper(), "var")
    planes = read_variance_planes(path, (5, 7, 3))
    assert planes.shape == (3, 5, 7) and planes.flags.c_contiguous
    np.testing.assert_array_equal(planes, var)
    # FitsUncertRows (master tiles) reads the same extension: 1/σ² of the same values.
    np.testing.assert_allclose(FitsUncertRows(path, (5, 7, 3)).read_rows(0, 5), np.moveaxis(1.0 / var, 0, -1),
                               rtol=1e-6)


def test_mono_std_without_utype_and_the_astropy_fallback(tmp_path, monkeypatch):
    sigma = np.full((4, 6), 3.0, np.float32)
    sigma[1, 2] = 0.0
    path = _frame(tmp_path / "m.fits", np.zeros((4, 6), np.float32), sigma, utype=None)
    fast = uncert_hdu(path, (4, 6, 1))
    assert fast == (1, "HW", "std")
    planes = read_variance_planes(path, (4, 6, 1))
    assert planes.shape == (1, 4, 6) and np.isnan(planes[0, 1, 2]) and planes[0, 0, 0] == 9.0
    monkeypatch.setattr("zemosaic_xp.io.fits_header.scan_hdus", lambda p: None)  # astropy decides
    assert uncert_hdu(path, (4, 6, 1)) == fast


@pytest.mark.parametrize("fast", [True, False])
def test_errors_name_the_file(tmp_path, monkeypatch, fast):
    if not fast:
        monkeypatch.setattr("zemosaic_xp.io.fits_header.scan_hdus", lambda p: None)
    data = np.zeros((4, 6), np.float32)
    none = _frame(tmp_path / "none.fits", data)
    with pytest.raises(ValueError, match=r"none\.fits' has no UNCERT extension"):
        uncert_hdu(none, (4, 6, 1))
    shape = _frame(tmp_path / "shape.fits", data, np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"shape\.fits' UNCERT has shape \(3, 4\)"):
        uncert_hdu(shape, (4, 6, 1))
    kind = _frame(tmp_path / "kind.fits", data, np.ones((4, 6), np.float32), utype="Weird")
    with pytest.raises(ValueError, match=r"kind\.fits' UNCERT extension has UTYPE 'Weird'"):
        uncert_hdu(kind, (4, 6, 1))
    with pytest.raises(ValueError, match=r"none\.fits' has no UNCERT"):
        uncert.check_uncert_files([(shape, (3, 4, 1)), (none, (4, 6, 1))])  # the first is fine


def test_frame_cache_reads_the_variances_once(tmp_path, monkeypatch):
    path = str(_frame(tmp_path / "f.fits", np.zeros((4, 6), np.float32), np.full((4, 6), 2.0, np.float32)))
    calls = []
    real = uncert.read_variance_planes
    monkeypatch.setattr(uncert, "read_variance_planes", lambda *a: calls.append(a) or real(*a))
    cache = FrameCache()
    first = cache.variance(path)
    assert first is cache.variance(path) and len(calls) == 1
    assert not first.flags.writeable and first.shape == (1, 4, 6)
    np.testing.assert_array_equal(first, 2.0)
    # The data planes and the variances are two entries of one budget.
    cache.planes(path)
    assert cache._plane_bytes == 2 * first.nbytes
    small = FrameCache(budget_bytes=first.nbytes - 1)  # too large to keep: read every time
    small.variance(path)
    small.variance(path)
    assert len(calls) == 3
