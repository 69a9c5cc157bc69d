"""sum / min / max combines: known answers, weights, rejection, NaN, both code paths."""

from __future__ import annotations

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


@pytest.mark.parametrize(("combine_name", "kept_all", "after_minmax"), [
    ("sum", 106.0, 5.0), ("min", 1.0, 2.0), ("max", 100.0, 3.0)])
def test_known_answers_and_rejection(backend, combine_name, kept_all, after_minmax):
    data = on(backend, FRAMES)
    r = stack(data, config=StackConfig.plain(combine=combine_name))
    assert_on(r.image, backend)
    image = host(r.image)[0]
    assert image[0] == kept_all and np.isnan(image[1]) and image[2] == 5.0
    # minmax drops 1 and 100 from pixel 0: the combine sees only 2 and 3.
    r = stack(data, config=StackConfig.plain(reject="minmax", combine=combine_name, min_survivors=2))
    assert host(r.image)[0, 0] == after_minmax
    np.testing.assert_array_equal(host(r.coverage)[0], [2, 0, 1])


def test_weighted_sum_keeps_the_level(backend):
    # n_kept · Σw·x / Σw: (1·1 + 3·2 + 1·3 + 1·100) / 6 · 4 = 73.33; unweighted it is Σx.
    w = on(backend, [1.0, 3.0, 1.0, 1.0, 1.0])
    r = stack(on(backend, FRAMES), weights=w, config=StackConfig.plain(combine="sum"))
    assert host(r.image)[0, 0] == pytest.approx(110 / 6 * 4)
    assert host(r.weight_sum)[0, 0] == 6.0
    # A zero weight is "no data": it does not count toward n_kept.
    w0 = on(backend, [1.0, 1.0, 1.0, 0.0, 1.0])
    r = stack(on(backend, FRAMES), weights=w0, config=StackConfig.plain(combine="sum"))
    assert host(r.image)[0, 0] == 6.0


def test_min_max_ignore_weights(backend):
    w = on(backend, [5.0, 0.5, 1.0, 1.0, 1.0])
    for name, expected in (("min", 1.0), ("max", 100.0)):
        r = stack(on(backend, FRAMES), weights=w, config=StackConfig.plain(combine=name))
        assert host(r.image)[0, 0] == expected


@pytest.mark.parametrize("combine_name", ["median", "sum", "min", "max"])
@pytest.mark.parametrize("reject_name", ["percentile", "minmax", "gesd", "kappa_sigma"])
def test_range_and_mask_paths_agree(combine_name, reject_name):
    # Rejections that keep a sorted range hand (lo, hi) to the combine; without them it
    # must find the same answer from the keep mask.
    rng = np.random.default_rng(0)
    x = rng.normal(100, 5, (300, 15)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] += 500
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:3] = np.nan
    samples = Samples(x, None, xp=np_xp)
    config = StackConfig.plain(reject=reject_name, combine=combine_name)
    rej = reject(samples, config)
    assert rej.lo is not None
    fast, _, _ = combine(samples, rej, config)
    slow, _, _ = combine(samples, Rejection(rej.keep, rej.n_low, rej.n_high, rej.iterations), config)
    np.testing.assert_allclose(fast, slow, rtol=1e-6)
    assert np.all(np.isnan(fast[:3]))


@pytest.mark.parametrize("combine_name", ["sum", "min", "max"])
def test_backend_parity(backend, combine_name):
    s = make_stack(n_frames=9, shape=(16, 14), seed=1, rgb=True)
    config = StackConfig(reject="linear_fit_clip", combine=combine_name)
    expected = stack(s.frames, config=config)
    got = stack_other_implementation(backend, s.frames, config)
    assert got.stats["ops"] != expected.stats["ops"]
    np.testing.assert_allclose(host(got.image), expected.image, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(host(got.coverage), expected.coverage)


@pytest.mark.parametrize("combine_name", ["sum", "min", "max"])
def test_band_size_invariance(backend, combine_name):
    from zemosaic_xp.core.in_memory import stack_frames

    s = make_stack(n_frames=7, shape=(15, 11), seed=3, rgb=True)
    config = StackConfig(reject="gesd", combine=combine_name)
    frames = on(backend, s.frames)
    whole = stack_frames(frames, config=config, band_rows=15)
    banded = stack_frames(frames, config=config, band_rows=4)
    np.testing.assert_array_equal(host(banded.image), host(whole.image))
