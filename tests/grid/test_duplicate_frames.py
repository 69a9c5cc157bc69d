"""A frame listed twice in ``stack_plan.csv`` is stacked once (issue 15, case 10).

Before: duplicate rows (also ``./x.fits`` beside ``x.fits``) were each stacked, so the
frame counted twice in coverage, weights and rejection (coverage 11 instead of 8). Now
the repeats are dropped with one ``[GRID]`` warning and the mosaic equals the run of the
de-duplicated plan.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np

from zemosaic_xp import run_grid_mode

from .survey_cases import SMALL_CONFIG, mosaic_data, small_survey


def test_grid_run_with_repeated_rows_equals_the_deduplicated_run(tmp_path, caplog):
    survey = small_survey(tmp_path / "clean", n_frames=6)
    doubled = tmp_path / "doubled"
    shutil.copytree(survey.folder, doubled)
    plan = (doubled / "stack_plan.csv").read_text(encoding="utf-8").splitlines()
    header, rows = plan[0], plan[1:]
    repeated = [rows[0].replace("survey_000.fits", "./survey_000.fits"), rows[1], rows[1]]
    (doubled / "stack_plan.csv").write_text("\n".join([header, *rows, *repeated]) + "\n", encoding="utf-8")

    clean = run_grid_mode(survey.folder, tmp_path / "out_clean", config=SMALL_CONFIG, grid_workers=1)
    with caplog.at_level(logging.WARNING, logger="zemosaic_xp.grid"):
        dup = run_grid_mode(doubled, tmp_path / "out_doubled", config=SMALL_CONFIG, grid_workers=1)

    warnings = [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()]
    assert warnings == ["[GRID] stack_plan.csv lists 2 frame(s) more than once; each is stacked once: "
                        "'survey_000.fits' (rows 1, 7: 'survey_000.fits', './survey_000.fits'); "
                        "'survey_001.fits' (rows 2, 8, 9)"]
    assert dup.n_frames == clean.n_frames == 6
    assert dup.rejected_pct == clean.rejected_pct
    np.testing.assert_array_equal(mosaic_data(dup.mosaic_path), mosaic_data(clean.mosaic_path))
    np.testing.assert_array_equal(mosaic_data(dup.coverage_path), mosaic_data(clean.coverage_path))
