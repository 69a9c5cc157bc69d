"""percentile combine: the unweighted quantile of the survivors (issue 16)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from array_api_compat import numpy as np_xp

from tests.conftest import assert_on, host, on, stack_other_implementation
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.combine import combine
from zemosaic_xp.core.reject import reject
from zemosaic_xp.core.samples import Rejection, Samples
from zemosaic_xp.synthetic import make_stack

# Pixel 0: 1, 2, 3, 100 and a NaN. Pixel 1: nothing valid. Pixel 2: a single 5.
FRAMES = np.array([[1.0, np.nan, np.nan], [2.0, np.nan, 5.0], [3.0, np.nan, np.nan],
                   [100.0, np.nan, np.nan], [np.nan, np.nan, np.nan]], dtype=np.float32)[:, None, :]


@pytest.mark.parametrize(("q", "expected"), [
    # linear interpolation at q·(n − 1) in the sorted survivors 1, 2, 3, 100
    (0.0, 1.0), (25.0, 1.75), (50.0, 2.5), (75.0, 27.25), (100.0, 100.0), (10.0, 1.3)])
def test_known_answers(backend, q, expected):
    r = stack(on(backend, FRAMES), config=StackConfig.plain(combine="percentile", combine_percentile=q))
    assert_on(r.image, backend)
    image = host(r.image)[0]
    assert image[0] == pytest.approx(expected, rel=1e-6)
    assert np.isnan(image[1]) and image[2] == 5.0  # no sample: NaN; one sample: itself
    np.testing.assert_array_equal(host(r.coverage)[0], [4, 0, 1])
    np.testing.assert_array_equal(host(r.weight_sum)[0], [4.0, 0.0, 1.0])


def test_default_is_the_median_and_matches_numpy():
    rng = np.random.default_rng(4)
    x = rng.normal(50, 10, (9, 6, 5)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    median = stack(x, config=StackConfig.plain(combine="median"))
    pct = stack(x, config=StackConfig.plain(combine="percentile"))
    np.testing.assert_array_equal(pct.image, median.image)
    for q in (5.0, 33.0, 90.0):
        r = stack(x, config=StackConfig.plain(combine="percentile", combine_percentile=q))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: NaN
            expected = np.nanpercentile(x.astype(np.float64), q, axis=0)
        np.testing.assert_allclose(r.image, expected, rtol=1e-5, equal_nan=True)


def test_weights_are_ignored_and_rejection_applies(backend):
    w = on(backend, [5.0, 0.5, 1.0, 1.0, 1.0])
    r = stack(on(backend, FRAMES), weights=w, config=StackConfig.plain(combine="percentile"))
    assert host(r.image)[0, 0] == 2.5
    # minmax drops 1 and 100 from pixel 0: the quantile of 2, 3.
    config = StackConfig.plain(reject="minmax", combine="percentile", combine_percentile=25.0, min_survivors=2)
    r = stack(on(backend, FRAMES), config=config)
    assert host(r.image)[0, 0] == pytest.approx(2.25)


@pytest.mark.parametrize("reject_name", ["percentile", "minmax", "gesd", "kappa_sigma"])
def test_range_and_mask_paths_agree(reject_name):
    rng = np.random.default_rng(0)
    x = rng.normal(100, 5, (300, 15)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] += 500
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:3] = np.nan
    samples = Samples(x, None, xp=np_xp)
    config = StackConfig.plain(reject=reject_name, combine="percentile", combine_percentile=30.0)
    rej = reject(samples, config)
    assert rej.lo is not None
    fast, _, _ = combine(samples, rej, config)
    slow, _, _ = combine(samples, Rejection(rej.keep, rej.n_low, rej.n_high, rej.iterations), config)
    np.testing.assert_allclose(fast, slow, rtol=1e-6)
    assert np.all(np.isnan(fast[:3]))


def test_backend_parity(backend):
    s = make_stack(n_frames=9, shape=(16, 14), seed=1, rgb=True)
    config = StackConfig(reject="linear_fit_clip", combine="percentile", combine_percentile=70.0)
    expected = stack(s.frames, config=config)
    got = stack_other_implementation(backend, s.frames, config)
    assert got.stats["ops"] != expected.stats["ops"]
    np.testing.assert_allclose(host(got.image), expected.image, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(host(got.coverage), expected.coverage)


def test_band_size_invariance(backend):
    from zemosaic_xp.core.in_memory import stack_frames

    s = make_stack(n_frames=7, shape=(15, 11), seed=3, rgb=True)
    config = StackConfig(reject="gesd", combine="percentile", combine_percentile=40.0)
    frames = on(backend, s.frames)
    whole = stack_frames(frames, config=config, band_rows=15)
    banded = stack_frames(frames, config=config, band_rows=4)
    np.testing.assert_array_equal(host(banded.image), host(whole.image))


def test_single_frame_and_empty():
    one = np.array([[[7.0, np.nan]]], dtype=np.float32)
    r = stack(one, config=StackConfig.plain(combine="percentile", combine_percentile=90.0))
    assert r.image[0, 0] == 7.0 and np.isnan(r.image[0, 1])


@pytest.mark.parametrize("bad", [-1.0, 100.5, float("nan"), "high"])
def test_bad_percentile_is_refused(bad):
    with pytest.raises(ValueError, match="combine_percentile"):
        StackConfig(combine="percentile", combine_percentile=bad)


def test_zemosaic_keys():
    config = StackConfig.from_dict({"stacking_final_combine_method": "Quantile",
                                    "stacking_final_combine_percentile": "75"})
    assert (config.combine, config.combine_percentile) == ("percentile", 75.0)
    with pytest.raises(ValueError, match="stacking_final_combine_percentile"):
        StackConfig.from_dict({"stacking_final_combine_method": "percentile",
                               "stacking_final_combine_percentile": 150})
