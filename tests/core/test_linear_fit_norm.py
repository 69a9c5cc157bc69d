"""`linear_fit` normalisation: the paired fit (core/pairfit.py) — precision, known answers, parity, edges."""

from __future__ import annotations

import array_api_compat.numpy as np_xp
import numpy as np
import pytest

from tests.conftest import host, on, stack_other_implementation
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.framestats import FrameSamples
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.core.normalize import _percentile_match
from zemosaic_xp.synthetic import render_sky

SATURATION = 50000.0
CONFIG = StackConfig(normalize="linear_fit", weighting="none", reject="none")


def _field(size=256, n=8, *, seed=0, gains=None, offsets=None, gradients=None, stars=True, noise=True):
    """Dense star field (one star per 330 px², saturated cores), Poisson + 5 ADU read noise.

    Frame i is ``min(g_i·x + o_i + gradient_i, 50 000)``; returns the frames, the
    noiseless sky and the star positions ``(y, x, peak)``.
    """
    n_stars = size * size // 330 if stars else 0
    replay = np.random.default_rng(seed)  # render_sky draws angle, ys, xs, peaks in this order
    replay.uniform(0, 2 * np.pi)
    star_yx = np.stack([replay.uniform(0, size, n_stars), replay.uniform(0, size, n_stars),
                        np.exp(replay.uniform(np.log(320.0), np.log(500000.0), n_stars))], axis=1)
    rng = np.random.default_rng(seed)
    truth = render_sky((size, size), rng=rng, gradient=0.0, n_stars=n_stars, star_peak=(320.0, 500000.0),
                       star_fwhm_px=2.5).astype(np.float64)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    frames = np.empty((n, size, size), np.float32)
    for i in range(n):
        x = truth + (np.sqrt(truth + 25.0) * rng.standard_normal(truth.shape) if noise else 0.0)
        angle = rng.uniform(0, 2 * np.pi)
        g = 1.0 if gains is None else gains[i]
        o = 0.0 if offsets is None else offsets[i]
        grad = 0.0 if gradients is None else gradients[i]
        frames[i] = np.minimum(g * x + o + grad * (np.cos(angle) * xx + np.sin(angle) * yy), SATURATION)
    return frames, truth, star_yx


def _gains(frames, config=CONFIG):
    r = stack(frames, config=config)
    return np.array(r.stats["gains"])[:, 0], np.array(r.stats["offsets"])[:, 0], r


def _fluxes(image, stars):
    """5 px aperture minus the 8–12 px annulus median, unsaturated stars away from the edges."""
    out = []
    for y, x, peak in stars:
        if not 1000.0 <= peak <= 30000.0 or not (13 <= y < image.shape[0] - 13 and 13 <= x < image.shape[1] - 13):
            continue
        y0, x0 = int(y) - 13, int(x) - 13
        cut = image[y0:y0 + 27, x0:x0 + 27]
        yy, xx = np.mgrid[y0:y0 + 27, x0:x0 + 27]
        r = np.hypot(yy - y, xx - x)
        out.append(np.sum(cut[r < 5] - np.median(cut[(r >= 8) & (r < 12)])))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_alone_moves_no_gain_by_more_than_a_permille(seed):
    frames, _, _ = _field(seed=seed)
    gains, offsets, _ = _gains(frames)
    assert np.max(np.abs(gains - 1)) <= 1e-3
    assert np.max(np.abs(offsets)) <= 2.0  # ADU, on a 1000 ADU sky with σ ≈ 32
    # The former estimator (the percentile match, now the start) does not reach it.
    start, _ = _percentile_match(FrameSamples(np_xp.asarray(frames.reshape(8, 1, -1)), xp=np_xp), 0)
    assert np.max(np.abs(np.asarray(start) - 1)) > 3e-3


