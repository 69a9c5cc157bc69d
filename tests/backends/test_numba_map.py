"""The numba band path's uncertainty map where its sums come from the band's own passes.

Rows sorted by NumPy (above the sorting network's N = 48): the median's map from the count
pass's sums about the median, the mean's and the sum's from the sums of their combine
pass, divided and square-rooted after the combine loop. Against the portable core and
an independent float64 formula.
"""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.ops import portable_only
from zemosaic_xp.synthetic import make_stack

pytest.importorskip("zemosaic_xp.backends.numba.kernels",
                    reason="the kernels need the optional `numba` (pip install zemosaic-xp[fast])")


def _stack_with_holes(n_frames: int, seed: int, combine: str, shape=(12, 17), reject: str = "none"):
    """The numba and portable stacks of frames with holes; checks the image and the map agree.

    Rows 3–4 lose half their frames, pixel (7, 2) has no sample and (8, 3) a single one.
    Returns the frames and the numba path's result.
    """
    frames = make_stack(n_frames=n_frames, shape=shape, seed=seed).frames.copy()
    frames[: n_frames // 2, 3:5] = np.nan
    frames[:, 7, 2] = np.nan
    frames[1:, 8, 3] = np.nan
    config = StackConfig.plain(combine=combine, reject=reject)
    fast = stack(frames, config=config)
    with portable_only():
        ref = stack(frames, config=config)
    assert fast.stats["ops"] != ref.stats["ops"]
    np.testing.assert_array_equal(fast.image, ref.image)
    np.testing.assert_allclose(fast.uncertainty, ref.uncertainty, rtol=2e-5, equal_nan=True)
    assert np.isnan(fast.uncertainty[7, 2]) and np.isnan(fast.uncertainty[8, 3])
    return frames, fast


@pytest.mark.parametrize("n_frames", [49, 60])
def test_median_map_of_numpy_sorted_rows_comes_from_their_sums(n_frames):
    # Above the network's N the rows are sorted by NumPy; with the map asked, the count
    # pass also sums them about their median (the median combine's value), so the map
    # needs no pass of its own: the core's estimator on the same survivors.
    frames, fast = _stack_with_holes(n_frames, n_frames, "median")
    # The float64 formula of the kernels, from the sorted survivors about their median.
    x = np.sort(np.moveaxis(frames, 0, -1), axis=-1).astype(np.float64)
    n = np.sum(~np.isnan(x), axis=-1)
    d = x - np.asarray(fast.image, np.float64)[..., None]
    ss = n * np.nansum(d * d, axis=-1) - np.nansum(d, axis=-1) ** 2
    c_med = np.where(n % 2 == 1, 0.43, 1.39)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = ss / (n * (n - 1.0)) * np.where(n == 2, 0.5, (np.pi / 2.0) / (n + c_med))
    want = np.where(n >= 2, np.sqrt(var), np.nan).astype(np.float32)
    np.testing.assert_allclose(fast.uncertainty, want, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("combine", ["mean", "sum"])
@pytest.mark.parametrize("n_frames", [49, 60])
def test_mean_map_of_numpy_sorted_rows_from_the_fused_sums(n_frames, combine):
    # Above the network's N the mean's pass over each row also sums its squares; the
    # standard errors come from those sums in a pass after the combine loop (rows with
    # fewer than two samples: NaN). Against the core and the kernels' float64 formula.
    frames, fast = _stack_with_holes(n_frames, n_frames + 1, combine)
    x = np.moveaxis(frames, 0, -1).astype(np.float64)
    n = np.sum(~np.isnan(x), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(x, axis=-1) / n
        var = np.nansum((x - mean[..., None]) ** 2, axis=-1) / (n * (n - 1.0))
        if combine == "sum":
            var *= n * n
    want = np.where(n >= 2, np.sqrt(var), np.nan).astype(np.float32)
    np.testing.assert_allclose(fast.uncertainty, want, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize(("reject", "combine"), [("none", "median"), ("kappa_sigma", "mean")])
@pytest.mark.parametrize("n_frames", [8, 60])
def test_map_from_the_band_sums_over_several_blocks(n_frames, reject, combine):
    # The median's and κ-σ's maps come from sums the band path already has (the
    # gather's or the count pass's, κ-σ's kept range's), divided and square-rooted
    # after the combine loop a block of 512 rows at a time: 40 × 29 pixels are two
    # full blocks and a partial one, with holes and pixels below two samples.
    frames, fast = _stack_with_holes(n_frames, 3 * n_frames, combine, shape=(40, 29), reject=reject)
    n = np.sum(~np.isnan(frames), axis=0)
    assert np.array_equal(np.isnan(fast.uncertainty), (n < 2) | np.isnan(fast.image))
    assert np.all(fast.uncertainty[n >= 2] > 0)


@pytest.mark.parametrize("combine", ["mean", "sum", "median"])
@pytest.mark.parametrize("n_frames", [9, 20])
def test_weighted_map_over_several_blocks(combine, n_frames):
    # The weighted path sums each pixel's error terms (below 16 frames for a block of
    # rows at once, else row by row) and divides a block of 256 rows at a time: 40 × 29
    # pixels are four full blocks and a partial one; with holes and pixels below two
    # samples, against the portable core.
    frames = make_stack(n_frames=n_frames, shape=(40, 29), seed=11).frames.copy()
    frames[:4, 3:5] = np.nan
    frames[:, 7, 2] = np.nan
    frames[1:, 8, 3] = np.nan
    weights = np.linspace(0.5, 2.0, n_frames, dtype=np.float32)
    config = StackConfig.plain(combine=combine)
    fast = stack(frames, config=config, weights=weights)
    with portable_only():
        ref = stack(frames, config=config, weights=weights)
    assert fast.stats["ops"] != ref.stats["ops"]
    np.testing.assert_array_equal(fast.image, ref.image)
    np.testing.assert_allclose(fast.uncertainty, ref.uncertainty, rtol=1e-5, equal_nan=True)
    n = np.sum(~np.isnan(frames), axis=0)
    assert np.array_equal(np.isnan(fast.uncertainty), n < 2)


@pytest.mark.parametrize("combine", ["mean", "sum", "median"])
@pytest.mark.parametrize("reject", ["kappa_sigma", "winsorized_sigma_clip"])
@pytest.mark.parametrize("n_frames", [20, 60])
def test_map_from_the_rejections_kept_sums(combine, reject, n_frames):
    # κ-σ and the PixInsight WSC get their medians and sums from the gather's network
    # (N <= 48) or from the count pass after NumPy's sort; they leave Σd, Σd² of each
    # kept range in them (the WSC from its anchored sums, as the core's kept_sum /
    # kept_sq), and the map needs no pass of its own.
    frames, fast = _stack_with_holes(n_frames, seed=4, combine=combine, reject=reject)
    assert 0 < fast.stats["rejected_pct"] < 20  # some samples clipped: kept ranges, not whole rows
