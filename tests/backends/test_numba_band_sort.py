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


@pytest.mark.parametrize("n", [ops_numpy._BAND_NETWORK_MAX_N, 32, 48])
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
    with np.errstate(over="ignore", invalid="ignore"):
        network = _stack(frames, kernels.merge_network(n), config, plan)
        numpy_sort = _stack(frames, np.zeros((0, 2), np.int64), config, plan)
    assert network[0] == numpy_sort[0]
    for a, b in zip(network[1], numpy_sort[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert network[0][1] > 0  # the band has valid samples: the comparison is not vacuous


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


def _percentile_frames(n: int, seed: int) -> np.ndarray:
    """Whole-ADU frames (many ties) with cosmic rays, dark outliers and a pixel whose values
    span too many ulps for an exact sum in any order (its mean is redone in frame order)."""
    rng = np.random.default_rng(seed)
    frames = np.round(rng.normal(1000, 10, (n, 6, 40, 2))).astype(np.float32)
    frames[rng.random(frames.shape) < 0.01] = 60000.0
    frames[rng.random(frames.shape) < 0.005] = 3.0
    frames[:, 2, 11, 0] = rng.uniform(900, 1100, n).astype(np.float32)
    frames[: n // 2, 2, 11, 0] += np.float32(1e-4)  # not whole: ulps apart over a wide span
    frames[0, 2, 11, 0] = 1e-6
    return frames


@pytest.mark.parametrize("n", [49, 60, 200])
@pytest.mark.parametrize("combine", ["mean", "sum"])
@pytest.mark.parametrize(("normalise", "min_survivors", "holes"),
                         [(False, 1, False), (True, 1, False), (False, 10_000, False), (False, 1, True)])
def test_percentile_of_full_rows_selects_instead_of_sorting(n, combine, normalise, min_survivors, holes,
                                                            monkeypatch):
    # Above the network's N the percentile clip with a mean or a sum selects the middle
    # ranks and moves only the rejected samples out of the kept range, when the band has
    # no invalid sample: the same bytes as on sorted rows for the image and the counts,
    # the map within rounding; min_survivors above N keeps every sample (the fallback);
    # with a hole in the band the rows are sorted as before.
    frames = _percentile_frames(n, seed=n)
    if holes:
        frames[3, 1, 4, 1] = np.nan
    rng = np.random.default_rng(2)
    if normalise:
        plan = FramePlan(rng.uniform(0.9, 1.1, (n, 2)).astype(np.float32),
                         rng.uniform(-5, 5, (n, 2)).astype(np.float32), None, {}, identity=False)
    else:
        plan = FramePlan(np.ones((n, 2), np.float32), np.zeros((n, 2), np.float32), None, {}, identity=True)
    config = StackConfig.plain(reject="percentile", combine=combine, percentile_low=0.2, percentile_high=0.1,
                               min_survivors=min_survivors)
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
    assert selected[0][2] + selected[0][3] > 0  # outliers were clipped
    per_pixel = selected[1][3].view(np.int32) + selected[1][4].view(np.int32)
    # min_survivors above N: a pixel may lose one sample (N − 1 is the floor), not two.
    assert (per_pixel.max() <= 1) == (min_survivors > n)


def test_percentile_selected_rows_contract():
    # Each row ends as [below the lower bound | kept | above the upper bound], the kept
    # range's smallest value first and its largest last, the row's values unchanged, and
    # the ranges those of percentile_rows on the sorted rows.
    from zemosaic_xp.backends.numba.percentile import percentile_rows, percentile_selected_rows

    rng = np.random.default_rng(5)
    n = 61
    s = np.round(rng.normal(100, 8, (300, n))).astype(np.float32)
    s[:200][rng.random((200, n)) < 0.03] = 500.0
    s[:200][rng.random((200, n)) < 0.03] = 1.0  # rows 200… keep every sample
    s[7] = 100.0  # every value equal
    s[250] = rng.permutation(n).astype(np.float32) + 90.0  # distinct values, the largest anywhere
    sorted_s = np.sort(s, axis=-1)
    want = [np.empty(300, np.int64) for _ in range(3)]
    percentile_rows(sorted_s, np.full(300, n, np.int64), np.float32(0.2), np.float32(0.1), 1, *want)
    got_s = s.copy()
    assert band_kernels.middle_ranks_in_place(got_s)
    k = (n - 1) // 2  # the contract fixes positions k and k + 1 only: shuffle the others
    got_s[:, :k] = rng.permuted(got_s[:, :k], axis=-1)
    got_s[:, k + 2:] = rng.permuted(got_s[:, k + 2:], axis=-1)
    got = [np.empty(300, np.int64) for _ in range(3)]
    percentile_selected_rows(got_s, np.float32(0.2), np.float32(0.1), 1, *got)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.sort(got_s, axis=-1), sorted_s)
    lo, hi = got[0], got[1]
    assert (hi - lo < n).any() and (hi - lo == n).any()
    for r in range(300):
        kept = got_s[r, lo[r]:hi[r]]
        np.testing.assert_array_equal(np.sort(kept), sorted_s[r, lo[r]:hi[r]])
        assert kept[0] == kept.min() and kept[-1] == kept.max()
        assert np.all(got_s[r, :lo[r]] < kept.min()) and np.all(got_s[r, hi[r]:] > kept.max())