def test_star_fluxes_unchanged_within_a_permille():
    frames, _, stars = _field(seed=3)
    _, _, normed = _gains(frames)
    plain = stack(frames, config=StackConfig(normalize="none", weighting="none", reject="none"))
    change = _fluxes(np.asarray(normed.image), stars) / _fluxes(np.asarray(plain.image), stars) - 1
    assert change.size > 20
    assert np.max(np.abs(change)) <= 1e-3


def test_known_gain_and_offset_exact_on_noiseless_frames():
    g = np.array([1.0, 0.8, 1.2, 0.5, 3.0])
    o = np.array([0.0, 150.0, -90.0, 7.0, -400.0])
    frames, _, _ = _field(size=96, n=5, seed=4, gains=g, offsets=o, noise=False)
    gains, offsets, _ = _gains(frames)
    np.testing.assert_allclose(gains, 1 / g, rtol=2e-5)
    np.testing.assert_allclose(offsets, -o / g, atol=0.05)


@pytest.mark.parametrize("gradient", [False, True])
def test_real_gains_offsets_and_gradients_recovered(gradient):
    rng = np.random.default_rng(7)
    g = np.concatenate([[1.0], rng.uniform(0.8, 1.2, 7)])
    o = np.concatenate([[0.0], rng.uniform(-200, 200, 7)])
    grads = np.concatenate([[0.0], rng.uniform(50, 300, 7)]) if gradient else None
    frames, _, _ = _field(seed=5, gains=g, offsets=o, gradients=grads)
    gains, offsets, _ = _gains(frames)
    np.testing.assert_allclose(gains * g, 1.0, atol=2e-3)
    # The offset matches the median sky: exact without gradients, within a few ADU with them.
    np.testing.assert_allclose(offsets, -o / g, atol=6.0 if gradient else 1.5)
    start, _ = _percentile_match(FrameSamples(np_xp.asarray(frames.reshape(8, 1, -1)), xp=np_xp), 0)
    if gradient:  # a gradient widens the percentile span: the former estimator is far off
        assert np.max(np.abs(np.asarray(start)[:, 0] * g - 1)) > 0.05


def test_outliers_and_missing_data_do_not_move_the_gain():
    g = np.array([1.0, 0.85, 1.1, 1.2, 0.9, 1.05])
    frames, _, _ = _field(size=128, n=6, seed=11, gains=g, offsets=[0, 50, -50, 20, 10, -5])
    clean, _, _ = _gains(frames)
    dirty = frames.copy()
    rng = np.random.default_rng(12)
    yy, xx = np.mgrid[0:128, 0:128]
    for i in range(6):  # 40 cosmic-ray hits per frame, a satellite trail in frames 1, 3, 5
        dirty[i, rng.integers(0, 128, 40), rng.integers(0, 128, 40)] += rng.uniform(3000, 30000, 40)
        if i % 2:
            dirty[i][np.abs(xx - 0.7 * yy - 10 * i) <= 1.5] += 4000.0
    dirty[5, 32:64, 32:64] = np.nan
    gains, _, _ = _gains(dirty)
    np.testing.assert_allclose(gains[:5], clean[:5], rtol=5e-4)
    np.testing.assert_allclose(gains[5], clean[5], rtol=2e-3)  # a quarter of its pairs gone
    np.testing.assert_allclose(gains * g, 1.0, atol=2e-3)


def test_rgb_channels_fitted_separately():
    frames, _, _ = _field(size=96, n=3, seed=6)
    rgb = np.stack([frames, 0.5 * frames + 20.0, 2.0 * frames], axis=-1)
    rgb[1, ..., 0] = 1.1 * rgb[1, ..., 0] - 30.0
    r = stack(rgb, config=CONFIG)
    gains, offsets = np.array(r.stats["gains"]), np.array(r.stats["offsets"])
    np.testing.assert_allclose(gains[1], [1 / 1.1, 1.0, 1.0], atol=2e-3)
    np.testing.assert_allclose(offsets[1, 0], 30.0 / 1.1, atol=3.0)


