"""``winsorized_sigma_clip``, the default: PixInsight/Siril winsorised sigma clip.

Known answers first (the small-N failures of ZeMosaic's variant among them), then the
per-pixel oracles ``oracles.wsc_pixel`` and ``oracles.wsc_zemosaic_pixel`` on random
data, the two core strategies, weights, and the behaviour on clean Gaussian data.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import get_backend, host, on
from tests.core.reject.oracles import wsc_pixel, wsc_zemosaic_pixel
from tests.core.reject.stacks import column, pixels
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.backends.ops_gpu import GpuOps
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.core.ops import ArrayOps
from zemosaic_xp.core.reject.winsorized_sigma_clip import wsc_pixinsight_fit

WSC = StackConfig.plain(reject="winsorized_sigma_clip")


# ---------------------------------------------------------------------------- known answers
def test_known_answer_by_hand(backend):
    # Nine samples −1, 0, +1 (four each side) and a 50 hit. Pass 1 rejects the hit,
    # whatever the inflated σ (its clamped value bounds it far below 50/3). Pass 2 on the
    # nine: median 0, MAD 1 → σ0 = 1.4826; nothing lies beyond ±1.5σ, so m = 0 and
    # σ = 1.134·sqrt(8/9) = 1.069 at once and again: converged. Bounds ±3.2 keep all.
    values = [-1.0, 1.0] * 4 + [0.0, 50.0]
    result = stack(on(backend, column(values)), config=WSC)
    assert float(host(result.image)[0, 0]) == 0.0
    assert int(host(result.rejected_high)[0, 0]) == 1
    assert int(host(result.rejected_low)[0, 0]) == 0
    assert result.stats["iterations"] == 2


def test_single_hit_at_n8_the_zemosaic_failure(backend):
    # The reported case: one 15σ hit in 8 frames; ZeMosaic's variant keeps it in 2 of 5.
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(5):
        v = rng.normal(1000, 10, 8).astype(np.float32)
        v[3] = 1150
        rows.append(v)
    frames = on(backend, pixels(rows))
    np.testing.assert_array_equal(host(stack(frames, config=WSC).rejected_high)[:, 0], 1)
    legacy = stack(frames, config=WSC.replace(wsc_impl="zemosaic"))
    np.testing.assert_array_equal(host(legacy.rejected_high)[:, 0], [1, 1, 1, 0, 0])


def test_two_coincident_hits_in_eight_frames(backend):
    values = [987, 964, 971, 2987, 984, 972, 6125, 988]
    result = stack(on(backend, column(values)), config=WSC)
    assert int(host(result.rejected_high)[0, 0]) == 2
    assert float(host(result.image)[0, 0]) == pytest.approx(np.mean([987, 964, 971, 984, 972, 988]))
    legacy = stack(on(backend, column(values)), config=WSC.replace(wsc_impl="zemosaic"))
    assert int(host(legacy.rejected_high)[0, 0]) == 1  # 2987 survives ZeMosaic's variant


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n", range(5, 13))
def test_one_15_sigma_hit_is_rejected_at_small_n(n, weighted):
    # 400 pixels of n frames, each with one 15σ hit on a random frame. ZeMosaic's variant
    # keeps a quarter to all of them up to n = 8 (σ diverges); this one rejects every hit. Frame
    # weights (noise-variance-like) change the combine only, not what is rejected.
    rng = np.random.default_rng(100 + n)
    rows = rng.normal(1000, 10, (400, n)).astype(np.float32)
    hit = rng.integers(0, n, 400)
    rows[np.arange(400), hit] = 1150
    weights = rng.uniform(0.3, 1.0, n).astype(np.float32) if weighted else None
    result = stack(pixels(rows), config=WSC, weights=weights)
    assert int((result.rejected_high[:, 0] == 0).sum()) == 0
    if n <= 8:
        legacy = stack(pixels(rows), config=WSC.replace(wsc_impl="zemosaic"), weights=weights)
        assert int((legacy.rejected_high[:, 0] == 0).sum()) > 100


@pytest.mark.parametrize(("levels", "missed_at_most"), [
    ([10, 15, 25, 50], 0),  # every hit of 10σ or more goes
    ([8, 12, 25, 50], 4),  # measured 0-2 of 2000 pixels keep the 8σ one
    ([6, 12, 25, 50], 80),  # measured 39-49: 6σ among 13 samples is borderline
])
def test_a_quarter_of_the_samples_hit(levels, missed_at_most):
    # N = 16 with 4 hits (25 %): the hits sort last, so a pixel lost none of them
    # exactly when it rejected at least 4 samples high.
    rng = np.random.default_rng(21)
    rows = rng.normal(1000, 10, (2000, 16)).astype(np.float32)
    rows[:, :4] += np.float32(10) * np.array(levels, dtype=np.float32)
    result = stack(pixels(rows), config=WSC)
    assert int((result.rejected_high[:, 0] < 4).sum()) <= missed_at_most
    # The price: after the hits, 12 samples, of which ~1 % are rejected too.
    extra = np.maximum(result.rejected_high[:, 0] - 4, 0).sum() + result.rejected_low[:, 0].sum()
    assert extra < 0.015 * 12 * 2000


def test_constant_and_tiny_pixels(backend):
    # (0) all equal: σ = 0 rejects nothing; (1) no valid sample; (2) one; (3) two, far
    # apart (the guard of 3 survivors forbids any rejection); (4) seven equal and one
    # off: MAD = 0, the std start, and σ shrinks towards 0, so the odd one goes.
    frames = np.full((8, 1, 5), np.nan, dtype=np.float32)
    frames[:, 0, 0] = 42.0
    frames[0, 0, 2] = 7.0
    frames[:2, 0, 3] = [1.0, 1000.0]
    frames[:, 0, 4] = [5.0] * 7 + [6.0]
    result = stack(on(backend, frames), config=WSC)
    image = host(result.image)[0]
    np.testing.assert_array_equal(image[[0, 2, 3, 4]], [42.0, 7.0, 500.5, 5.0])
    assert np.isnan(image[1])
    np.testing.assert_array_equal(host(result.coverage)[0], [8, 0, 1, 2, 7])
    np.testing.assert_array_equal(host(result.rejected_high)[0], [0, 0, 0, 0, 1])


def test_min_survivors_guard(backend):
    data = on(backend, column([10.0, 10.2, 10.1, 9.9, 10.05, 500.0]))
    default = stack(data, config=WSC)
    assert (int(host(default.coverage)[0, 0]), default.stats["iterations"]) == (5, 2)
    # min_survivors >= n_valid still lets one sample go (issue 17: the floor is n_valid − 1) ...
    one = stack(data, config=WSC.replace(min_survivors=6))
    assert (int(host(one.coverage)[0, 0]), one.stats["iterations"]) == (5, 2)
    # ... and no rejection is possible on two samples: no pass runs.
    two = stack(on(backend, column([10.0, 500.0])), config=WSC)
    assert (int(host(two.coverage)[0, 0]), two.stats["iterations"]) == (2, 0)
    # κ = 0.3 would keep only 2 samples: with a guard of 3 the step is refused and the
    # pixel stops with its current (full) set; a guard of 2 lets it through.
    tight = WSC.replace(kappa_low=0.3, kappa_high=0.3)
    guarded = stack(data, config=tight)
    assert (int(host(guarded.coverage)[0, 0]), guarded.stats["iterations"]) == (6, 1)
    relaxed = stack(data, config=tight.replace(min_survivors=2))
    assert int(host(relaxed.coverage)[0, 0]) == 2


def test_asymmetric_kappa(backend):
    values = [99.0, 101.0] * 8 + [80.0, 125.0]  # a dark sample 20σ low, a bright one 25σ high
    loose_low = stack(on(backend, column(values)), config=WSC.replace(kappa_low=100.0))
    assert (int(host(loose_low.rejected_low)[0, 0]), int(host(loose_low.rejected_high)[0, 0])) == (0, 1)
    loose_high = stack(on(backend, column(values)), config=WSC.replace(kappa_high=100.0))
    assert (int(host(loose_high.rejected_low)[0, 0]), int(host(loose_high.rejected_high)[0, 0])) == (1, 0)
    both = stack(on(backend, column(values)), config=WSC)
    assert float(host(both.image)[0, 0]) == 100.0


def test_weights_change_the_combine_not_the_rejection(backend):
    rng = np.random.default_rng(3)
    data = rng.normal(500, 8, (10, 9, 7)).astype(np.float32)
    data[2, 3, 3] = 900.0
    data[7, 1:4, 2] = 50.0
    weights = np.linspace(0.2, 1.0, 10, dtype=np.float32)
    plain = stack(on(backend, data), config=WSC)
    weighted = stack(on(backend, data), config=WSC, weights=on(backend, weights))
    for name in ("coverage", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(host(getattr(weighted, name)), host(getattr(plain, name)))
    keep = np.ones(data.shape, bool)
    for y in range(9):
        for x in range(7):
            keep[:, y, x] = wsc_pixel(data[:, y, x])[0]
    w = weights[:, None, None] * keep
    expected = (w * data).sum(axis=0, dtype=np.float64) / w.sum(axis=0)
    np.testing.assert_allclose(host(weighted.image), expected, rtol=1e-5)


@pytest.mark.parametrize("impl", ["pixinsight", "zemosaic"])
def test_wsc_single_large_outlier_follows_the_median(backend, impl):
    # Upstream oracle: N = 12, one 10^4 hit on ~100 ADU -> result near the median, not the mean.
    rng = np.random.default_rng(13)
    values = rng.normal(100, 2, 12).astype(np.float32)
    values[4] = 1e4
    config = StackConfig.plain(reject="winsorized_sigma_clip", wsc_impl=impl)
    result = stack(on(backend, column(values)), config=config)
    assert abs(float(host(result.image)[0, 0]) - np.median(values)) < 2.0
    assert int(host(result.rejected_high)[0, 0]) == 1


# ---------------------------------------------------------------------------- oracle parity
def _random_stack(seed, n, shape=(16, 12)):
    rng = np.random.default_rng(seed)
    data = rng.normal(200, 6, (n,) + shape).astype(np.float32)
    for level in (4, 8, 30, 300):  # outliers both ways, at several levels
        data[rng.random(data.shape) < 0.03] += level * rng.choice([-6.0, 6.0])
    data[rng.random(data.shape) < 0.08] = np.nan
    data[:, 0, 0] = np.nan  # no sample
    data[1:, 0, 1] = np.nan  # one sample
    data[:, 0, 2] = np.round(data[:, 0, 2] / 10) * 10  # ties
    return data


@pytest.mark.parametrize("n", [3, 5, 8, 13, 40])
@pytest.mark.parametrize(("kappa_low", "kappa_high", "survivors"), [(3.0, 3.0, 3), (2.0, 2.5, 1)])
def test_matches_the_per_pixel_oracle(backend, n, kappa_low, kappa_high, survivors):
    data = _random_stack(n, n)
    config = WSC.replace(kappa_low=kappa_low, kappa_high=kappa_high, min_survivors=survivors)
    result = stack(on(backend, data), config=config)
    coverage, high, image = host(result.coverage), host(result.rejected_high), host(result.image)
    passes = 0
    for y in range(data.shape[1]):
        for x in range(data.shape[2]):
            values = data[:, y, x]
            keep, runs = wsc_pixel(values, kappa_low, kappa_high, 10, survivors)
            passes = max(passes, runs)
            assert coverage[y, x] == keep.sum(), (y, x)
            if keep.any():
                assert high[y, x] == (values[np.isfinite(values)] > values[keep].max()).sum(), (y, x)
                np.testing.assert_allclose(image[y, x], values[keep].astype(np.float64).mean(), rtol=1e-6)
    assert result.stats["iterations"] == passes


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


@pytest.mark.parametrize("strategy", ["dense_sync_free", "dense_checked", "compact"])
@pytest.mark.parametrize("backend_name", ["numpy", "torch:cpu", "array_api_strict"])
def test_strategies_give_identical_fits(backend_name, strategy):
    # The GPU strategy (every row every step, no host sync), the portable default
    # (dense, checked) and the CPU one (compaction) give the same ranges and sums.
    backend = get_backend(backend_name)
    xp = backend.xp
    data = _random_stack(7, 24)
    rows = on(backend, np.moveaxis(data, 0, -1).reshape(-1, data.shape[0]))
    reference = ArrayOps(xp)
    s, n = reference.sort_valid(rows)
    kwargs = dict(kappa_low=2.5, kappa_high=2.5, max_iters=10, min_survivors=2, xp=xp)
    ops = {"dense_sync_free": GpuOps(xp, "gpu-on-cpu"), "dense_checked": reference,
           "compact": ArrayOps(xp)}[strategy]
    ops.compact = strategy == "compact"
    got = wsc_pixinsight_fit(s, n, ops=ops, **kwargs)
    # The reference: NumPy with compaction, or dense where that would compare it with itself.
    reference_np = ArrayOps(get_backend("numpy").xp)
    reference_np.compact = not (backend_name == "numpy" and strategy == "compact")
    s_np, n_np = host(s), host(n)
    want = wsc_pixinsight_fit(s_np, n_np, ops=reference_np, **dict(kwargs, xp=get_backend("numpy").xp))
    for name in ("lo", "hi", "iterations", "centre"):
        np.testing.assert_array_equal(host(getattr(got, name)), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(host(got.kept_sum), want.kept_sum, rtol=1e-12, atol=1e-9)
    assert want.iterations.max() >= 3


@pytest.mark.parametrize("impl", ["pixinsight", "zemosaic"])
def test_band_size_never_changes_the_result(backend, impl):
    data = on(backend, _random_stack(9, 11, (13, 10)))
    config = WSC.replace(wsc_impl=impl)
    whole = stack_frames(data, config=config, band_rows=13)
    for rows in (1, 4):
        banded = stack_frames(data, config=config, band_rows=rows)
        for name in ("image", "coverage", "rejected_low", "rejected_high"):
            np.testing.assert_array_equal(host(getattr(banded, name)), host(getattr(whole, name)))
        assert banded.stats["iterations"] == whole.stats["iterations"]


# ---------------------------------------------------------------------------- clean data
@pytest.mark.parametrize(("n", "bound_pct"), [(8, 1.8), (16, 1.0), (32, 0.8), (128, 0.45)])
def test_clean_gaussian_data_loses_little(n, bound_pct):
    # Measured (docs/algorithms.md): 1.4 / 0.73 / 0.58 / 0.31 % rejected at κ = 3; a
    # Gaussian has 0.27 % beyond 3σ. The bounds leave room for the sample size.
    rng = np.random.default_rng(n)
    data = rng.normal(1000, 10, (n, 200_000 // n, 8)).astype(np.float32)
    result = stack(data, config=WSC)
    assert 0.1 < result.stats["rejected_pct"] < bound_pct
    assert abs(result.stats["rejected_low_fraction"] - result.stats["rejected_high_fraction"]) < 0.004
