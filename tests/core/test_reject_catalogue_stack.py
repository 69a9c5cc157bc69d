"""Catalogue rejections in the whole pipeline: backends, bands, outliers, sky gradients.

Also the host-side helpers they rely on: Student-t / GESD critical values and the
O(log N) MAD of a sorted range.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from array_api_compat import numpy as np_xp
from scipy import stats

from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.reject.gesd_table import gesd_critical_values, normal_isf, student_t_isf
from zemosaic_xp.core.nanstats import sort_valid
from zemosaic_xp.core.reject import reject
from zemosaic_xp.core.samples import Samples
from zemosaic_xp.core.sorted_rows import mad_sorted
from zemosaic_xp.core.stack import stack_frames
from zemosaic_xp.synthetic import make_stack
from tests.conftest import assert_on, host, on

CATALOGUE = ["winsorized_quantile", "linear_fit_clip", "percentile", "mad", "gesd", "minmax"]
ALL_REJECTS = ["kappa_sigma", "winsorized_sigma_clip"] + CATALOGUE


@pytest.fixture(scope="module")
def rgb_stack():
    return make_stack(n_frames=11, shape=(20, 18), seed=4, rgb=True, cosmic_rays_per_frame=6)


@pytest.mark.parametrize("reject_name", CATALOGUE)
@pytest.mark.parametrize(("normalize", "combine"), [("median", "mean"), ("additive_scaling", "median")])
def test_backend_parity(backend, rgb_stack, reject_name, normalize, combine):
    config = StackConfig(reject=reject_name, normalize=normalize, combine=combine, weighting="noise_variance")
    expected = stack(rgb_stack.frames, config=config)
    got = stack(on(backend, rgb_stack.frames), config=config)
    for name in ("image", "weight_sum"):
        assert_on(getattr(got, name), backend)
        np.testing.assert_allclose(host(getattr(got, name)), getattr(expected, name), rtol=1e-5, atol=1e-3)
    for name in ("coverage", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(host(getattr(got, name)), getattr(expected, name))


@pytest.mark.parametrize("reject_name", CATALOGUE)
def test_band_size_invariance(backend, rgb_stack, reject_name):
    config = StackConfig(reject=reject_name, radial_weight=True)
    frames = on(backend, rgb_stack.frames)
    whole = stack_frames(frames, config=config, band_rows=rgb_stack.frames.shape[1])
    for rows in (1, 7):
        banded = stack_frames(frames, config=config, band_rows=rows)
        for name in ("image", "weight_sum", "coverage", "rejected_low", "rejected_high"):
            np.testing.assert_array_equal(host(getattr(banded, name)), host(getattr(whole, name)),
                                          err_msg=f"{name} with {rows} rows per band")
        assert banded.stats["iterations"] == whole.stats["iterations"]


def _assert_outliers_removed(s, reject_name):
    """Every injected hit counted in rejected_high; hit pixels land on the clean stack."""
    config = StackConfig.plain(reject=reject_name)
    result = stack(s.frames, config=config)
    hit = s.outliers.any(axis=0)
    n_hits = s.outliers.sum(axis=0)
    survivors = int(np.sum(np.maximum(n_hits - result.rejected_high, 0)[hit]))
    assert survivors == 0, f"{reject_name}: {survivors} injected outliers survived"
    clean = s.frames.copy()
    clean[s.outliers] = np.nan
    reference = stack(clean, config=config)
    sigma_mean = np.sqrt(np.maximum(s.truth, 0) + 5.0**2) / np.sqrt(s.frames.shape[0])
    assert np.max(np.abs(result.image - reference.image)[hit] / sigma_mean[hit]) < 3.0


@pytest.mark.parametrize("reject_name", [r for r in ALL_REJECTS if r != "minmax"])
def test_dense_cosmic_rays_and_trails_leave_no_survivor(reject_name):
    # 30 hits per frame and two trails over 24 frames: up to 3 hits on one pixel.
    s = make_stack(n_frames=24, shape=(64, 64), seed=3, gain_spread=0.0, offset_spread=0.0,
                   nan_region=False, cosmic_rays_per_frame=30, trails=2)
    assert s.outliers.sum(axis=0).max() == 3
    _assert_outliers_removed(s, reject_name)


@pytest.mark.parametrize("reject_name", ALL_REJECTS)
def test_sparse_cosmic_rays_and_trail_leave_no_survivor(reject_name):
    # minmax drops exactly minmax_high = 1 sample per pixel, so it can only remove every
    # hit where no pixel is hit twice; this seed has one trail and no double hit.
    s = make_stack(n_frames=24, shape=(64, 64), seed=9, gain_spread=0.0, offset_spread=0.0,
                   nan_region=False, cosmic_rays_per_frame=4, trails=1)
    assert s.outliers.sum(axis=0).max() == 1
    _assert_outliers_removed(s, reject_name)


@pytest.mark.parametrize("reject_name", ALL_REJECTS)
def test_plain_stack_is_unchanged_within_noise(reject_name):
    s = make_stack(n_frames=24, shape=(64, 64), seed=5, gain_spread=0.0, offset_spread=0.0,
                   nan_region=False, cosmic_rays_per_frame=0, trails=0)
    plain = stack(s.frames, config=StackConfig.plain())
    result = stack(s.frames, config=StackConfig.plain(reject=reject_name))
    sigma_mean = np.sqrt(np.maximum(s.truth, 0) + 5.0**2) / np.sqrt(24)
    delta = (result.image - plain.image) / sigma_mean
    assert abs(delta.mean()) < 0.05            # no bias
    assert np.abs(delta).max() < 4.0           # no pixel moves beyond noise
    noise = np.std((result.image - s.truth) / sigma_mean)
    plain_noise = np.std((plain.image - s.truth) / sigma_mean)
    assert noise < 1.2 * plain_noise           # at most 20 % efficiency lost on clean data


def _keep_mask(frames, reject_name, **config):
    """Per-pixel keep mask (P, N) straight from the core rejection."""
    n = frames.shape[0]
    x = np.ascontiguousarray(np.moveaxis(frames, 0, -1).reshape(-1, n))
    return reject(Samples(x, None, xp=np_xp), StackConfig.plain(reject=reject_name, **config)).keep


def test_linear_fit_clip_keeps_gradient_tails_that_kappa_sigma_cuts():
    # The Moon rises 60 % into a 24-frame session: from then on every frame carries a
    # sky gradient (a ramp of 200 to 400 ADU across the frame at the last frame) that
    # grows linearly, and it is not normalised away. Each pixel's sorted stack is flat,
    # then a straight ramp: its upper 9 frames are a long but legitimate tail.
    # Median-centred κ-σ at κ = 3 eats 5 of them, frame by frame; the line through the
    # sorted stack explains the ramp and keeps every sample.
    rng = np.random.default_rng(0)
    n, h, w = 24, 16, 16
    level = np.maximum(np.arange(n) / (n - 1) - 0.6, 0.0) / 0.4
    ramp = np.broadcast_to(np.linspace(0.5, 1.0, w), (h, w))
    frames = (1000 + 400 * level[:, None, None] * ramp + rng.normal(0, 2, (n, h, w))).astype(np.float32)
    kappa = _keep_mask(frames, "kappa_sigma")
    linear = _keep_mask(frames, "linear_fit_clip")
    assert not kappa[:, -5:].any()                      # κ-σ drops the 5 brightest frames everywhere
    assert linear.all()                                 # the line keeps the whole tail (and the rest)
    # Same κ, same data: the difference is the model, not the threshold.
    assert StackConfig.plain(reject="kappa_sigma").kappa_high == StackConfig.plain(
        reject="linear_fit_clip").kappa_high == 3.0


class TestGesdTable:
    def test_matches_grubbs_two_sided_table(self):
        # λ_n at α = 0.05 is Grubbs' two-sided critical value (Grubbs 1969, NIST table).
        grubbs = [1.1543, 1.4812, 1.7150, 1.8871, 2.0200, 2.1266, 2.2150, 2.2900]
        values = gesd_critical_values(10, 0.05)
        assert values[:3] == (math.inf,) * 3
        np.testing.assert_allclose(values[3:], grubbs, atol=1e-4)

    @pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 30, 100, 1000, 20000])
    def test_student_t_quantiles_match_scipy(self, df):
        for q in (0.4, 0.1, 0.025, 1e-3, 1e-5, 1e-7, 1e-10):
            assert student_t_isf(q, df) == pytest.approx(stats.t.isf(q, df), rel=1e-9)

    def test_normal_quantiles_match_scipy(self):
        for q in (0.9, 0.5, 0.1, 1e-4, 1e-12):
            assert normal_isf(q) == pytest.approx(stats.norm.isf(q), rel=1e-12, abs=1e-15)

    def test_critical_values_match_scipy_for_large_stacks(self):
        values = gesd_critical_values(500, 0.01)
        for n in (3, 17, 128, 500):
            t = stats.t.ppf(1 - 0.01 / (2 * n), n - 2)
            assert values[n] == pytest.approx((n - 1) * t / math.sqrt(n * (n - 2 + t * t)), rel=1e-9)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="`q` must be in"):
            student_t_isf(0.7, 5)
        with pytest.raises(ValueError, match="`df` must be >= 1"):
            student_t_isf(0.1, 0)


def test_mad_of_sorted_ranges_matches_numpy():
    rng = np.random.default_rng(7)
    rows = np.round(rng.normal(0, 3, (400, 9)), 0).astype(np.float32)  # many ties
    rows[rng.random(rows.shape) < 0.2] = np.nan
    s, n = sort_valid(rows, xp=np_xp)
    lo = np.minimum(rng.integers(0, 3, (400, 1)), n)
    hi = np.maximum(lo, n - rng.integers(0, 3, (400, 1)))
    centre = rng.normal(0, 2, (400, 1)).astype(np.float32)
    got = mad_sorted(s, (hi - lo)[:, 0], centre[:, 0], xp=np_xp, lo=lo[:, 0])
    for i in range(400):
        part = s[i, lo[i, 0]:hi[i, 0]]
        expected = np.median(np.abs(part - centre[i, 0])) if part.size else np.nan
        np.testing.assert_allclose(got[i], expected, rtol=1e-6, err_msg=f"row {i}")
