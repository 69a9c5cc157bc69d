"""Post-stack RGB equalisation: upstream oracle, gain clipping, every decision, pipeline hook."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_on, host, on
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.core.rgb import equalize_rgb
from zemosaic_xp.synthetic import make_stack


def upstream_equalize(img, gain_clip=(0.95, 1.05), bg_percentile=(5, 85)):
    """upstream_spec §2.8 in NumPy (oracle): returns (clipped gains, samples, coverage)."""
    valid = np.all(np.isfinite(img) & (img > 0), axis=-1)
    lum = np.median(img, axis=-1)
    p_lo, p_hi = np.percentile(lum[valid], bg_percentile)
    mask = valid & (lum >= p_lo) & (lum <= p_hi)
    med = np.array([np.median(img[..., c][mask]) for c in range(3)])
    target = np.median(med)
    return np.clip(target / med, *gain_clip), int(mask.sum()), mask.sum() / valid.sum()


def _cast_image(levels, shape=(100, 100), seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(50.0, 150.0, shape)
    return (base[..., None] * np.asarray(levels)).astype(np.float32)


def test_matches_upstream_oracle(backend):
    img = _cast_image([1.02, 1.0, 0.97])
    img[3, 4, 1] = np.nan        # invalid pixels are skipped and stay NaN
    img[5, 6, :] = -1.0
    out, info = equalize_rgb(on(backend, img))
    assert_on(out, backend)
    gains, samples, coverage = upstream_equalize(img)
    assert info["decision"] == "applied" and info["applied"]
    np.testing.assert_allclose(info["clipped_gains"], gains, rtol=1e-6)
    np.testing.assert_allclose([info["gain_r"], info["gain_g"], info["gain_b"]], gains, rtol=1e-6)
    assert info["samples"] == samples and info["mask_coverage"] == pytest.approx(coverage)
    np.testing.assert_allclose(host(out), img * gains.astype(np.float32), rtol=1e-6)
    assert np.isnan(host(out)[3, 4, 1])
    # The background medians now agree (the cast was within the clip range).
    np.testing.assert_allclose(info["raw_gains"], [1 / 1.02, 1.0, 1 / 0.97], rtol=1e-6)
    json.dumps(info)


def test_gains_are_clipped():
    img = _cast_image([1.0, 1.0, 0.8])
    _, info = equalize_rgb(img)
    assert info["raw_gains"][2] == pytest.approx(1.25, rel=1e-6)
    assert info["clipped_gains"] == [1.0, 1.0, 1.05]
    _, info = equalize_rgb(img, gain_clip=(0.5, 2.0))
    assert info["clipped_gains"][2] == pytest.approx(1.25, rel=1e-6)


@pytest.mark.parametrize(("image", "kwargs", "decision"), [
    (_cast_image([1.0, 1.1, 1.0], shape=(50, 50)), {}, "insufficient_samples"),       # 2000 < 5000
    (_cast_image([1.0, 1.1, 1.0]), {"min_coverage": 0.9}, "insufficient_coverage"),    # 80 % < 90 %
    (np.full((80, 80, 3), np.nan, np.float32), {}, "no_valid_pixels"),
    (-_cast_image([1.0, 1.1, 1.0]), {}, "no_valid_pixels"),
    (_cast_image([1.0, 1.1, 1.0])[..., :2], {}, "non_rgb"),
    (_cast_image([1.0])[..., 0], {}, "non_rgb"),
])
def test_no_op_decisions(image, kwargs, decision):
    out, info = equalize_rgb(image, **kwargs)
    assert info["decision"] == decision and not info["applied"]
    assert out is image
    assert (info["gain_r"], info["gain_g"], info["gain_b"]) == (1.0, 1.0, 1.0)


def test_opt_in_through_the_stack():
    s = make_stack(n_frames=5, shape=(96, 96), seed=2, rgb=True, cosmic_rays_per_frame=0, trails=0)
    off = stack(s.frames)
    assert off.stats["rgb_equalization"]["decision"] == "disabled"
    assert off.stats["rgb_equalization"]["enabled"] is False
    on_ = stack(s.frames, config=StackConfig(rgb_equalize=True))
    info = on_.stats["rgb_equalization"]
    assert info["decision"] == "applied" and info["enabled"]
    # The synthetic sky is tinted (1, 0.9, 0.75): every gain hits the clip range.
    np.testing.assert_allclose(on_.image, off.image * np.float32(info["clipped_gains"]), rtol=1e-6)
    assert info["clipped_gains"] == [0.95, 1.0, 1.05]
    json.dumps(on_.stats)


def test_mono_stack_reports_non_rgb():
    s = make_stack(n_frames=3, shape=(16, 16), seed=1)
    r = stack(s.frames, config=StackConfig(rgb_equalize=True))
    assert r.stats["rgb_equalization"]["decision"] == "non_rgb"


def test_band_invariance_and_backends(backend):
    s = make_stack(n_frames=4, shape=(80, 72), seed=5, rgb=True)
    config = StackConfig.plain(rgb_equalize=True, rgb_equalize_min_samples=1000)
    whole = stack_frames(on(backend, s.frames), config=config, band_rows=80)
    banded = stack_frames(on(backend, s.frames), config=config, band_rows=7)
    np.testing.assert_array_equal(host(banded.image), host(whole.image))
    assert banded.stats["rgb_equalization"] == whole.stats["rgb_equalization"]
    numpy_run = stack_frames(s.frames, config=config, band_rows=80)
    np.testing.assert_allclose(whole.stats["rgb_equalization"]["clipped_gains"],
                               numpy_run.stats["rgb_equalization"]["clipped_gains"], rtol=1e-6)
