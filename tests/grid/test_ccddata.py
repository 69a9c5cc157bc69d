"""Grid runs over CCDData.write files: MASK = no data, one BUNIT for every frame, kept by the mosaic
(their UNCERT with weighting="uncertainty": test_uncert_weighting.py)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.wcs import WCS

from zemosaic_xp import run_grid_mode
from zemosaic_xp.grid.geometry import build_global_grid
from zemosaic_xp.grid.plan import load_stack_plan
from zemosaic_xp.io.framecache import FrameCache

from .frames_util import tan_wcs, write_frames

_CONFIG = {"grid_size_factor": 1.0, "batch_overlap_pct": 20, "stacking_rejection_algorithm": "kappa_sigma"}


def _as_ccddata(paths, *, unit="electron", masks=None, nan_instead=False):
    """Rewrite plain frames as CCDData.write files (WCS, unit, MASK, UNCERT)."""
    for i, path in enumerate(paths):
        with fits.open(path) as hdul:
            data = np.asarray(hdul[0].data, dtype=np.float32)
            wcs = WCS(hdul[0].header)
        mask = np.zeros(data.shape, bool) if masks is None or masks[i] is None else masks[i]
        if nan_instead:
            data = np.where(mask, np.float32(np.nan), data)
            mask = None
        ccd = CCDData(data, unit=unit, wcs=wcs, mask=mask, uncertainty=StdDevUncertainty(np.full(data.shape, 5.0)))
        ccd.write(path, overwrite=True)


def _grid(folder):
    return build_global_grid(load_stack_plan(folder).entries, grid_size_factor=1.0, overlap_fraction=0.2)


def _survey(folder, **kw):
    paths = write_frames(folder, n=4, shape=(40, 48), rows=2, seed=5)
    masks = [None] * len(paths)
    masks[0] = np.zeros((40, 48), bool)
    masks[0][10:25, 5:30] = True  # a masked block inside frame 0
    masks[2] = np.zeros((40, 48), bool)
    masks[2][::7, :] = True  # masked rows
    _as_ccddata(paths, masks=masks, **kw)
    return paths


def test_mask_is_no_data_and_the_mosaic_keeps_the_unit(tmp_path):
    _survey(tmp_path / "masked")
    _survey(tmp_path / "nan", nan_instead=True)
    masked = run_grid_mode(tmp_path / "masked", tmp_path / "out_masked", config=_CONFIG)
    nan = run_grid_mode(tmp_path / "nan", tmp_path / "out_nan", config=_CONFIG)
    with fits.open(masked.mosaic_path) as a, fits.open(nan.mosaic_path) as b:
        # MASK → no data: the same mosaic as NaN in the data, bit for bit.
        np.testing.assert_array_equal(a[0].data, b[0].data)
        np.testing.assert_array_equal(a["UNCERT"].data, b["UNCERT"].data)
        assert a[0].header["BUNIT"] == "electron"
        assert a["UNCERT"].header["BUNIT"] == "electron"
    back = CCDData.read(masked.mosaic_path)
    assert back.unit == "electron"
    plain = run_grid_mode(tmp_path / "masked", tmp_path / "out_plain",
                          config={**_CONFIG, "stacking_rejection_algorithm": "none"})
    assert plain.mosaic_path.exists()


def test_frames_without_mask_give_the_plain_mosaic(tmp_path):
    # A CCDData.write file without masked pixels reads like the plain frame.
    plain_paths = write_frames(tmp_path / "plain", n=4, shape=(40, 48), rows=2, seed=5)
    ccd_paths = write_frames(tmp_path / "ccd", n=4, shape=(40, 48), rows=2, seed=5)
    _as_ccddata(ccd_paths)
    cache = FrameCache()
    for a, b in zip(plain_paths, ccd_paths):
        np.testing.assert_array_equal(cache.planes(str(a))[1], cache.planes(str(b))[1])
        assert cache.entry(str(b)).has_mask and not cache.entry(str(a)).has_mask


def test_mixed_units_are_named(tmp_path):
    paths = write_frames(tmp_path, n=4, shape=(40, 48), rows=2, seed=5)
    _as_ccddata(paths)
    _as_ccddata(paths[2:3], unit="adu")
    with pytest.raises(ValueError, match=r"frame_002.fits' has BUNIT adu but '.*frame_000.fits' has electron"):
        _grid(tmp_path)
    with fits.open(paths[2], mode="update") as hdul:
        del hdul[0].header["BUNIT"]
    with pytest.raises(ValueError, match="has BUNIT None but"):
        _grid(tmp_path)


def test_shared_unit_on_the_grid(tmp_path):
    paths = write_frames(tmp_path, n=4, shape=(40, 48), rows=2, seed=5)
    assert _grid(tmp_path).unit is None
    _as_ccddata(paths)
    assert _grid(tmp_path).unit == "electron"


@pytest.mark.parametrize("layout", ["hw", "chw", "hwc"])
def test_mask_shapes(tmp_path, layout):
    rng = np.random.default_rng(1)
    data = rng.standard_normal((3, 6, 5)).astype(np.float32)  # CHW as written
    mask = np.zeros((3, 6, 5), bool)
    mask[1, 2, 3] = True
    mask[:, 4, 0] = True
    written = {"hw": mask.any(axis=0), "chw": mask, "hwc": np.moveaxis(mask, 0, -1)}[layout]
    path = tmp_path / "f.fits"
    header = tan_wcs(150.0, 30.0, (6, 5)).to_header()
    fits.HDUList([fits.PrimaryHDU(data, header=header),
                  fits.ImageHDU(written.astype(np.uint8), name="MASK")]).writeto(path)
    planes = FrameCache().planes(str(path))[1]
    expected = mask.any(axis=0)[None].repeat(3, 0) if layout == "hw" else mask
    np.testing.assert_array_equal(np.isnan(planes), expected)
    bad = tmp_path / "bad.fits"
    fits.HDUList([fits.PrimaryHDU(data, header=header),
                  fits.ImageHDU(np.zeros((2, 2), np.uint8), name="MASK")]).writeto(bad)
    with pytest.raises(ValueError, match="bad.fits' MASK has shape"):
        FrameCache().planes(str(bad))

