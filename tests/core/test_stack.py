"""The stack pipeline end to end: parity, band invariance, outliers, weights, errors."""

from __future__ import annotations

import numpy as np
import pytest

import zemosaic_xp as zx
from tests.conftest import assert_on, get_backend, host, on, stack_other_implementation
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.synthetic import make_stack

METHODS = [
    ("none", "mean"), ("none", "median"), ("kappa_sigma", "mean"), ("kappa_sigma", "median"),
    ("winsorized_sigma_clip", "mean"), ("winsorized_sigma_clip", "median"),
]
NORMALIZE = ["none", "linear_fit", "sky_mean"]


@pytest.fixture(scope="module")
def rgb_stack():
    return make_stack(n_frames=9, shape=(24, 20), seed=4, rgb=True, cosmic_rays_per_frame=6)


@pytest.mark.parametrize(("reject", "combine"), METHODS)
@pytest.mark.parametrize("normalize", NORMALIZE)
def test_backend_parity(backend, rgb_stack, reject, combine, normalize):
    config = StackConfig(reject=reject, combine=combine, normalize=normalize, weighting="noise_variance")
    ref = stack(rgb_stack.frames, config=config)
    got = stack_other_implementation(backend, rgb_stack.frames, config)
    assert got.stats["ops"] != ref.stats["ops"]  # two implementations, never NumPy with itself
    for name in ("image", "weight_sum"):
        assert_on(getattr(got, name), backend)
        np.testing.assert_allclose(host(getattr(got, name)), getattr(ref, name), rtol=1e-5, atol=1e-3)
    for name in ("coverage", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(host(getattr(got, name)), getattr(ref, name))


@pytest.mark.parametrize(("reject", "combine"), METHODS)
def test_band_size_invariance(backend, rgb_stack, reject, combine):
    config = StackConfig(reject=reject, combine=combine)
    frames = on(backend, rgb_stack.frames)
    whole = stack_frames(frames, config=config, band_rows=rgb_stack.frames.shape[1])
    for rows in (1, 5, 7):
        banded = stack_frames(frames, config=config, band_rows=rows)
        for name in ("image", "weight_sum", "coverage", "rejected_low", "rejected_high"):
            np.testing.assert_array_equal(host(getattr(banded, name)), host(getattr(whole, name)),
                                          err_msg=f"{name} with {rows} rows per band")
        assert banded.stats["iterations"] == whole.stats["iterations"]


def test_memory_budget_only_changes_band_rows():
    s = make_stack(n_frames=6, shape=(40, 16), seed=2)
    small = stack(s.frames, memory_budget_bytes=20_000)
    large = stack(s.frames, memory_budget_bytes=10**9)
    assert small.stats["band_rows"] < large.stats["band_rows"]
    np.testing.assert_array_equal(small.image, large.image)


@pytest.mark.parametrize("reject", ["kappa_sigma", "winsorized_sigma_clip"])
def test_injected_outliers_are_removed_and_nothing_else_touched(reject):
    s = make_stack(n_frames=24, shape=(64, 64), seed=3, gain_spread=0.0, offset_spread=0.0, nan_region=False,
                   cosmic_rays_per_frame=30, trails=2)
    config = StackConfig.plain(reject=reject)
    result = stack(s.frames, config=config)
    hit = s.outliers.any(axis=0)
    n_hits = s.outliers.sum(axis=0)
    # 0 surviving injected outliers: every hit is counted as rejected high ...
    assert np.all(result.rejected_high[hit] >= n_hits[hit])
    # ... and those pixels land where the stack without the outliers lands.
    clean = s.frames.copy()
    clean[s.outliers] = np.nan
    reference = stack(clean, config=config)
    sigma = s.noise_sigma[0] / np.sqrt(24)
    assert np.max(np.abs(result.image[hit] - reference.image[hit])) < 3 * sigma
    # Pixels where nothing was rejected equal the plain mean exactly.
    untouched = (result.rejected_low + result.rejected_high) == 0
    plain = stack(s.frames, config=StackConfig.plain())
    assert untouched.mean() > 0.6  # iterative 3σ clipping trims a few Gaussian tails too
    np.testing.assert_allclose(result.image[untouched], plain.image[untouched], rtol=1e-6)


@pytest.mark.filterwarnings("ignore:Input data contains invalid values")
def test_kappa_sigma_agrees_with_astropy():
    from astropy.stats import sigma_clip

    rng = np.random.default_rng(0)
    data = rng.normal(100, 5, (32, 96, 96)).astype(np.float32)
    data[rng.random(data.shape) < 0.002] += 300
    data[rng.random(data.shape) < 0.01] = np.nan
    ours = stack(data, config=StackConfig.plain(reject="kappa_sigma", max_iters=5)).image
    clipped = sigma_clip(data, axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="std")
    theirs = clipped.mean(axis=0).filled(np.nan)
    agree = np.isclose(ours, theirs, rtol=1e-4, atol=0)
    assert agree.mean() >= 0.9999


def test_sequence_and_array_inputs_agree(backend):
    s = make_stack(n_frames=5, shape=(12, 10), seed=8, rgb=True)
    frames = on(backend, s.frames)
    as_list = [frames[i, ...] for i in range(5)]
    a = stack(frames)
    b = stack(as_list)
    np.testing.assert_array_equal(host(a.image), host(b.image))
    assert host(a.image).shape == (12, 10, 3)
    mono = stack(on(backend, s.frames[..., 1]))
    assert host(mono.image).shape == (12, 10)


class TestWeights:
    def test_frame_weights_change_the_mean(self, backend):
        # Regression (upstream hazard): compact weights must not vanish.
        frames = np.stack([np.full((3, 4), 1.0), np.full((3, 4), 3.0)]).astype(np.float32)
        r = stack(on(backend, frames), weights=on(backend, [3.0, 1.0]), config=StackConfig.plain())
        np.testing.assert_allclose(host(r.image), 1.5)
        np.testing.assert_allclose(host(r.weight_sum), 4.0)

    def test_channel_weights(self, backend):
        frames = np.stack([np.full((2, 2, 3), 1.0), np.full((2, 2, 3), 3.0)]).astype(np.float32)
        w = on(backend, [[1.0, 3.0, 1.0], [1.0, 1.0, 0.0]])
        r = stack(on(backend, frames), weights=w, config=StackConfig.plain())
        np.testing.assert_allclose(host(r.image)[0, 0], [2.0, 1.5, 1.0])
        np.testing.assert_array_equal(host(r.coverage)[0, 0], [2, 2, 1])

    @pytest.mark.parametrize("rgb", [False, True])
    def test_pixel_weights(self, backend, rgb):
        shape = (2, 3, 4, 3) if rgb else (2, 3, 4)
        frames = np.zeros(shape, np.float32)
        frames[1] = 10.0
        w = np.ones(shape[:3], np.float32)
        w[1, 0, 0] = 4.0
        w[0, 2, 3] = 0.0  # a zero weight means "no data"
        r = stack(on(backend, frames), weights=on(backend, w), config=StackConfig.plain())
        img = host(r.image)
        assert np.all(img[0, 0] == 8.0)
        assert np.all(img[2, 3] == 10.0)
        assert np.all(img[1, 1] == 5.0)
        assert np.all(host(r.coverage)[2, 3] == 1)

    def test_noise_variance_best_frame_gets_one(self):
        rng = np.random.default_rng(1)
        sigmas = np.array([2.0, 4.0, 1.0, 8.0])
        frames = (100 + sigmas[:, None, None] * rng.standard_normal((4, 128, 128))).astype(np.float32)
        r = stack(frames, config=StackConfig(normalize="none", weighting="noise_variance", reject="none"))
        w = np.array(r.stats["weights"])[:, 0]
        assert w.max() == 1.0 and np.argmax(w) == 2
        np.testing.assert_allclose(w, (1.0 / sigmas**2) / (1.0 / sigmas[2] ** 2), rtol=0.05)
        expected = np.sum(w[:, None, None] * frames, axis=0) / w.sum()
        np.testing.assert_allclose(r.image, expected, rtol=1e-5)

    def test_dead_frame_gets_tiny_weight(self):
        frames = np.random.default_rng(0).normal(10, 1, (3, 32, 32)).astype(np.float32)
        frames[1] = 5.0  # constant: no measurable noise
        r = stack(frames, config=StackConfig(normalize="none", weighting="noise_variance", reject="none"))
        assert r.stats["weights"][1][0] == pytest.approx(1e-6)


class TestNormalization:
    def test_linear_fit_recovers_gain_and_offset(self):
        s = make_stack(n_frames=5, shape=(96, 96), seed=6, gain_spread=0.3, offset_spread=200.0,
                       cosmic_rays_per_frame=0, trails=0, nan_region=False)
        r = stack(s.frames, config=StackConfig(normalize="linear_fit", weighting="none", reject="none"))
        gains = np.array(r.stats["gains"])[:, 0]
        offsets = np.array(r.stats["offsets"])[:, 0]
        np.testing.assert_allclose(gains, 1.0 / s.gains, rtol=0.02)
        np.testing.assert_allclose(offsets, -s.offsets / s.gains, atol=30.0)
        assert gains[0] == 1.0 and offsets[0] == 0.0
        residual = r.image - s.truth
        assert abs(np.nanmedian(residual)) < 5.0

    def test_sky_mean_adds_offsets(self):
        base = np.random.default_rng(2).normal(100, 3, (1, 64, 64, 3)).astype(np.float32)
        frames = np.concatenate([base, base + 40.0, base - 15.0])
        r = stack(frames, config=StackConfig(normalize="sky_mean", weighting="none", reject="none"))
        np.testing.assert_allclose(np.array(r.stats["offsets"]), [[0, 0, 0], [-40, -40, -40], [15, 15, 15]],
                                   atol=1e-3)
        np.testing.assert_allclose(r.image, base[0], atol=1e-3)

    def test_reference_frame_choice(self):
        frames = np.stack([np.full((8, 8), v, np.float32) + np.arange(64, dtype=np.float32).reshape(8, 8)
                           for v in (0.0, 100.0)])
        r = stack(frames, config=StackConfig(normalize="sky_mean", weighting="none", reject="none",
                                             reference_frame=1))
        assert r.stats["offsets"][1] == [0.0] and r.stats["offsets"][0][0] == pytest.approx(100.0)


class TestBadInput:
    def test_empty(self):
        with pytest.raises(ValueError, match="empty"):
            stack([])
        with pytest.raises(ValueError, match="empty"):
            stack(np.zeros((0, 4, 4), np.float32))

    def test_mismatched_shapes_name_the_frame(self):
        frames = [np.zeros((4, 4), np.float32)] * 3 + [np.zeros((4, 5), np.float32)]
        with pytest.raises(ValueError, match=r"frames\[3\] has shape \(4, 5\); expected \(4, 4\)"):
            stack(frames)

    def test_wrong_dtype(self):
        with pytest.raises(TypeError, match="dtype"):
            stack(np.zeros((2, 3, 3), dtype=bool))
        with pytest.raises(TypeError, match="dtype"):
            stack(np.zeros((2, 3, 3), dtype=np.complex64))
        with pytest.raises(TypeError, match="array"):
            stack("frames.fits")

    def test_wrong_ndim(self):
        with pytest.raises(ValueError, match=r"expected \(N, H, W\)"):
            stack(np.zeros((3, 3), np.float32))

    def test_bad_weights_and_config(self):
        frames = np.zeros((3, 4, 4), np.float32)
        with pytest.raises(ValueError, match=r"`weights` has shape \(2,\)"):
            stack(frames, weights=np.ones(2, np.float32))
        with pytest.raises(TypeError, match="StackConfig"):
            stack(frames, config={"reject": "kappa_sigma"})
        with pytest.raises(ValueError, match="reference_frame"):
            stack(frames, config=StackConfig(reference_frame=5))
        with pytest.raises(ValueError, match="memory_budget_bytes"):
            stack(frames, memory_budget_bytes=0)
        with pytest.raises(ValueError, match="band_rows"):
            stack_frames(frames, band_rows=0)

    def test_integer_input_is_promoted(self):
        frames = np.array([[[1, 2]], [[3, 4]]], dtype=np.uint16)
        r = stack(frames, config=StackConfig.plain())
        np.testing.assert_array_equal(r.image, [[2.0, 3.0]])
        assert r.image.dtype == np.float32

    def test_infinities_are_no_data(self):
        frames = np.array([[[1.0, np.inf]], [[3.0, -np.inf]], [[2.0, 5.0]]], dtype=np.float32)
        r = stack(frames, config=StackConfig.plain())
        np.testing.assert_array_equal(r.image, [[2.0, 5.0]])


def test_progress_callback_and_stats_are_json_able():
    import json

    events = []
    s = make_stack(n_frames=4, shape=(16, 8), seed=1)
    r = stack_frames(s.frames, band_rows=5, progress_callback=lambda *a, **k: events.append((a, k)))
    assert [e[0][2] for e in events] == [1, 2, 3, 4]
    assert all(e[0][0] == "STAGE_PROGRESS" and e[1]["total"] == 4 for e in events)
    json.dumps(r.stats)


def test_backend_argument_moves_the_stack():
    torch_backend = get_backend("torch:cpu")
    s = make_stack(n_frames=4, shape=(8, 8), seed=1)
    r = stack(s.frames, backend="torch")
    assert_on(r.image, torch_backend)
    np.testing.assert_allclose(host(r.image), stack(s.frames).image, rtol=1e-6)
    assert r.stats["backend"] == "torch:cpu"


def test_readme_one_liner():
    assert zx.stack(zx.synthetic.make_stack(seed=1).frames).image.shape == (128, 128)
