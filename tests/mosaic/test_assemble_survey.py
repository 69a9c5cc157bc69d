"""Assembly on realistic tiles: a synthetic survey stacked per tile, then matched and blended.

The tiles come from :func:`helpers.simple_grid_tiles` (frames reprojected onto a tile grid
and stacked by the core), with frames calibrated and then a known gain (±10 %) and
offset (±50 ADU) applied per tile, so that the assembly is judged alone. The tiles use a
median combine: with the default winsorized clip, two cosmic rays landing on one pixel
among 8 frames can survive the stack (the clamped samples inflate σ), which is the
stacker's business, not the assembly's.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import maximum_filter, median_filter

from zemosaic_xp import StackConfig
from zemosaic_xp.diagnostics import seam_steps
from zemosaic_xp.mosaic import assemble_mosaic
from zemosaic_xp.synthetic import make_survey

from ..grid.helpers import fit_linear, footprint_tiles, reproject_coadd_reference, simple_grid_tiles, truth_on


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    survey = make_survey(tmp_path_factory.mktemp("survey"))
    wcs, shape = survey.truth_wcs, survey.truth.shape[:2]
    config = StackConfig(normalize="none", reject="none", combine="median")
    tiles, applied = simple_grid_tiles(survey, wcs, shape, calibrate=True, tile_gain_spread=0.1,
                                       tile_offset_spread=50.0, config=config)
    truth = truth_on(survey, wcs, shape)[..., 0]
    # background: no star within 5 px; core: at least 8 frames
    background = maximum_filter(survey.truth - median_filter(survey.truth, 15), 11) < 20
    core = survey.coverage >= 8
    return {"survey": survey, "tiles": tiles, "applied": applied, "truth": truth, "shape": shape,
            "mask": background & core, "core": core, "frames": footprint_tiles(survey, wcs, shape)}


@pytest.fixture(scope="module")
def mosaic(case):
    return assemble_mosaic(case["tiles"], case["shape"])


def _residual(image: np.ndarray, case) -> tuple[np.ndarray, float]:
    gain, offset = fit_linear(image, case["truth"], case["mask"])
    resid = image - gain * case["truth"] - offset
    return resid, 1.4826 * float(np.nanmedian(np.abs(resid[case["mask"]])))


def _core_only(image: np.ndarray, case) -> np.ndarray:
    return np.where(case["core"][..., None], image, np.nan)


def test_tile_gains_recovered(case, mosaic):
    applied, ref = case["applied"], mosaic.info["reference_tile"]
    assert len(case["tiles"]) >= 9 and mosaic.info["unconnected_tiles"] == []
    for tile_id, (gain, offset) in applied.items():
        expected_gain = applied[ref][0] / gain
        np.testing.assert_allclose(mosaic.gains[tile_id], expected_gain, rtol=1e-3)
        np.testing.assert_allclose(mosaic.offsets[tile_id], applied[ref][1] - expected_gain * offset, atol=1.0)


def test_residual_at_noise_level_and_no_outlier(case, mosaic):
    resid, sigma = _residual(mosaic.image[..., 0], case)
    in_core = resid[case["mask"]]
    assert np.std(in_core) < 1.1 * sigma
    assert np.abs(in_core).max() < 7 * sigma  # no cosmic ray or trail left in the core
    # no large-scale structure either: 32-px block medians stay well inside the noise
    blocks = [np.median(in_core_block) for in_core_block in _blocks(resid, case["mask"], 32)]
    assert np.abs(blocks).max() < 0.5 * sigma


def _blocks(resid, mask, size):
    for y in range(0, resid.shape[0], size):
        for x in range(0, resid.shape[1], size):
            m = mask[y:y + size, x:x + size]
            if m.sum() > size * size // 4:
                yield resid[y:y + size, x:x + size][m]


@pytest.mark.parametrize("feather_px", [None, 0], ids=["feathered", "hard-edges"])
def test_no_seams(case, feather_px):
    result = assemble_mosaic(case["tiles"], case["shape"], feather_px=feather_px)
    _, sigma = _residual(result.image[..., 0], case)
    core = _core_only(result.image, case)
    tile_steps = seam_steps(core, case["tiles"])
    frame_steps = seam_steps(core, case["frames"])
    assert tile_steps.size >= 10 and frame_steps.size >= 20
    assert tile_steps.max() < 0.5 * sigma
    assert frame_steps.max() < 0.5 * sigma
    everywhere = seam_steps(result.image, case["tiles"] + case["frames"])
    assert everywhere.max() < 0.5 * case["survey"].noise_sigma


def test_better_than_reproject_match_background(case, mosaic):
    survey = case["survey"]
    reference = reproject_coadd_reference(survey, survey.truth_wcs, case["shape"])
    boundaries = case["tiles"] + case["frames"]
    ours = seam_steps(_core_only(mosaic.image, case), boundaries)
    theirs = seam_steps(_core_only(reference[..., None], case), boundaries)
    assert ours.max() < theirs.max()
    ours_resid, sigma = _residual(mosaic.image[..., 0], case)
    ref_resid, _ = _residual(reference, case)
    assert np.std(ours_resid[case["mask"]]) < np.std(ref_resid[case["mask"]])
