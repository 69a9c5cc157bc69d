"""Portable NaN-aware statistics against hand-computed values and NumPy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.conftest import assert_on, host, on
from zemosaic_xp.core import nanstats


class TestKnownAnswers:
    def test_median_odd_even_and_nan(self, backend):
        # Pixel 0: odd count with a NaN; pixel 1: even count -> mean of the middle pair;
        # pixel 2: every sample NaN -> NaN without a warning.
        data = np.array([[1.0, 1.0, np.nan], [3.0, 2.0, np.nan], [2.0, 4.0, np.nan],
                         [np.nan, 3.0, np.nan]], dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = nanstats.nanmedian(on(backend, data))
        assert_on(out, backend)
        np.testing.assert_array_equal(host(out)[:2], [2.0, 2.5])
        assert np.isnan(host(out)[2])

    def test_mean_std_mad_small(self, backend):
        data = on(backend, np.array([[1.0], [2.0], [3.0], [np.nan], [10.0]]))
        assert host(nanstats.nanmean(data))[0] == pytest.approx(4.0)
        # population std of {1, 2, 3, 10}: mean 4, squared deviations 9+4+1+36 = 50
        assert host(nanstats.nanstd(data))[0] == pytest.approx(np.sqrt(50 / 4))
        assert host(nanstats.nanstd(data, correction=1))[0] == pytest.approx(np.sqrt(50 / 3))
        # |x - 2.5| = 1.5, 0.5, 0.5, 7.5 -> median 1.0
        assert host(nanstats.nanmad(data))[0] == pytest.approx(1.0)

    def test_quantile_linear_interpolation(self, backend):
        data = on(backend, np.array([[0.0], [10.0], [20.0], [30.0], [np.nan]]))
        # position 0.25 * 3 = 0.75 -> 0 + 0.75 * 10
        assert host(nanstats.nanquantile(data, 0.25))[0] == pytest.approx(7.5)
        assert host(nanstats.nanquantile(data, 1.0))[0] == pytest.approx(30.0)
        assert host(nanstats.nanquantile(data, 0.0))[0] == pytest.approx(0.0)

    def test_empty_slices_are_nan_without_warning(self, backend):
        data = on(backend, np.full((4, 3), np.nan))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for fn in (nanstats.nanmedian, nanstats.nanmean, nanstats.nanstd, nanstats.nanmad):
                assert np.all(np.isnan(host(fn(data))))
            assert np.all(np.isnan(host(nanstats.nanquantile(data, 0.3))))

    def test_std_needs_more_than_correction_samples(self, backend):
        data = on(backend, np.array([[5.0], [np.nan]]))
        assert np.isnan(host(nanstats.nanstd(data, correction=1))[0])
        assert host(nanstats.nanstd(data, correction=0))[0] == 0.0


# Differential table against NumPy: each row names its edge case.
_CASES = {
    "gaussian": lambda rng: rng.normal(100, 5, (17, 6, 5)),
    "nan_sprinkled": lambda rng: np.where(rng.random((16, 6, 5)) < 0.3, np.nan, rng.normal(0, 1, (16, 6, 5))),
    "single_frame": lambda rng: rng.normal(0, 1, (1, 4, 4)),
    "two_frames": lambda rng: rng.normal(0, 1, (2, 4, 4)),
    "ties": lambda rng: rng.integers(0, 3, (12, 5, 5)).astype(float),
    "negative_offsets": lambda rng: rng.normal(-1e4, 3, (9, 3, 3)),
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_against_numpy(backend, case):
    rng = np.random.default_rng(7)
    data = _CASES[case](rng).astype(np.float32)
    x = on(backend, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's own all-NaN warnings
        np.testing.assert_allclose(host(nanstats.nanmedian(x)), np.nanmedian(data, axis=0), rtol=1e-6)
        np.testing.assert_allclose(host(nanstats.nanmean(x)), np.nanmean(data, axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(host(nanstats.nanstd(x)), np.nanstd(data, axis=0), rtol=1e-4, atol=1e-5)
        for q in (0.05, 0.25, 0.5, 0.9):
            np.testing.assert_allclose(host(nanstats.nanquantile(x, q)), np.nanquantile(data, q, axis=0),
                                       rtol=1e-5, atol=1e-5)
        mad = np.nanmedian(np.abs(data - np.nanmedian(data, axis=0)), axis=0)
        np.testing.assert_allclose(host(nanstats.nanmad(x)), mad, rtol=1e-5, atol=1e-6)


def test_axis_argument(backend):
    data = np.random.default_rng(1).normal(size=(4, 7, 3)).astype(np.float32)
    out = nanstats.nanmedian(on(backend, data), axis=1)
    np.testing.assert_allclose(host(out), np.median(data, axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="axis"):
        nanstats.nanmedian(on(backend, data), axis=3)


def test_median_is_not_the_lower_median_on_torch():
    # torch.median returns the lower middle value; ours must average the pair.
    from tests.conftest import get_backend

    torch_backend = get_backend("torch:cpu")
    out = nanstats.nanmedian(on(torch_backend, np.array([[1.0], [2.0], [3.0], [4.0]])))
    assert host(out)[0] == 2.5
