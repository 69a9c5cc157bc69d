"""Background extraction of the final mosaic (mosaic/background.py; ZeMosaic's final_mosaic_dbe_*).

Host NumPy code around photutils (no array-API path, so no backend parity): known
answers on synthetic skies, NaN / coverage handling, small and degenerate inputs, and the
nebula measurement against ZeMosaic's own DBE (benchmarks/dbe_nebula.py).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("photutils")

from benchmarks.dbe_nebula import measure, nebula_scene, zemosaic_dbe  # noqa: E402
from zemosaic_xp.mosaic.background import DBE_STRENGTHS, dbe_strength, extract_background  # noqa: E402


def _ours(strength):
    return lambda im: extract_background(im, strength=strength)[0].astype(np.float64)


def _flat(shape=(256, 256), sigma=10.0, seed=0):
    return 1000.0 + np.random.default_rng(seed).normal(0.0, sigma, shape)


@pytest.mark.parametrize("strength", ["normal", "strong", "aggressive"])
def test_gradient_is_removed(strength):
    scene = nebula_scene((512, 512), nebula_peak=0.0, n_stars=120)
    removed = measure(_ours(strength), scene)["gradient_removed"]
    assert removed > 0.95  # linear + quadratic, 300 ADU peak to peak, noise 10 ADU


def test_weak_removes_a_plane():
    yy, xx = np.mgrid[0:256, 0:200]
    plane = 0.6 * xx - 0.4 * yy
    image = _flat((256, 200)) + plane
    out, info = extract_background(image, strength="weak")
    resid = (image - out) - plane
    assert info["applied"] and info["degree"] == 1
    assert np.std(resid) < 0.01 * np.std(plane)


def test_flat_sky_is_left_alone():
    image = _flat()
    out, info = extract_background(image)
    assert info["applied"] and out.dtype == np.float32
    assert np.max(np.abs(out - image)) < 0.2 * 10.0  # well under the noise (10 ADU)
    assert abs(float(np.median(out)) - float(np.median(image))) < 0.5  # the sky level is kept


def test_star_cores_are_kept():
    scene = nebula_scene((256, 256), nebula_peak=0.0, gradient_ptp=0.0, n_stars=40, seed=3)
    out = extract_background(scene.sky)[0]
    peak = np.unravel_index(np.argmax(scene.sky), scene.sky.shape)
    assert abs(out[peak] - scene.sky[peak]) < 5e-3 * scene.sky[peak]  # ZeMosaic's own criterion


def test_nebula_flux_is_kept_at_least_as_well_as_zemosaic_normal():
    for scene in (nebula_scene(gradient_ptp=0.0), nebula_scene()):
        ours = measure(_ours("normal"), scene)
        theirs = measure(lambda im: zemosaic_dbe(im, "normal"), scene)
        assert ours["nebula_removed"] <= theirs["nebula_removed"]
        assert ours["nebula_removed"] < 0.10
        assert ours["gradient_removed"] >= theirs["gradient_removed"] - 1e-9 or scene.gradient.std() == 0


def test_no_data_stays_nan_and_is_not_measured():
    scene = nebula_scene((256, 256), nebula_peak=0.0)
    image = scene.sky.copy()
    image[:80, :60] = np.nan
    out, info = extract_background(image)
    assert np.all(np.isnan(out[:80, :60])) and np.all(np.isfinite(out[80:])) and info["applied"]
    # valid=False is the same as NaN, whatever the values underneath
    garbage = scene.sky.copy()
    garbage[:80, :60] = 1e9
    valid = np.ones(image.shape, bool)
    valid[:80, :60] = False
    out2, _ = extract_background(garbage, valid=valid)
    np.testing.assert_array_equal(np.isnan(out2), np.isnan(out))
    np.testing.assert_allclose(out2[80:], out[80:], rtol=0, atol=1e-3)


def test_rgb_channels_are_modelled_apart():
    scene = nebula_scene((128, 160), nebula_peak=0.0, n_stars=20)
    rgb = np.stack([scene.sky, 0.5 * scene.sky, scene.sky[::-1]], axis=-1)
    out, info = extract_background(rgb.astype(np.float32))
    assert out.shape == rgb.shape and len(info["channels"]) == 3
    for c in range(3):
        alone = extract_background(rgb[..., c].astype(np.float32))[0]
        np.testing.assert_allclose(out[..., c], alone, rtol=0, atol=1e-3)


def test_small_and_empty_inputs():
    out, info = extract_background(_flat((20, 30)))  # smaller than one box: one box, a constant
    assert info["applied"] and np.all(np.isfinite(out))
    empty = np.full((50, 50), np.nan)
    out, info = extract_background(empty)
    assert not info["applied"] and info["channels"][0]["reason"] == "too_few_valid_pixels"
    assert np.all(np.isnan(out))


@pytest.mark.parametrize(("name", "expected"), [("LOW", "weak"), ("normal", "normal"), (" high ", "strong"),
                                                ("aggressive", "aggressive")])
def test_strength_names(name, expected):
    assert dbe_strength(name) == expected and expected in DBE_STRENGTHS


@pytest.mark.parametrize("bad", ["extreme", None, 2])
def test_unknown_strength_names_the_key(bad):
    with pytest.raises(ValueError, match="final_mosaic_dbe_strength"):
        extract_background(_flat((64, 64)), strength=bad)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="image"):
        extract_background(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="valid"):
        extract_background(_flat((64, 64)), valid=np.ones((63, 64), bool))


def test_missing_photutils_names_the_key(monkeypatch):
    monkeypatch.setitem(sys.modules, "photutils", None)
    with pytest.raises(ImportError, match=r"final_mosaic_dbe_enabled.*zemosaic_xp\[dbe\]"):
        extract_background(_flat((64, 64)))
