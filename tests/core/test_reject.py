"""Rejection algorithms: known answers, NumPy oracles, guards, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp import StackConfig, stack
from tests.conftest import assert_on, host, on
from tests.core.reference import kappa_sigma_pixel, wsc_pixel, wsc_zemosaic_pixel

REJECTS = ["kappa_sigma", "winsorized_sigma_clip"]


def _column(values):
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


@pytest.mark.parametrize("reject", REJECTS)
def test_single_cosmic_ray_is_rejected(backend, reject):
    # Sixteen sky samples at 99/101 ADU average to exactly 100; the 5000 ADU hit must go.
    config = StackConfig.plain(reject=reject)
    result = stack(on(backend, _column([99.0, 101.0] * 8 + [5000.0])), config=config)
    assert_on(result.image, backend)
    assert int(host(result.rejected_high)[0, 0]) == 1
    assert int(host(result.rejected_low)[0, 0]) == 0
    assert float(host(result.image)[0, 0]) == 100.0
    assert int(host(result.coverage)[0, 0]) == 16


@pytest.mark.parametrize("reject", REJECTS)
def test_low_outlier_and_asymmetric_kappa(backend, reject):
    values = [99.0, 101.0] * 8 + [80.0]  # a dark sample 20σ low
    loose_low = StackConfig.plain(reject=reject, kappa_low=100.0, kappa_high=3.0)
    tight = StackConfig.plain(reject=reject, kappa_low=3.0, kappa_high=3.0)
    kept = stack(on(backend, _column(values)), config=loose_low)
    cut = stack(on(backend, _column(values)), config=tight)
    assert int(host(kept.rejected_low)[0, 0]) == 0
    assert int(host(cut.rejected_low)[0, 0]) == 1
    assert float(host(cut.image)[0, 0]) == 100.0


def test_kappa_sigma_known_answer_by_hand(backend):
    # x = 0 ×9, 1, 30: median 0, population std = sqrt(mean(x²) - mean²).
    # Pass 1: mean = 31/11, E[x²] = 901/11 -> σ ≈ 8.58; 30 > 0 + 3σ = 25.7 -> rejected.
    # Pass 2: {0 ×9, 1}: σ = 0.3; 1 > 0.9 -> rejected. Pass 3: σ = 0 -> nothing new.
    config = StackConfig.plain(reject="kappa_sigma")
    result = stack(on(backend, _column([0.0] * 9 + [1.0, 30.0])), config=config)
    assert float(host(result.image)[0, 0]) == 0.0
    assert int(host(result.rejected_high)[0, 0]) == 2
    assert result.stats["iterations"] == 3
    single = stack(on(backend, _column([0.0] * 9 + [1.0, 30.0])), config=config.replace(max_iters=1))
    assert int(host(single.rejected_high)[0, 0]) == 1
    assert float(host(single.image)[0, 0]) == pytest.approx(0.1)


def test_min_survivors_guard(backend):
    # Three samples, one far off: the default guard (3) forbids any rejection ...
    data = on(backend, _column([10.0, 10.2, 500.0]))
    guarded = stack(data, config=StackConfig.plain(reject="kappa_sigma", kappa_low=1.0, kappa_high=1.0))
    assert int(host(guarded.coverage)[0, 0]) == 3
    # ... a guard of 2 lets the outlier go but never drops below 2 survivors.
    relaxed = stack(data, config=StackConfig.plain(reject="kappa_sigma", kappa_low=0.5, kappa_high=0.5,
                                                   min_survivors=2))
    assert int(host(relaxed.coverage)[0, 0]) == 2
    assert float(host(relaxed.image)[0, 0]) == pytest.approx(10.1)


@pytest.mark.parametrize("reject", REJECTS + ["none"])
@pytest.mark.parametrize("combine", ["mean", "median"])
def test_tiny_n_edge_cases(backend, reject, combine):
    # pixel (0,0): no valid sample; (0,1): one; (0,2): two; (0,3): even count for the median.
    frames = np.full((4, 1, 4), np.nan, dtype=np.float32)
    frames[0, 0, 1] = 7.0
    frames[:2, 0, 2] = [3.0, 5.0]
    frames[:, 0, 3] = [1.0, 2.0, 3.0, 4.0]
    result = stack(on(backend, frames), config=StackConfig.plain(reject=reject, combine=combine))
    image = host(result.image)[0]
    assert np.isnan(image[0])
    assert host(result.weight_sum)[0, 0] == 0 and host(result.coverage)[0, 0] == 0
    assert image[1] == 7.0
    assert image[2] == 4.0
    assert image[3] == 2.5
    np.testing.assert_array_equal(host(result.coverage)[0], [0, 1, 2, 4])


@pytest.mark.parametrize("reject", REJECTS + ["none"])
def test_single_frame_is_returned_unchanged(backend, reject):
    frame = np.random.default_rng(0).normal(100, 5, (1, 6, 5, 3)).astype(np.float32)
    frame[0, 2, 2, 1] = np.nan
    result = stack(on(backend, frame), config=StackConfig.plain(reject=reject))
    np.testing.assert_array_equal(host(result.image), frame[0])


def test_kappa_sigma_matches_per_pixel_oracle(backend):
    rng = np.random.default_rng(11)
    data = rng.normal(50, 4, (13, 9, 8)).astype(np.float32)
    data[rng.random(data.shape) < 0.05] += rng.uniform(-60, 200, 1)[0]
    data[rng.random(data.shape) < 0.05] = np.nan
    config = StackConfig.plain(reject="kappa_sigma", kappa_low=2.5, kappa_high=2.0, min_survivors=3)
    result = stack(on(backend, data), config=config)
    image = host(result.image)
    for y in range(9):
        for x in range(8):
            kept, _, _ = kappa_sigma_pixel(data[:, y, x], 2.5, 2.0, 5, 0, 3)
            assert image[y, x] == pytest.approx(kept.mean(), rel=1e-5), (y, x)
            assert host(result.coverage)[y, x] == kept.size


@pytest.mark.parametrize("impl", ["pixinsight", "zemosaic"])
def test_wsc_matches_per_pixel_oracle(backend, impl):
    rng = np.random.default_rng(5)
    data = rng.normal(1000, 10, (12, 6, 7)).astype(np.float32)
    data[3, 2, 2] = 5e4
    data[rng.random(data.shape) < 0.03] = np.nan
    data[:, 0, 0] = np.nan
    data[1:, 0, 1] = np.nan
    config = StackConfig.plain(reject="winsorized_sigma_clip", wsc_impl=impl)
    result = stack(on(backend, data), config=config)
    image = host(result.image)
    for y in range(6):
        for x in range(7):
            if impl == "pixinsight":
                keep = wsc_pixel(data[:, y, x])[0]
            else:
                keep = wsc_zemosaic_pixel(data[:, y, x])
            expected = data[keep, y, x].astype(np.float64).mean() if keep.any() else np.nan
            np.testing.assert_allclose(image[y, x], expected, rtol=1e-5, err_msg=f"pixel {(y, x)}")


@pytest.mark.parametrize("impl", ["pixinsight", "zemosaic"])
def test_wsc_single_large_outlier_follows_the_median(backend, impl):
    # Upstream oracle: N = 12, one 10^4 hit on ~100 ADU -> result near the median, not the mean.
    rng = np.random.default_rng(13)
    values = rng.normal(100, 2, 12).astype(np.float32)
    values[4] = 1e4
    config = StackConfig.plain(reject="winsorized_sigma_clip", wsc_impl=impl)
    result = stack(on(backend, _column(values)), config=config)
    assert abs(float(host(result.image)[0, 0]) - np.median(values)) < 2.0
    assert int(host(result.rejected_high)[0, 0]) == 1


def test_iterations_are_reported_and_capped(backend):
    data = on(backend, np.random.default_rng(2).normal(0, 1, (40, 8, 8)))
    for reject, cap in (("kappa_sigma", 5), ("winsorized_sigma_clip", 10)):
        r = stack(data, config=StackConfig.plain(reject=reject))
        assert 1 <= r.stats["iterations"] <= cap
        r1 = stack(data, config=StackConfig.plain(reject=reject, max_iters=1))
        assert r1.stats["iterations"] == 1
