"""zemosaic_xp.combine side by side with ccdproc.combine on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty

import zemosaic_xp

ccdproc = pytest.importorskip("ccdproc")


def _images(n=9, shape=(20, 16), seed=0, outliers=True):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        data = (100 + 5 * rng.standard_normal(shape)).astype(np.float32)
        if outliers:
            data[rng.random(shape) < 0.03] += 400  # cosmic-ray-like hits
        mask = np.zeros(shape, bool)
        mask[i, 2] = True
        out.append(CCDData(data, unit="adu", mask=mask))
    return out


def _theirs(images, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ccdproc.combine(images, **kwargs)


@pytest.mark.parametrize("method", ["average", "median", "sum"])
def test_plain_methods_agree(method):
    images = _images(outliers=False)
    ours = zemosaic_xp.combine(images, method=method)
    theirs = _theirs(images, method=method)
    np.testing.assert_allclose(ours.data, theirs.data, rtol=2e-6)
    assert ours.unit == theirs.unit
    np.testing.assert_array_equal(ours.mask, theirs.mask)


def test_median_centred_sigma_clip_keeps_the_same_survivors():
    images = _images()
    kwargs = {"sigma_clip": True, "sigma_clip_low_thresh": 2.5, "sigma_clip_high_thresh": 2.5,
              "sigma_clip_func": np.ma.median, "sigma_clip_dev_func": np.ma.std}
    ours = zemosaic_xp.combine(images, **kwargs)
    theirs = _theirs(images, **kwargs)
    # ccdproc's clip statistics include the masked samples' values (it clips the raw
    # data); ours leave them out: pixels with a masked sample may differ.
    clean = ~np.any([im.mask for im in images], axis=0)
    assert clean.sum() > 300
    np.testing.assert_allclose(ours.data[clean], theirs.data[clean], rtol=1e-5)
    # ccdproc's default centre is the mean: ours refuses it rather than differ silently.
    with pytest.raises(ValueError, match="median only"):
        zemosaic_xp.combine(images, sigma_clip=True, sigma_clip_func=np.ma.mean)


def test_mad_std_clip_agrees():
    images = _images(seed=3)
    kwargs = {"sigma_clip": True, "sigma_clip_func": "median", "sigma_clip_dev_func": "mad_std"}
    clean = ~np.any([im.mask for im in images], axis=0)  # see the test above
    np.testing.assert_allclose(zemosaic_xp.combine(images, **kwargs).data[clean],
                               _theirs(images, **kwargs).data[clean], rtol=1e-5)


def test_clip_extrema_and_minmax_clip_agree():
    images = [CCDData(np.asarray(im.data), unit="adu") for im in _images(seed=1)]  # no masks: same counts
    kwargs = {"clip_extrema": True, "nlow": 1, "nhigh": 2}
    np.testing.assert_allclose(zemosaic_xp.combine(images, **kwargs).data, _theirs(images, **kwargs).data,
                               rtol=1e-5)
    kwargs = {"minmax_clip": True, "minmax_clip_min": 90.0, "minmax_clip_max": 300.0}
    np.testing.assert_allclose(zemosaic_xp.combine(images, **kwargs).data, _theirs(images, **kwargs).data,
                               rtol=1e-5)


def test_weights_and_scale_agree_without_rejection():
    # Without masks: ccdproc's weighted average divides by the weights of masked samples too.
    images = [CCDData(np.asarray(im.data), unit="adu") for im in _images(outliers=False, seed=2)]
    weights = np.linspace(1, 2, len(images))
    np.testing.assert_allclose(zemosaic_xp.combine(images, weights=weights).data,
                               _theirs(images, weights=weights).data, rtol=1e-5)
    scale = np.linspace(0.9, 1.1, len(images))
    np.testing.assert_allclose(zemosaic_xp.combine(images, scale=scale).data,
                               _theirs(images, scale=scale).data, rtol=1e-5)


def test_uncertainty_and_output_file(tmp_path):
    images = _images(outliers=False, seed=4)
    ours = zemosaic_xp.combine(images, output_file=tmp_path / "out.fits")
    theirs = _theirs(images)
    # ccdproc divides a ddof=0 std by sqrt(n); ours is the ddof=1 sample std: sqrt(n/(n-1)) larger.
    n = np.array([np.sum(~im.mask) for im in images]).sum() / images[0].data.size
    assert isinstance(ours.uncertainty, StdDevUncertainty)
    ratio = np.median(ours.uncertainty.array / theirs.uncertainty.array)
    assert ratio == pytest.approx(np.sqrt(n / (n - 1)), rel=0.01)
    back = CCDData.read(tmp_path / "out.fits")
    np.testing.assert_array_equal(back.data, ours.data)
    np.testing.assert_array_equal(back.uncertainty.array, ours.uncertainty.array)
    with pytest.raises(FileExistsError):
        zemosaic_xp.combine(images, output_file=tmp_path / "out.fits")


def test_file_names_and_errors(tmp_path):
    images = _images(n=4, outliers=False)
    paths = []
    for i, im in enumerate(images):
        im.write(tmp_path / f"i{i}.fits")
        paths.append(str(tmp_path / f"i{i}.fits"))
    np.testing.assert_allclose(zemosaic_xp.combine(",".join(paths)).data, zemosaic_xp.combine(images).data)
    with pytest.raises(ValueError, match="method="):
        zemosaic_xp.combine(images, method="mode")
    with pytest.raises(ValueError, match="together"):
        zemosaic_xp.combine(images, sigma_clip=True, clip_extrema=True)
