"""The band path sorts with the network or with NumPy's sort: the same results (issue 13).

``ops_numpy._BAND_NETWORK_MAX_N`` picks one of the two per frame count for speed only;
this checks that the choice can never change a stack: for frame counts around the limit,
every rejection and combine of the band path, with NaN, ±inf, huge values and a
gain/offset normalisation, gives the same bytes both ways.
"""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp import StackConfig
from zemosaic_xp.core.pipeline import FramePlan

kernels = pytest.importorskip("zemosaic_xp.backends.numba.kernels",
                              reason="numba is not installed (optional extra [fast])")
from zemosaic_xp.backends import ops_numpy  # noqa: E402
from zemosaic_xp.backends.numba import band as band_kernels  # noqa: E402

REJECTIONS = ["none", "kappa_sigma", "winsorized_sigma_clip", "percentile", "mad", "minmax", "gesd",
              "linear_fit_clip", "winsorized_quantile"]


def _frames(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.normal(1000, 10, (n, 6, 40, 2)).astype(np.float32)
    frames[rng.random(frames.shape) < 0.01] = 60000.0  # cosmic rays
    frames[rng.random(frames.shape) < 0.01] = np.nan  # holes
    frames[0, 1, 2, 0] = np.inf
    frames[1, 2, 3, 1] = -np.inf
    frames[2, 3, 4, 0] = 3e38
    frames[:, 5, 7, 1] = np.nan  # a pixel without data
    frames[1:, 4, 9, 0] = np.nan  # a pixel with one sample
    return frames


def _stack(frames: np.ndarray, pairs: np.ndarray, config: StackConfig, plan: FramePlan) -> tuple:
    shape = (4, frames.shape[2], frames.shape[3])
    out = (np.empty(shape, np.float32), np.empty(shape, np.float32), *(np.empty(shape, np.int32) for _ in range(3)),
           np.empty(shape, np.float32))
    counts = band_kernels.stack_band(frames, 1, 5, pairs, config, plan, out)
    return counts, tuple(a.view(np.uint8).copy() for a in out)


def _same_both_ways(frames: np.ndarray, n: int, config: StackConfig, plan: FramePlan) -> tuple:
    """The band sorted by the network and by NumPy: asserts the same counts and bytes, returns the first."""
    with np.errstate(over="ignore", invalid="ignore"):
        network = _stack(frames, kernels.merge_network(n), config, plan)
        numpy_sort = _stack(frames, np.zeros((0, 2), np.int64), config, plan)
    assert network[0] == numpy_sort[0]
    for a, b in zip(network[1], numpy_sort[1], strict=True):
        np.testing.assert_array_equal(a, b)
    return network


@pytest.mark.parametrize("n", sorted({24, 32, 48, ops_numpy._BAND_NETWORK_MAX_N}))
@pytest.mark.parametrize("reject", REJECTIONS)
@pytest.mark.parametrize("combine", ["mean", "median"])
@pytest.mark.parametrize("normalise", [False, True])
def test_network_and_numpy_sort_give_the_same_band(n, reject, combine, normalise):
    frames = _frames(n, seed=n)
    if normalise:
        rng = np.random.default_rng(1)
        plan = FramePlan(rng.uniform(0.9, 1.1, (n, 2)).astype(np.float32),
                         rng.uniform(-5, 5, (n, 2)).astype(np.float32), None, {}, identity=False)
    else:
        plan = FramePlan(np.ones((n, 2), np.float32), np.zeros((n, 2), np.float32), None, {}, identity=True)
    config = StackConfig.plain(reject=reject, combine=combine, kappa_low=2.5, kappa_high=2.5)
    network = _same_both_ways(frames, n, config, plan)
    assert network[0][1] > 0  # the band has valid samples: the comparison is not vacuous


@pytest.mark.parametrize("overflow", [False, True])
def test_the_median_of_every_sample_comes_from_the_gather(overflow, monkeypatch):
    # reject="none" + median with a network: the gather's medians and sums are the
    # result (no sorted rows stored); after a normalised value overflowed to +inf the
    # band is redone from sorted rows. Either way the bytes of the NumPy-sort path.
    n = 20
    frames = _frames(n, seed=5)
    frames[3, 2, 5, 0] = 3.3e38  # x 1.1 overflows to +inf: a valid sample
    frames[:, 3, 9, 0] = np.nan  # a pixel of the band without data
    gain = np.full((n, 2), 1.0 if not overflow else 1.1, np.float32)
    plan = FramePlan(gain, np.zeros((n, 2), np.float32), None, {}, identity=False)
    config = StackConfig.plain(reject="none", combine="median")
    calls = []
    real = band_kernels.stack_band

    def counted(*args, **kwargs):
        calls.append(kwargs.get("keep_rows", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(band_kernels, "stack_band", counted)
    network = _same_both_ways(frames, n, config, plan)
    assert calls == ([False, True, False] if overflow else [False, False])  # the recount only after an overflow
    image = network[1][0].view(np.float32)
    assert np.isnan(image).any() and np.isfinite(image).sum() > 100  # holes and data both checked


@pytest.mark.parametrize("n", [2, 17, 24, 32, 48])
def test_network_compare_exchange_keeps_its_tie_rule(n):
    # Each compare-exchange writes `u if u < v else v` and `v if u < v else u` (written
    # as np.minimum / np.maximum so that the stores are not masked): on ties, signed
    # zeros included, the same bits as that rule, which the band results rely on.
    from zemosaic_xp.backends.numba.sorting import NETWORK_LANES, network

    rng = np.random.default_rng(n)
    choices = np.array([-0.0, 0.0, -1.0, 1.0, 2.5, np.inf, -np.inf, 3e38], np.float32)
    block = rng.choice(choices, (n, NETWORK_LANES)).astype(np.float32)
    pairs = kernels.merge_network(n)
    want = block.copy()
    for i, j in pairs:
        u, v = want[i].copy(), want[j].copy()
        below = u < v
        want[i], want[j] = np.where(below, u, v), np.where(below, v, u)
    got = block.copy()
    network(got, pairs)
    assert got.tobytes() == want.tobytes()
    assert np.signbit(got).any() and (got == 0).sum() > np.signbit(got[got == 0]).sum()  # both zeros present


@pytest.mark.parametrize("n", [49, 50, 61, 200])
@pytest.mark.parametrize("holes", [False, True])
def test_median_of_full_rows_selects_instead_of_sorting(n, holes, monkeypatch):
    # Above the network's N a median without rejection selects the middle ranks when the
    # band has no invalid sample: the same image and counts as the sorted rows, the map
    # within rounding (its sums run over the same values in another order). With a hole
    # in the band the rows are sorted as before.
    frames = _frames(n, seed=n) if holes else np.random.default_rng(n).normal(1000, 10, (n, 6, 40, 2))
    frames = frames.astype(np.float32)
    if not holes:
        frames[3, 2, 5, 0] = 60000.0  # an outlier stays in the median's rows
    plan = FramePlan(np.ones((n, 2), np.float32), np.zeros((n, 2), np.float32), None, {}, identity=True)
    config = StackConfig.plain(combine="median")
    calls = []
    real = band_kernels.middle_ranks_in_place

    def spy(s):
        calls.append(real(s))
        return calls[-1]

    monkeypatch.setattr(band_kernels, "middle_ranks_in_place", spy)
    selected = _stack(frames, np.zeros((0, 2), np.int64), config, plan)
    assert calls and all(calls) != holes
    monkeypatch.setattr(band_kernels, "middle_ranks_in_place", lambda s: False)
    sorted_rows = _stack(frames, np.zeros((0, 2), np.int64), config, plan)
    assert selected[0] == sorted_rows[0]
    for a, b in zip(selected[1][:5], sorted_rows[1][:5], strict=True):
        np.testing.assert_array_equal(a, b)
    se_sel, se_sort = (r[1][5].view(np.float32) for r in (selected, sorted_rows))
    np.testing.assert_allclose(se_sel, se_sort, rtol=1e-6, equal_nan=True)
    assert np.isfinite(se_sel).any()


@pytest.mark.parametrize("n", [2, 3, 50, 51, 200])
def test_middle_ranks_in_place_contract(n):
    # Every row keeps its values; positions (n − 1) // 2 and n // 2 hold the sorted row's;
    # a row with +inf (an invalid sample) leaves the band untouched.
    rng = np.random.default_rng(n)
    s = rng.integers(0, 7, (64, n)).astype(np.float32)  # many ties
    want = np.sort(s, axis=-1)
    got = s.copy()
    assert band_kernels.middle_ranks_in_place(got)
    np.testing.assert_array_equal(np.sort(got, axis=-1), want)
    for k in {(n - 1) // 2, n // 2}:
        np.testing.assert_array_equal(got[:, k], want[:, k])
    holed = s.copy()
    holed[5, 0] = np.inf
    assert not band_kernels.middle_ranks_in_place(holed)
    np.testing.assert_array_equal(holed[:, 1:], s[:, 1:])
