"""Synthetic plate-solved surveys (synthetic.make_survey)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from zemosaic_xp.io.fits import read_frame
from zemosaic_xp.synthetic import make_survey

SMALL = {"n_frames": 8, "frame_shape": (96, 128), "grid": (2, 2)}


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """The demo-sized default survey (24 frames of 256², 2 × 3 pointings)."""
    return make_survey(tmp_path_factory.mktemp("survey"))


def test_reproducible_by_seed(tmp_path):
    a = make_survey(tmp_path / "a", seed=3, **SMALL)
    b = make_survey(tmp_path / "b", seed=3, **SMALL)
    c = make_survey(tmp_path / "c", seed=4, **SMALL)
    for pa, pb in zip(a.frame_paths, b.frame_paths):
        np.testing.assert_array_equal(read_frame(pa).data, read_frame(pb).data)
    np.testing.assert_array_equal(a.truth, b.truth)
    np.testing.assert_array_equal(a.outliers, b.outliers)
    assert not np.array_equal(read_frame(a.frame_paths[1]).data, read_frame(c.frame_paths[1]).data)


def test_frames_are_plate_solved(survey):
    assert survey.n_frames == 24 and len(survey.frame_wcs) == 24
    for i, path in enumerate(survey.frame_paths):
        header = fits.getheader(path)
        wcs = WCS(header).celestial
        assert wcs.has_celestial and list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
        assert all(k in header for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2", "CRVAL1", "CRPIX1"))
        assert header["EXPTIME"] == 60.0 and header["NAXIS1"] == 256 and header["NAXIS2"] == 256
        np.testing.assert_allclose(proj_plane_pixel_scales(wcs) * 3600, 2.0, rtol=1e-6)
        ra, dec = wcs.pixel_to_world_values(127.5, 127.5)
        assert abs(ra - 150.0) < 0.2 and abs(dec - 30.0) < 0.2
        np.testing.assert_allclose(wcs.wcs.crval, survey.frame_wcs[i].wcs.crval)
    assert np.ptp(survey.rotation_deg) > 0.5 and np.abs(survey.rotation_deg).max() <= 2.0


def test_plan_lists_every_frame(survey):
    with open(survey.plan_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:2] == ["file_path", "exposure"]
    assert [survey.folder / r["file_path"] for r in rows] == survey.frame_paths
    assert all(not r["file_path"].startswith("/") and float(r["exposure"]) == 60.0 for r in rows)
    assert {r["batch_id"] for r in rows} == {"night1", "night2"}


def test_plan_without_extra_columns(tmp_path):
    s = make_survey(tmp_path, plan_extra_columns=False, **SMALL)
    header = s.plan_csv.read_text(encoding="utf-8").splitlines()[0]
    assert header == "file_path,exposure"


def test_truth_matches_frame_model(survey):
    # The frames sample the 3× oversampled truth; reprojecting the native truth with a
    # bicubic spline must agree far below the noise on the background.
    from reproject import reproject_interp
    from scipy.ndimage import maximum_filter, median_filter

    i = 5
    model = (survey.frame_model(i) - survey.offsets[i]) / survey.gains[i]
    resampled = reproject_interp((survey.truth, survey.truth_wcs), survey.frame_wcs[i],
                                 shape_out=survey.frame_shape, order="bicubic", return_footprint=False)
    assert np.isfinite(resampled).all()  # the truth canvas holds every frame
    # background: no star within 5 px (stars are where native-resolution resampling errs)
    background = maximum_filter(resampled - median_filter(resampled, 15), 11) < 20
    diff = np.abs(resampled - model)
    assert background.mean() > 0.5
    assert np.median(diff) < 0.01 * survey.noise_sigma
    assert diff[background].max() < 0.1 * survey.noise_sigma


def test_frames_are_model_plus_noise_and_recorded_outliers(survey):
    i = 7
    data = read_frame(survey.frame_paths[i]).data[..., 0]
    model = survey.frame_model(i)
    sky = (model - survey.offsets[i]) / survey.gains[i]
    z = (data - model) / (survey.gains[i] * np.sqrt(np.maximum(sky, 0) + 25.0))
    clean = ~survey.outliers[i]
    assert 0.97 < z[clean].std() < 1.03 and np.abs(z[clean]).max() < 6.5
    assert z[survey.outliers[i]].min() > 20  # every recorded outlier is a real, bright hit
    n_hits = survey.outliers.reshape(survey.n_frames, -1).sum(axis=1)
    assert (n_hits >= 25).all() and (n_hits <= 30).sum() == survey.n_frames - 1  # one frame has the trail
    assert survey.gains[0] == 1.0 and survey.offsets[0] == 0.0
    assert np.ptp(survey.gains) > 0.02 and np.ptp(survey.offsets) > 10


def test_core_is_covered_by_many_frames(survey):
    assert survey.coverage.max() >= 16
    assert (survey.coverage >= 8).mean() > 0.3
    covered = survey.coverage > 0
    assert covered.mean() > 0.75
    assert survey.truth.shape[:2] == survey.coverage.shape
    assert survey.truth.shape[1] > 2 * survey.frame_shape[1]  # several tiles wide


def test_rgb_survey(tmp_path):
    s = make_survey(tmp_path, rgb=True, **SMALL)
    assert s.truth.shape[2] == 3
    header = fits.getheader(s.frame_paths[0])
    assert header["NAXIS"] == 3 and header["NAXIS3"] == 3  # CHW on disk
    assert WCS(header).celestial.has_celestial
    frame = read_frame(s.frame_paths[0])
    assert frame.data.shape == (96, 128, 3)
    assert s.frame_model(0).shape == (96, 128, 3)


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_frames"):
        make_survey(tmp_path, n_frames=0)
