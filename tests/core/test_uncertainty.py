"""Uncertainty map: known answers, calibration on Gaussian noise, parity, band invariance, edges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import assert_on, host, on, stack_other_implementation
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.uncertainty import clip_variance_factor, mean_variance_factor
from zemosaic_xp.synthetic import make_stack

# Pixel 0: 1, 2, 3, 6 and a NaN. Pixel 1: nothing valid. Pixel 2: a single 5. Pixel 3: 4, 8.
FRAMES = np.array([[1.0, np.nan, np.nan, 4.0], [2.0, np.nan, 5.0, 8.0], [3.0, np.nan, np.nan, np.nan],
                   [6.0, np.nan, np.nan, np.nan], [np.nan, np.nan, np.nan, np.nan]], dtype=np.float32)[:, None, :]


def _sample_var(values):
    m = sum(values) / len(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def test_known_answers(backend):
    data = on(backend, FRAMES)
    r = stack(data, config=StackConfig.plain())
    assert_on(r.uncertainty, backend)
    u = host(r.uncertainty)[0]
    assert u[0] == pytest.approx(math.sqrt(_sample_var([1, 2, 3, 6]) / 4), rel=1e-6)
    assert np.isnan(u[1]) and np.isnan(u[2])  # no sample / a single one
    assert u[3] == pytest.approx(2.0, rel=1e-6)  # s = 2·sqrt(2), n = 2
    # The sum's error is n times the mean's; the median's (π/2)/(n + 1.39) · s².
    r = stack(data, config=StackConfig.plain(combine="sum"))
    assert host(r.uncertainty)[0, 0] == pytest.approx(4 * math.sqrt(_sample_var([1, 2, 3, 6]) / 4), rel=1e-6)
    r = stack(data, config=StackConfig.plain(combine="median"))
    expected = math.sqrt(math.pi / 2 / (4 + 1.39) * _sample_var([1, 2, 3, 6]))
    assert host(r.uncertainty)[0, 0] == pytest.approx(expected, rel=1e-6)
    assert host(r.uncertainty)[0, 3] == pytest.approx(2.0, rel=1e-6)  # median of two = mean
    r = stack(data, config=StackConfig.plain(combine="max"))
    assert np.all(np.isnan(host(r.uncertainty)))


def test_weighted_known_answer(backend):
    # SE² = Σ w²(x − μ)² / (W² − Σw²) over the survivors of pixel 0.
    w = [1.0, 3.0, 1.0, 2.0, 1.0]
    r = stack(on(backend, FRAMES), weights=on(backend, w), config=StackConfig.plain())
    x = [1.0, 2.0, 3.0, 6.0]
    ww = w[:4]
    big_w = sum(ww)
    mu = sum(a * b for a, b in zip(ww, x)) / big_w
    expected = math.sqrt(sum(a * a * (b - mu) ** 2 for a, b in zip(ww, x)) / (big_w**2 - sum(a * a for a in ww)))
    assert host(r.uncertainty)[0, 0] == pytest.approx(expected, rel=1e-6)


def test_uncertainty_can_be_skipped():
    r = stack(FRAMES, config=StackConfig.plain(), uncertainty=False)
    assert r.uncertainty is None
    np.testing.assert_array_equal(r.image, stack(FRAMES, config=StackConfig.plain()).image)


@pytest.mark.parametrize(("reject_name", "combine_name"), [
    ("none", "mean"), ("none", "median"), ("kappa_sigma", "mean"), ("winsorized_sigma_clip", "mean"),
    ("linear_fit_clip", "sum"), ("winsorized_quantile", "mean"), ("minmax", "median"), ("none", "min")])
@pytest.mark.parametrize("weighting", ["none", "noise_variance"])
def test_backend_parity(backend, reject_name, combine_name, weighting):
    # Unweighted, NumPy's side is the numba band path (when numba is there); weighted, the
    # core's weighted estimator on every side.
    s = make_stack(n_frames=11, shape=(16, 14), seed=3, rgb=True)
    config = StackConfig(normalize="multiplicative", weighting=weighting, reject=reject_name,
                         combine=combine_name, winsor_rewinsor=True)
    expected = stack(s.frames, config=config)  # NumPy: the numba band path where it applies
    got = stack_other_implementation(backend, s.frames, config)
    assert got.stats["ops"] != expected.stats["ops"]
    np.testing.assert_allclose(host(got.uncertainty), expected.uncertainty, rtol=2e-5, atol=1e-6, equal_nan=True)


def test_band_size_invariant():
    s = make_stack(n_frames=9, shape=(23, 10), seed=4)
    config = StackConfig(reject="kappa_sigma")
    whole = stack(s.frames, config=config).uncertainty
    from zemosaic_xp.core.in_memory import stack_frames
    from zemosaic_xp.core.ops import portable_only
    for rows in (1, 5, 23):
        with portable_only():
            got = stack_frames(s.frames, config=config, band_rows=rows).uncertainty
        np.testing.assert_allclose(got, whole, rtol=2e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize(("reject_name", "combine_name", "weighting", "holes"), [
    ("none", "mean", "none", False), ("none", "mean", "none", True), ("none", "median", "none", True),
    ("none", "sum", "none", True), ("kappa_sigma", "mean", "none", True), ("percentile", "mean", "none", True),
    ("none", "mean", "noise_variance", False), ("kappa_sigma", "mean", "noise_variance", True)])
def test_row_chunks_do_not_change_the_map(reject_name, combine_name, weighting, holes):
    # The map's sums run over row chunks (ArrayOps.chunk_samples): every pixel's value is
    # the same bit for bit whatever the chunk, down to one row, and the whole band at once.
    import array_api_compat.numpy as np_xp

    from zemosaic_xp.core.in_memory import stack_frames
    from zemosaic_xp.core.ops import ArrayOps

    s = make_stack(n_frames=9, shape=(13, 11), seed=6, rgb=True)
    frames = np.array(s.frames)
    if holes:
        frames[2, 3:6, 2:5] = np.nan  # some pixels lose a sample: the keep mask is applied
    config = StackConfig(normalize="multiplicative", weighting=weighting, reject=reject_name,
                         combine=combine_name)
    maps = []
    for chunk in (0, 9, 9 * 7, 1 << 18):
        ops = ArrayOps(np_xp)
        ops.chunk_samples = chunk
        maps.append(stack_frames(frames, config=config, ops=ops).uncertainty)
    for got in maps[1:]:
        np.testing.assert_array_equal(got, maps[0])
    assert np.isfinite(maps[0]).mean() > 0.9


@pytest.mark.parametrize("scale", [1e-22, 1e25, 3e30])
@pytest.mark.parametrize(("combine_name", "weighted"), [("mean", False), ("median", False), ("sum", False),
                                                        ("mean", True)])
def test_map_scales_with_the_data_near_float32_limits(backend, scale, combine_name, weighted):
    # Squares of such deviations overflow (or underflow) float32: those chunks sum in
    # float64, so the map is the unit-scale one times the scale, without a warning.
    s = make_stack(n_frames=7, shape=(9, 8), seed=2)
    frames = np.array(s.frames, dtype=np.float64)
    frames = (frames - np.nanmean(frames)) / np.nanstd(frames)
    frames[2, 1, 1] = np.nan
    config = StackConfig(normalize="none", weighting="none", reject="none", combine=combine_name)
    w = on(backend, [1.0, 3.0, 0.5, 2.0, 1.0, 1.5, 4.0]) if weighted else None
    unit = stack(on(backend, frames.astype(np.float32)), config=config, weights=w).uncertainty
    got = stack(on(backend, (frames * scale).astype(np.float32)), config=config, weights=w).uncertainty
    np.testing.assert_allclose(host(got) / scale, host(unit), rtol=2e-5, equal_nan=True)
    assert np.isfinite(host(got)).mean() > 0.9


def test_single_frame_is_nan():
    r = stack(np.ones((1, 4, 5), np.float32))
    assert r.uncertainty.shape == (4, 5) and np.all(np.isnan(r.uncertainty))


def test_clip_factor_limits():
    # κ → ∞ is the plain mean; κ = 3 costs a few percent; a σ re-estimated from the
    # survivors shrinks the bounds and raises the factor.
    assert clip_variance_factor(8.0, 8.0) == pytest.approx(1.0, abs=1e-9)
    assert 1.03 < clip_variance_factor(3.0, 3.0) < 1.08
    assert clip_variance_factor(3.0, 3.0, sigma_updates=4) > clip_variance_factor(3.0, 3.0)
    assert mean_variance_factor(StackConfig.plain()) == 1.0


def _calibration_ratio(n, *, config, weighted, seed):
    """RMS predicted error over RMS actual error (result − truth) on Gaussian frames."""
    rng = np.random.default_rng(seed)
    pixels = (60, 100)
    sigma = rng.uniform(0.5, 2.0, n).astype(np.float32) if weighted else np.ones(n, np.float32)
    truth = 100.0
    frames = (rng.standard_normal((n, *pixels), dtype=np.float32) * sigma[:, None, None] + truth)
    r = stack(frames, config=config, weights=1.0 / sigma**2 if weighted else None)
    actual = np.sqrt(np.mean((r.image.astype(np.float64) - truth) ** 2))
    predicted = np.sqrt(np.mean(r.uncertainty.astype(np.float64) ** 2))
    return predicted / actual


@pytest.mark.parametrize("n", [8, 32, 128])
@pytest.mark.parametrize(("name", "reject_name", "combine_name", "weighted"), [
    ("mean", "none", "mean", False), ("weighted mean", "none", "mean", True),
    ("median", "none", "median", False), ("kappa_sigma", "kappa_sigma", "mean", False)])
def test_calibration(n, name, reject_name, combine_name, weighted):
    # 6000 pixels: the RMS error is known to ~1 %, against a 5 % target.
    config = StackConfig.plain(reject=reject_name, combine=combine_name)
    ratio = _calibration_ratio(n, config=config, weighted=weighted, seed=n)
    assert abs(ratio - 1.0) < 0.05, (name, n, ratio)


def test_rgb_equalisation_scales_the_map():
    rng = np.random.default_rng(6)
    frames = (100 + rng.standard_normal((5, 100, 100, 3))) * np.array([1.0, 1.03, 0.98])
    frames = frames.astype(np.float32)
    plain = stack(frames, config=StackConfig.plain())
    eq = stack(frames, config=StackConfig.plain(rgb_equalize=True))
    info = eq.stats["rgb_equalization"]
    assert info["applied"]
    gains = np.array([info["gain_r"], info["gain_g"], info["gain_b"]], np.float32)
    assert np.ptp(gains) > 0.01
    np.testing.assert_allclose(eq.uncertainty, plain.uncertainty * gains, rtol=1e-6)
