"""Siril-style normalisations and ZeMosaic's median ratio: known answers, RGB, references, degeneracies."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import host, on, stack_other_implementation
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.synthetic import make_stack

ROBUST = ["median", "additive", "multiplicative", "additive_scaling", "multiplicative_scaling"]


def _norm(frames, method, backend=None, **config):
    cfg = StackConfig(normalize=method, weighting="none", reject="none", frame_stats_samples=0, **config)
    data = frames if backend is None else on(backend, frames)
    r = stack(data, config=cfg)
    return np.array(r.stats["gains"]), np.array(r.stats["offsets"]), r


# ref: median 3, MAD 1. frame 1 = 2·ref + 10: median 16, MAD 2. frame 2 = ref / 2: median 1.5, MAD 0.5.
REF = np.array([1.0, 2.0, 3.0, 4.0, 5.0], dtype=np.float32)
TINY = np.stack([REF, 2 * REF + 10, REF / 2])[:, None, :]

KNOWN = {
    # method: (gains, offsets), by hand from the medians L and scales S ∝ MAD, k = S_ref/S_i
    "additive": ([1, 1, 1], [0, 3 - 16, 3 - 1.5]),
    "multiplicative": ([1, 3 / 16, 3 / 1.5], [0, 0, 0]),
    "additive_scaling": ([1, 1 / 2, 2], [0, 3 - 16 / 2, 3 - 2 * 1.5]),
    "multiplicative_scaling": ([1, (1 / 2) * (3 / 16), 2 * (3 / 1.5)], [0, 0, 0]),
    "median": ([1, 3 / 16, 3 / 1.5], [0, 0, 0]),
}


@pytest.mark.parametrize("method", ROBUST)
def test_known_answers(backend, method):
    gains, offsets, result = _norm(TINY, method, backend)
    np.testing.assert_allclose(gains[:, 0], KNOWN[method][0], rtol=1e-6)
    np.testing.assert_allclose(offsets[:, 0], KNOWN[method][1], atol=1e-5)
    if method == "additive_scaling":  # maps both frames exactly onto the reference
        np.testing.assert_allclose(host(result.image)[0], REF, rtol=1e-6)


@pytest.mark.parametrize("method", ROBUST)
def test_reference_frame_choice(method):
    gains, offsets, _ = _norm(TINY, method, reference_frame=1)
    assert gains[1, 0] == 1.0 and offsets[1, 0] == 0.0
    # Each frame is mapped onto frame 1's level: the normalised medians all equal 16.
    medians = np.median(TINY[:, 0, :], axis=1)
    mapped = gains[:, 0] * medians + offsets[:, 0]
    if method == "multiplicative_scaling":
        # Both factors apply (Siril's formula): k·L_ref/L_i with k = MAD_ref/MAD_i gives
        # 2·16/3 for frame 0 and 4·16/1.5 = 42.7 for frame 2, beyond the gain cap of 20.
        np.testing.assert_allclose(gains[:, 0], [32 / 3, 1.0, 1.0], rtol=1e-6)
        return
    np.testing.assert_allclose(mapped, 16.0, rtol=1e-6)


def test_rgb_per_channel_versus_pooled_median():
    rng = np.random.default_rng(0)
    base = rng.uniform(50, 150, (1, 32, 32, 3)).astype(np.float32)
    cast = np.array([1.1, 1.0, 0.8], dtype=np.float32)
    frames = np.concatenate([base, base * cast])
    per_channel, _, _ = _norm(frames, "multiplicative")
    np.testing.assert_allclose(per_channel[1], 1 / cast, rtol=1e-5)
    pooled, _, _ = _norm(frames, "median")
    expected = np.median(base) / np.median(base * cast)
    np.testing.assert_allclose(pooled[1], [expected] * 3, rtol=1e-5)  # one gain: colours kept


def test_rgb_scaling_is_per_channel():
    rng = np.random.default_rng(1)
    base = rng.normal(1000, [5.0, 10.0, 20.0], (1, 48, 48, 3)).astype(np.float32)
    noisier = 1000 + (base - 1000) * np.array([2.0, 1.0, 0.5], dtype=np.float32)
    gains, offsets, _ = _norm(np.concatenate([base, noisier]), "additive_scaling")
    np.testing.assert_allclose(gains[1], [0.5, 1.0, 2.0], rtol=1e-4)
    np.testing.assert_allclose(offsets[1], 1000 * (1 - gains[1]), rtol=1e-3, atol=0.5)


@pytest.mark.parametrize("method", ROBUST)
def test_degenerate_frames_keep_the_identity(method):
    frames = np.stack([REF, np.full(5, 7.0), np.zeros(5), np.full(5, np.nan), REF * 100.0,
                       REF * 1.5])[:, None, :].astype(np.float32)
    gains, offsets, result = _norm(frames, method)
    scaled = method.endswith("scaling")
    multiplicative = method in ("median", "multiplicative", "multiplicative_scaling")
    # frame 1 is constant (MAD 0), frame 2 has median 0, frame 3 no data, frame 4 needs a
    # gain of 1/100 (outside [1/20, 20]).
    identity = {1: scaled, 2: scaled or multiplicative, 3: True, 4: multiplicative or scaled}
    for i, expect in identity.items():
        if expect:
            assert (gains[i, 0], offsets[i, 0]) == (1.0, 0.0), (method, i)
    assert gains[5, 0] != 1.0 or offsets[5, 0] != 0.0  # a normal frame is normalised
    assert np.all(np.isfinite(host(result.image)))


@pytest.mark.parametrize("method", ["multiplicative", "additive_scaling"])
def test_degenerate_reference_leaves_everything_unchanged(method):
    frames = np.stack([np.zeros(5), REF, 2 * REF + 10])[:, None, :].astype(np.float32)
    gains, offsets, _ = _norm(frames, method)
    np.testing.assert_array_equal(gains, 1.0)
    np.testing.assert_array_equal(offsets, 0.0)


@pytest.mark.parametrize("method", ROBUST)
def test_backend_parity_and_band_invariance(backend, method):
    s = make_stack(n_frames=6, shape=(24, 20), seed=2, rgb=True, gain_spread=0.2, offset_spread=80.0)
    config = StackConfig(normalize=method, reject="kappa_sigma")
    expected = stack(s.frames, config=config)
    got = stack_other_implementation(backend, s.frames, config)
    assert got.stats["ops"] != expected.stats["ops"]
    np.testing.assert_allclose(got.stats["gains"], expected.stats["gains"], rtol=1e-6)
    np.testing.assert_allclose(got.stats["offsets"], expected.stats["offsets"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(host(got.image), expected.image, rtol=1e-5, atol=1e-3)
    banded = stack_frames(on(backend, s.frames), config=config, band_rows=5)
    np.testing.assert_array_equal(host(banded.image), host(got.image))


def test_additive_scaling_recovers_synthetic_gain_and_offset():
    s = make_stack(n_frames=5, shape=(96, 96), seed=6, gain_spread=0.3, offset_spread=200.0,
                   cosmic_rays_per_frame=0, trails=0, nan_region=False)
    r = stack(s.frames, config=StackConfig(normalize="additive_scaling", weighting="none", reject="none"))
    gains = np.array(r.stats["gains"])[:, 0]
    # Scale from the sky noise: its photon part does not scale exactly with the gain,
    # so the recovered gain is good to a few per cent.
    np.testing.assert_allclose(gains, 1.0 / s.gains, rtol=0.05)
    assert abs(np.nanmedian(r.image - s.truth)) < 5.0
