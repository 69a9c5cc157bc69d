"""Weighted stacks through the numba band path (backends/numba/weighted.py) against the core.

Every rejection × combine × weight kind (quality weights, user frame weights, per-pixel
weights, radial weights, all together): image, weight_sum, coverage and the rejection
maps identical to the bit, the same statistics, the uncertainty map within 1e-6
relative (its float64 sums are added in one pass in sorted order, the core's
``vecdot`` in BLAS's order). Frame counts cover the sorting network (<= 48) and NumPy's sort; the edge rows
of :func:`~tests.backends.numba_band.mixed_frames` (ties, NaN holes, empty pixels,
±inf, values over 18 decades); zero and NaN weights; band-size invariance; a known
answer.
"""

from __future__ import annotations

import array_api_compat.numpy as XP
import numpy as np
import pytest

from tests.backends.numba_band import COMBINES, assert_identical, mixed_frames, stack_both
from zemosaic_xp import StackConfig
from zemosaic_xp.backends.numba import band
from zemosaic_xp.backends.ops_numpy import NumpyOps
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.core.pipeline import FramePlan

pytestmark = pytest.mark.usefixtures("kernels_on")

REJECTS = sorted(band.REJECT_CODES)
KINDS = ("quality", "frame", "pixel", "radial", "all")


def _weights(kind: str, frames: np.ndarray, seed: int) -> tuple[dict, dict]:
    """Config fields and ``stack()`` keywords of one weight kind."""
    rng = np.random.default_rng(seed)
    n = frames.shape[0]
    if kind == "quality":
        return {"weighting": "noise_variance"}, {}
    if kind == "frame":
        return {}, {"weights": rng.uniform(0.2, 3.0, n).astype(np.float32)}
    if kind == "radial":
        return {"radial_weight": True}, {}
    pixel = rng.uniform(0.1, 2.0, frames.shape).astype(np.float32)
    pixel[rng.random(frames.shape) < 0.05] = 0.0  # zero weight: no data
    pixel[rng.random(frames.shape) < 0.02] = np.nan
    if kind == "pixel":
        return {}, {"weights": pixel}
    return {"weighting": "noise_variance", "radial_weight": True}, {"weights": pixel}


def _check(fast, ref, what: str) -> None:
    assert_identical(fast, ref, what)
    got, want = np.asarray(fast.uncertainty), np.asarray(ref.uncertainty)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what} uncertainty NaN")
    # The core sums (x - mean)^2 in float32 chunks (core/uncertainty.py), the kernels in float64:
    # besides 1e-6 relative, a few float32 ulps of the pixel's value where the samples (nearly) agree.
    ulps = 4 * np.finfo(np.float32).eps * np.abs(np.asarray(fast.image, np.float64))
    ulps = np.nan_to_num(ulps.reshape(got.shape) if ulps.size == got.size else ulps)
    bad = np.abs(got - want) > 1e-6 * np.abs(want) + ulps
    assert not np.any(bad & ~np.isnan(want)), f"{what} uncertainty: {np.argwhere(bad)[:5]}"


def _check_all_combines(reject: str, kind: str, frames: np.ndarray, band_calls, *, reference: str,
                        **params) -> None:
    fields, kwargs = _weights(kind, frames, frames.shape[0])
    if "weighting" in fields:
        # The quality weights of these adversarial frames (±1e30 rows) differ between the
        # portable and the NumPy frame statistics (float32 overflow): compare on one plan.
        reference = "core"
    base = {"normalize": "none", "weighting": "none", **fields}
    for combine in COMBINES:
        config = StackConfig(reject=reject, combine=combine, **{**base, **params})
        band_calls.clear()
        fast, ref = stack_both(frames, config, reference=reference, **kwargs)
        _check(fast, ref, f"{reject}/{combine}/{kind}/{params}")
        assert band_calls and all(band_calls), "the band kernel did not run"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reject", REJECTS)
@pytest.mark.parametrize("n", [3, 17, 60])
def test_weighted_band_equals_core(reject, kind, n, band_calls):
    # Values whose float64 sums are exact in any order against the portable core; the
    # wide rows against the core's pipeline with the same numba row kernels.
    _check_all_combines(reject, kind, mixed_frames(n, n, wide=False), band_calls, reference="portable")
    _check_all_combines(reject, kind, mixed_frames(n, n + 1), band_calls, reference="core")


