"""The numba band kernel of ``linear_fit_clip`` (backends/numba/linear_fit_clip.py) against the portable core.

Bit-identical results (the fast pass and its exact fallback alike) for every combine, frame
count (sorting network and NumPy's sort), normalisation and parameter set, band-size
invariant; rows whose kept set is not a range; tied rows; one known answer.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.backends.numba_band import (
    N_FRAMES,
    assert_identical,
    check_band_invariance,
    check_every_combine,
    mixed_frames,
    stack_both,
)
from zemosaic_xp import StackConfig
from zemosaic_xp.backends.numba import linear_fit_clip
from zemosaic_xp.core.ops import ArrayOps
from zemosaic_xp.core.reject import linear_fit_clip as core_linear_fit_clip

pytestmark = pytest.mark.usefixtures("kernels_on")
REJECT = "linear_fit_clip"


@pytest.mark.parametrize("normalize", ["none", "multiplicative"])
@pytest.mark.parametrize("n", N_FRAMES)
def test_band_equals_portable(n, normalize, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n), band_calls, normalize=normalize)


@pytest.mark.parametrize("params", [dict(kappa_low=2.0, kappa_high=2.5),
                                    dict(kappa_low=1.5, kappa_high=1.5, max_iters=3, min_survivors=1),
                                    dict(kappa_low=3.0, kappa_high=3.0, max_iters=1, min_survivors=6)])
@pytest.mark.parametrize("n", [6, 33, 60])
def test_parameters_equal_portable(n, params, band_calls):
    check_every_combine(REJECT, mixed_frames(n, n + 7), band_calls, **params)


def test_band_size_invariance():
    check_band_invariance(REJECT)


@pytest.mark.parametrize("n", [9, 17, 60])
def test_rows_whose_kept_set_is_not_a_range(n, band_calls):
    # The data has such rows (the kernel flags them), and the stack still equals the core's.
    frames = mixed_frames(n, n)
    x = np.ascontiguousarray(np.moveaxis(frames, 0, -1).reshape(-1, n))
    s, count = ArrayOps(np).sort_valid(x)
    rows = s.shape[0]
    lo, hi, it = (np.empty(rows, np.int64) for _ in range(3))
    split, keep = np.empty(rows, np.bool_), np.empty(s.shape, np.bool_)
    with np.errstate(all="ignore"):
        linear_fit_clip.linear_fit_clip_rows(s, count[:, 0], 3.0, 3.0, 10, 3, lo, hi, it, split, keep)
    assert split.any()
    assert np.all(keep[split].sum(axis=1) == (hi - lo)[split])
    check_every_combine(REJECT, frames, band_calls)


def test_known_answer(band_calls):
    # A line (no rejection: σ is floored) and the same line with its top replaced by 1000.
    frames = np.stack([np.arange(1, 11, dtype=np.float32)] * 2, axis=1)[:, None, :]
    frames[9, 0, 1] = 1000
    fast, ref = stack_both(frames, StackConfig.plain(reject=REJECT, combine="mean"))
    assert_identical(fast, ref)
    np.testing.assert_array_equal(fast.image[0], np.array([5.5, 5.0], np.float32))
    np.testing.assert_array_equal(fast.coverage[0], [10, 9])
    np.testing.assert_array_equal(fast.rejected_high[0], [0, 1])
    assert band_calls and all(band_calls)


def test_constants_are_the_core_s():
    assert linear_fit_clip.RELATIVE_SIGMA_FLOOR == core_linear_fit_clip._RELATIVE_SIGMA_FLOOR


def _outputs(rows: int, n: int) -> list[np.ndarray]:
    return [np.zeros(rows, np.int64), np.zeros(rows, np.int64), np.zeros(rows, np.int64),
            np.zeros(rows, np.bool_), np.zeros((rows, n), np.bool_)]


def _sorted_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, count = ArrayOps(np).sort_valid(np.ascontiguousarray(x, dtype=np.float32))
    return s, count[:, 0]


@pytest.mark.parametrize("params", [(3.0, 3.0, 10, 1), (1.0, 1.5, 10, 2), (0.5, 0.5, 20, 1)])
@pytest.mark.parametrize("n", [7, 33, 200, 500])
def test_fast_pass_decides_as_the_core_s_sums(n, params):
    # Sky with outliers (many iterations, rows that split) and small integers (exact ties
    # between residuals and bounds): the two-pass kernel gives what the core's sums give
    # on every row, and the fast pass hands the tied rows to the exact one.
    rng = np.random.default_rng(n)
    sky = rng.normal(1000, 10, (300, n)).astype(np.float32)
    sky[rng.random(sky.shape) < 0.04] += 400
    ties = rng.integers(0, 4, (300, n)).astype(np.float32)
    ties[rng.random(ties.shape) < 0.03] = 50
    s, count = _sorted_rows(np.concatenate([sky, ties]))
    rows = s.shape[0]
    both, exact = _outputs(rows, n), _outputs(rows, n)
    linear_fit_clip.linear_fit_clip_rows(s, count, *params, *both)
    linear_fit_clip._exact_rows(s, count, *params, *exact, np.arange(rows))
    for got, want in zip(both[:4], exact[:4]):
        np.testing.assert_array_equal(got, want)
    split = exact[3]
    np.testing.assert_array_equal(both[4][split], exact[4][split])
    assert exact[2].max() >= 2  # rows iterate


def test_fast_pass_hands_ties_to_the_exact_one():
    # Small integers tie residuals with bounds exactly: those rows go to the exact pass,
    # the sky rows almost never. (κ = 1.5 would tie sky rows too: three samples left on
    # a line have residuals (t, −2t, t), 1.5 times their mean |t| at the middle one.)
    redone = {"sky": 0, "ties": 0}
    for n in (9, 33, 200):
        rng = np.random.default_rng(n)
        for name, x in (("sky", rng.normal(1000, 10, (300, n))), ("ties", rng.integers(0, 4, (300, n)))):
            s, count = _sorted_rows(x)
            redo = np.empty(300, np.int64)
            redone[name] += linear_fit_clip._fast_rows(s, count, 1.0, 1.2, 10, 2, *_outputs(300, n), redo)
    assert redone["ties"] > 30
    assert redone["sky"] <= 9


def test_fast_pass_leaves_non_finite_rows_to_the_exact_one():
    x = np.random.default_rng(3).normal(0, 1, (4, 40)).astype(np.float32)
    x[1, 5] = np.inf
    x[2, 7] = -np.inf
    x[3, :] = 1e30
    x[3, ::2] = -1e30
    s, count = _sorted_rows(x)
    redo = np.empty(4, np.int64)
    n_redo = linear_fit_clip._fast_rows(s, count, 3.0, 3.0, 10, 1, *_outputs(4, 40), redo)
    assert sorted(redo[:n_redo]) == [1, 2]