def test_frames_without_stars_keep_the_percentile_start():
    frames, _, _ = _field(size=96, n=3, seed=7, stars=False)
    stats = FrameSamples(np_xp.asarray(frames.reshape(3, 1, -1)), xp=np_xp)
    start_g, start_o = _percentile_match(stats, 0)
    g, o, ok = stats.paired_fit(0, start_g, start_o)
    assert not np.any(np.asarray(ok)[1:])  # pure noise: the pairs carry no gain
    np.testing.assert_array_equal(np.asarray(g)[1:], np.asarray(start_g, dtype=np.float64)[1:])
    np.testing.assert_array_equal(np.asarray(o)[1:], np.asarray(start_o, dtype=np.float64)[1:])


def test_degenerate_frames_keep_the_identity():
    frames, _, _ = _field(size=64, n=2, seed=8)
    frames = np.concatenate([frames, np.full((1, 64, 64), np.nan, np.float32),
                             np.full((1, 64, 64), 5.0, np.float32), frames[1:2] / 40.0])
    gains, offsets, r = _gains(frames)
    # 2: no data, 3: constant, 4: needs a gain of 40 (beyond the cap of 20)
    for i in (2, 3, 4):
        assert (gains[i], offsets[i]) == (1.0, 0.0), i
    assert gains[1] != 1.0 and np.all(np.isfinite(host(r.image)))


def test_single_frame_and_reference_choice():
    frames, _, _ = _field(size=64, n=3, seed=9, gains=[1.0, 2.0, 0.5], noise=False)
    gains, offsets, r = _gains(frames[:1])
    assert (gains[0], offsets[0]) == (1.0, 0.0)
    np.testing.assert_array_equal(host(r.image), frames[0])
    gains, _, _ = _gains(frames, StackConfig(normalize="linear_fit", weighting="none", reject="none",
                                             reference_frame=1))
    np.testing.assert_allclose(gains, [2.0, 1.0, 4.0], rtol=2e-5)


def test_backend_parity_and_band_invariance(backend):
    frames, _, _ = _field(size=64, n=4, seed=10, gains=[1.0, 0.9, 1.1, 1.05], offsets=[0, 30, -20, 5])
    frames[3, 10:30, 5:25] = np.nan
    config = StackConfig(normalize="linear_fit", reject="kappa_sigma")
    expected = stack(frames, config=config)
    got = stack_other_implementation(backend, frames, config)
    assert got.stats["ops"] != expected.stats["ops"]
    np.testing.assert_allclose(got.stats["gains"], expected.stats["gains"], rtol=1e-6)
    np.testing.assert_allclose(got.stats["offsets"], expected.stats["offsets"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(host(got.image), expected.image, rtol=1e-5, atol=1e-2)
    banded = stack_frames(on(backend, frames), config=config, band_rows=7)
    np.testing.assert_array_equal(host(banded.image), host(got.image))


@pytest.mark.parametrize("rows_per_chunk", [1, 2, 5])
def test_row_chunks_do_not_change_the_fit(rows_per_chunk):
    """The fit runs in cache-sized row chunks on CPUs: the same gains, offsets and flags to the bit."""
    from zemosaic_xp.core.pairfit import paired_fit

    frames, _, _ = _field(size=96, n=7, seed=11, gains=[1.0, 0.9, 1.1, 1.05, 0.95, 1.2, 0.8],
                          offsets=[0, 30, -20, 5, 12, -7, 40])
    frames[3, 10:30, 5:25] = np.nan
    x = np_xp.asarray(frames.reshape(7, -1))
    ref = np_xp.asarray(np.broadcast_to(frames[0].reshape(1, -1), x.shape).copy())
    start_g, start_o = np.ones(7), np.zeros(7)
    whole = paired_fit(x, ref, start_g, start_o, xp=np_xp, rows_per_chunk=7)
    chunked = paired_fit(x, ref, start_g, start_o, xp=np_xp, rows_per_chunk=rows_per_chunk)
    assert np.all(np.asarray(whole[2])[1:]), "the fit should be used on every frame but the reference"
    for got, want in zip(chunked, whole):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