@pytest.mark.parametrize("n", [1, 2, 5, 48, 49])
@pytest.mark.parametrize("reject", ["none", "kappa_sigma", "winsorized_sigma_clip", "linear_fit_clip"])
def test_edge_frame_counts_and_normalisation(reject, n, band_calls):
    frames = mixed_frames(n, 3 * n, wide=False)
    _check_all_combines(reject, "all", frames, band_calls, reference="portable")
    _check_all_combines(reject, "all", frames, band_calls, reference="portable", normalize="multiplicative")


@pytest.mark.parametrize("params", [{"winsor_rewinsor": True}, {"winsor_rewinsor": True, "min_survivors": 6}])
@pytest.mark.parametrize("kind", ["frame", "pixel"])
def test_rewinsorised_samples_keep_their_weights(kind, params, band_calls):
    _check_all_combines("winsorized_quantile", kind, mixed_frames(33, 9, wide=False), band_calls,
                        reference="portable", **params)


def test_ties_keep_the_frame_the_core_keeps(band_calls):
    # Integer data: ties everywhere, across every range bound; the weights tell which
    # frame of a tie was kept (the core's stable ranks: the lowest frame index first).
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 4, (21, 9, 11)).astype(np.float32)
    for reject in ("minmax", "percentile", "gesd", "linear_fit_clip"):
        _check_all_combines(reject, "frame", frames, band_calls, reference="portable")


def test_known_weighted_mean_and_weight_sum():
    # Three frames 1, 2, 4 weighted 1, 1, 2: mean (1 + 2 + 8) / 4, weight sum 4; the
    # standard error Σ w²(x − μ)² / (W² − Σw²) with μ = 2.75.
    frames = np.stack([np.full((2, 3), v, np.float32) for v in (1.0, 2.0, 4.0)])
    config = StackConfig.plain(reject="none")
    res = stack_frames(frames, config=config, weights=np.array([1.0, 1.0, 2.0], np.float32))
    assert res.stats["ops"] == "numpy+numba"
    np.testing.assert_array_equal(res.image, np.float32(11 / 4))
    np.testing.assert_array_equal(res.weight_sum, np.float32(4))
    se = np.sqrt((1.75**2 + 0.75**2 + 4 * 1.25**2) / (16 - 6))
    np.testing.assert_allclose(res.uncertainty, se, rtol=1e-6)


def test_all_invalid_weights_leave_no_data():
    frames = np.ones((4, 3, 5), np.float32)
    weights = np.zeros_like(frames)
    weights[:, 0, 0] = np.nan
    weights[:, 1, 1] = np.inf
    weights[:, 2, 2] = -1.0
    res = stack_frames(frames, config=StackConfig.plain(reject="kappa_sigma"), weights=weights)
    assert res.stats["ops"] == "numpy+numba"
    assert np.isnan(res.image).all() and not res.coverage.any() and not res.weight_sum.any()
    assert np.isnan(res.uncertainty).all()


@pytest.mark.parametrize("reject", ["kappa_sigma", "winsorized_sigma_clip", "linear_fit_clip"])
def test_band_size_and_threads_never_change_weighted_results(reject):
    frames = np.stack([mixed_frames(13, seed) for seed in (4, 5, 6)], axis=-1)
    weights = np.random.default_rng(7).uniform(0.1, 2.0, frames.shape).astype(np.float32)
    serial = NumpyOps(XP)
    serial.band_workers = 1
    config = StackConfig(normalize="multiplicative", reject=reject, radial_weight=True)
    with np.errstate(all="ignore"):
        results = [stack_frames(frames, config=config, weights=weights, band_rows=rows) for rows in (1, 3, 20)]
        results.append(stack_frames(frames, config=config, weights=weights, band_rows=2, ops=serial))
    for other in results[1:]:
        for name in ("image", "weight_sum", "coverage", "rejected_low", "rejected_high", "uncertainty"):
            assert getattr(other, name).tobytes() == getattr(results[0], name).tobytes(), name
    assert all(r.stats["ops"] == "numpy+numba" for r in results)


def test_zemosaic_wsc_with_weights_stays_in_the_core():
    # ZeMosaic's WSC fits with the weights: the band kernel declines it.
    plan = FramePlan(np.ones((3, 1), np.float32), np.zeros((3, 1), np.float32), np.ones((3, 1), np.float32))
    config = StackConfig(reject="winsorized_sigma_clip", wsc_impl="zemosaic")
    assert not band.supports(config, plan)
    assert band.supports(StackConfig(reject="winsorized_sigma_clip"), plan)
    unweighted = FramePlan(plan.gain, plan.offset, None)
    assert band.supports(config, unweighted) and not band.supports(config, unweighted, True)
