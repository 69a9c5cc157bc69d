"""Catalogue rejections: hand-computed answers, per-pixel oracles, guards and edge cases.

Pipeline-level checks (backend parity of whole stacks, band invariance, injected
outliers) are in test_reject_catalogue_stack.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp import StackConfig, stack
from tests.conftest import assert_on, host, on
from tests.core import reference_catalogue as ref

CATALOGUE = ["winsorized_quantile", "linear_fit_clip", "percentile", "mad", "gesd", "minmax"]


def _column(values):
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


def _one(backend, values, **config):
    result = stack(on(backend, _column(values)), config=StackConfig.plain(**config))
    assert_on(result.image, backend)
    return (float(host(result.image)[0, 0]), int(host(result.rejected_low)[0, 0]),
            int(host(result.rejected_high)[0, 0]), int(host(result.coverage)[0, 0]), result)


class TestKnownAnswers:
    def test_percentile(self, backend):
        # median 100; low limit 100 - 0.2*100 = 80 drops 70, high limit 110 drops 130.
        image, low, high, cov, _ = _one(backend, [100, 101, 99, 130, 70, 100, 102], reject="percentile")
        assert (low, high, cov) == (1, 1, 5)
        assert image == pytest.approx(502 / 5)

    def test_percentile_negative_median_uses_its_magnitude(self, backend):
        # median -100, |m| = 100: -150 is 50 below (> 20) -> low; -85 is 15 above (> 10) -> high.
        image, low, high, cov, _ = _one(backend, [-100, -101, -99, -150, -100, -85], reject="percentile")
        assert (low, high, cov) == (1, 1, 4)
        assert image == pytest.approx(-100.0)

    def test_minmax(self, backend):
        image, low, high, cov, _ = _one(backend, [5, 1, 9, 3, 7], reject="minmax")
        assert (image, low, high, cov) == (5.0, 1, 1, 3)
        # 2 low + 1 high would leave 2 < min_survivors = 3: the pixel keeps all five.
        image, low, high, cov, _ = _one(backend, [5, 1, 9, 3, 7], reject="minmax", minmax_low=2)
        assert (image, low, high, cov) == (5.0, 0, 0, 5)

    def test_minmax_ties_drop_exactly_one_frame_each_side(self, backend):
        # Five equal values: frame 0 counts as the lowest, frame 4 as the highest, so
        # the kept weights are 2 + 3 + 4 on every backend.
        frames = on(backend, _column([2.0] * 5))
        weights = on(backend, [1.0, 2.0, 3.0, 4.0, 5.0])
        r = stack(frames, weights=weights, config=StackConfig.plain(reject="minmax"))
        assert float(host(r.weight_sum)[0, 0]) == 9.0
        assert (int(host(r.rejected_low)[0, 0]), int(host(r.rejected_high)[0, 0])) == (1, 1)
        assert int(host(r.coverage)[0, 0]) == 3

    def test_mad(self, backend):
        # Pass 1: median 12.5, |x - 12.5| sorted 0.5 0.5 1.5 1.5 2.5 87.5 -> MAD 1.5,
        # σ = 2.224, bounds 12.5 ± 6.67 -> 100 goes. Pass 2: median 12, MAD 1,
        # bounds 12 ± 4.45 keep all -> converged after 2 iterations.
        image, low, high, cov, r = _one(backend, [10, 11, 12, 13, 14, 100], reject="mad")
        assert (image, low, high, cov) == (12.0, 0, 1, 5)
        assert r.stats["iterations"] == 2

    def test_linear_fit_clip(self, backend):
        # y = 0..8, 30 against rank 0..9: OLS slope 1770/825 = 2.145, intercept -3.055;
        # mean |residual| = 3.894; the residual of 30 is 13.75 > 3σ = 11.68 -> high.
        # Pass 2: 0..8 is an exact line (no residual) -> converged after 2 iterations.
        image, low, high, cov, r = _one(backend, list(range(9)) + [30], reject="linear_fit_clip")
        assert (image, low, high, cov) == (4.0, 0, 1, 9)
        assert r.stats["iterations"] == 2

    def test_gesd(self, backend):
        # n = 7, r = floor(0.3·7) = 2. Step 1: mean 15.71, s = 15.12, R1 = 34.29/15.12 =
        # 2.27 > λ(7) = 2.020 (Grubbs' two-sided 5 % value). Step 2 (50 removed): mean 10,
        # s = 0.141, R2 = 0.2/0.141 = 1.41 < λ(6) = 1.887. One outlier.
        image, low, high, cov, _ = _one(backend, [10, 10.1, 9.9, 10.2, 9.8, 10, 50], reject="gesd")
        assert (low, high, cov) == (0, 1, 6)
        assert image == pytest.approx(10.0)

    def test_gesd_sees_through_masking(self, backend):
        # Two equal outliers mask each other for a one-at-a-time test (step 1 alone is
        # not significant), but step 2 is, so GESD removes both.
        values = [10, 10.1, 9.9, 10.2, 9.8, 10, 10.1, 9.9, 12, 12]
        _, low, high, cov, _ = _one(backend, values, reject="gesd")
        keep, n_low, n_high = ref.gesd_pixel(values)
        assert (low, high, cov) == (n_low, n_high, int(keep.sum())) == (0, 2, 8)

    def test_winsorized_quantile_and_its_small_n_weakness(self, backend):
        # Upstream hazard (upstream_spec §2.6.2): N = 8, one 5e4 hit on a 1000 ADU sky.
        # Winsorising at 5 %/95 % interpolates: q95 = 1000 + 0.65·49000 = 32850. The inner
        # 3σ clip drops 32850 (std 10533), so m = 1000, σ = 0 and the hit is rejected.
        values = [1000.0] * 7 + [5e4]
        image, low, high, cov, _ = _one(backend, values, reject="winsorized_quantile")
        assert (image, low, high, cov) == (1000.0, 0, 1, 7)
        # Re-winsorising (ZeMosaic's default) puts it back at 32850: (7·1000 + 32850)/8.
        image, low, high, cov, _ = _one(backend, values, reject="winsorized_quantile",
                                        winsor_rewinsor=True)
        assert image == pytest.approx(4981.25)
        assert (low, high, cov) == (0, 1, 8)


def _random_stack(seed, n=13, shape=(7, 6), nan_fraction=0.05):
    rng = np.random.default_rng(seed)
    data = rng.normal(50, 4, (n,) + shape).astype(np.float32)
    hits = rng.random(data.shape) < 0.06
    data[hits] += rng.choice([-40.0, 90.0, 400.0], hits.sum()).astype(np.float32)
    data[rng.random(data.shape) < nan_fraction] = np.nan
    data[:, 0, 0] = np.nan          # no valid sample
    data[1:, 0, 1] = np.nan         # one valid sample
    data[2:, 0, 2] = np.nan         # two valid samples
    data[:, 0, 3] = 7.0             # all equal
    return data


ORACLES = {
    "percentile": lambda v: ref.percentile_pixel(v),
    "minmax": lambda v: ref.minmax_pixel(v),
    "mad": lambda v: ref.mad_pixel(v),
    "linear_fit_clip": lambda v: ref.linear_fit_pixel(v),
    "gesd": lambda v: ref.gesd_pixel(v),
    "winsorized_quantile": lambda v: ref.winsorized_quantile_pixel(v)[:3],
}


@pytest.mark.filterwarnings("ignore:Input data contains invalid values")
@pytest.mark.parametrize("reject", CATALOGUE)
def test_matches_per_pixel_oracle(backend, reject):
    data = _random_stack(11)
    result = stack(on(backend, data), config=StackConfig.plain(reject=reject))
    image, cov = host(result.image), host(result.coverage)
    low, high = host(result.rejected_low), host(result.rejected_high)
    for y in range(data.shape[1]):
        for x in range(data.shape[2]):
            keep, n_low, n_high = ORACLES[reject](data[:, y, x])
            where = f"pixel {(y, x)}"
            assert (cov[y, x], low[y, x], high[y, x]) == (keep.sum(), n_low, n_high), where
            expected = data[keep, y, x].astype(np.float64).mean() if keep.any() else np.nan
            np.testing.assert_allclose(image[y, x], expected, rtol=1e-5, err_msg=where)


@pytest.mark.parametrize("reject", CATALOGUE)
def test_rejection_maps_account_for_every_valid_sample(backend, reject):
    data = _random_stack(3)
    result = stack(on(backend, data), config=StackConfig.plain(reject=reject))
    n_valid = np.isfinite(data).sum(axis=0)
    total = host(result.coverage) + host(result.rejected_low) + host(result.rejected_high)
    np.testing.assert_array_equal(total, n_valid)
    counted = result.stats["rejected_low_count"] + result.stats["rejected_high_count"]
    assert counted == int(host(result.rejected_low).sum() + host(result.rejected_high).sum())
    assert result.stats["rejected_low_fraction"] == pytest.approx(
        result.stats["rejected_low_count"] / n_valid.sum())
    assert result.stats["rejected_high_fraction"] == pytest.approx(
        result.stats["rejected_high_count"] / n_valid.sum())


@pytest.mark.parametrize("reject", CATALOGUE)
@pytest.mark.parametrize("min_survivors", [1, 3, 6])
def test_min_survivors_is_honoured(reject, min_survivors):
    rng = np.random.default_rng(min_survivors)
    data = rng.normal(0, 1, (8, 10, 10)).astype(np.float32)
    data[:4] += rng.uniform(20, 200, (4, 10, 10)).astype(np.float32)  # half the frames are "outliers"
    data[5:, :3, :] = np.nan
    result = stack(data, config=StackConfig.plain(reject=reject, min_survivors=min_survivors,
                                                  kappa_low=0.5, kappa_high=0.5,
                                                  percentile_low=0.01, percentile_high=0.01,
                                                  minmax_low=3, minmax_high=3))
    n_valid = np.isfinite(data).sum(axis=0)
    assert np.all(result.coverage >= np.minimum(n_valid, min_survivors))


@pytest.mark.parametrize("reject", CATALOGUE)
@pytest.mark.parametrize("combine", ["mean", "median", "sum", "min", "max"])
def test_tiny_n_edge_cases(backend, reject, combine):
    # pixel 0: no valid sample; 1: one; 2: two; 3: four (even count, nothing to reject).
    frames = np.full((4, 1, 4), np.nan, dtype=np.float32)
    frames[0, 0, 1] = 7.0
    frames[:2, 0, 2] = [3.0, 5.0]
    frames[:, 0, 3] = [1.0, 2.0, 3.0, 4.0]
    result = stack(on(backend, frames), config=StackConfig.plain(reject=reject, combine=combine))
    image = host(result.image)[0]
    expected = {"mean": [7, 4, 2.5], "median": [7, 4, 2.5], "sum": [7, 8, 10], "min": [7, 3, 1],
                "max": [7, 5, 4]}[combine]
    assert np.isnan(image[0])
    np.testing.assert_array_equal(image[1:], expected)
    np.testing.assert_array_equal(host(result.coverage)[0], [0, 1, 2, 4])
    assert host(result.weight_sum)[0, 0] == 0


@pytest.mark.parametrize("reject", CATALOGUE)
def test_single_frame_and_nan_frame(backend, reject):
    frame = np.random.default_rng(0).normal(100, 5, (1, 6, 5, 3)).astype(np.float32)
    frame[0, 2, 2, 1] = np.nan
    result = stack(on(backend, frame), config=StackConfig.plain(reject=reject))
    np.testing.assert_array_equal(host(result.image), frame[0])
    # An all-NaN frame in a stack is simply "no data" for every pixel.
    frames = np.random.default_rng(1).normal(100, 5, (6, 4, 4)).astype(np.float32)
    frames[2] = np.nan
    with_nan = stack(on(backend, frames), config=StackConfig.plain(reject=reject))
    without = stack(on(backend, np.delete(frames, 2, axis=0)), config=StackConfig.plain(reject=reject))
    np.testing.assert_allclose(host(with_nan.image), host(without.image), rtol=1e-6)


@pytest.mark.parametrize("reject", ["mad", "linear_fit_clip", "winsorized_quantile"])
def test_asymmetric_kappa(backend, reject):
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(100, 1, 20), [80.0]]).astype(np.float32)  # 20σ low
    _, low, _, _, _ = _one(backend, values, reject=reject, kappa_low=100.0, kappa_high=3.0)
    assert low == 0
    _, low, _, _, _ = _one(backend, values, reject=reject, kappa_low=3.0, kappa_high=3.0)
    assert low == 1


@pytest.mark.parametrize(("reject", "cap"), [("mad", 5), ("linear_fit_clip", 10), ("winsorized_quantile", 5)])
def test_iterations_are_reported_and_capped(reject, cap):
    data = np.random.default_rng(2).standard_t(3, (40, 8, 8)).astype(np.float32)
    r = stack(data, config=StackConfig.plain(reject=reject))
    assert 1 <= r.stats["iterations"] <= cap and r.stats["max_iters"] == cap
    if reject != "winsorized_quantile":  # its inner clip is upstream's fixed 5 passes
        assert stack(data, config=StackConfig.plain(reject=reject, max_iters=1)).stats["iterations"] == 1


def test_gesd_iterations_are_esd_steps():
    data = np.random.default_rng(2).normal(0, 1, (20, 4, 4)).astype(np.float32)
    assert stack(data, config=StackConfig.plain(reject="gesd")).stats["iterations"] == 6  # floor(0.3·20)
    r = stack(data, config=StackConfig.plain(reject="gesd", gesd_outlier_fraction=0.1))
    assert r.stats["iterations"] == 2


@pytest.mark.filterwarnings("ignore:Input data contains invalid values")
def test_winsorized_quantile_rewinsor_matches_oracle():
    data = _random_stack(5, nan_fraction=0.0)
    result = stack(data, config=StackConfig.plain(reject="winsorized_quantile", winsor_rewinsor=True))
    for y in range(data.shape[1]):
        for x in range(data.shape[2]):
            v = data[:, y, x]
            keep, n_low, n_high, q = ref.winsorized_quantile_pixel(v)
            valid = np.isfinite(v)
            refill = np.where(keep | ~valid, v, np.clip(v, *q) if q else v)
            expected = refill[valid].astype(np.float64).mean() if valid.any() else np.nan
            np.testing.assert_allclose(result.image[y, x], expected, rtol=1e-5, err_msg=f"{(y, x)}")
            assert result.coverage[y, x] == valid.sum()
            assert (result.rejected_low[y, x], result.rejected_high[y, x]) == (n_low, n_high)
