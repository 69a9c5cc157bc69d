"""``benchmarks/peers_grid.py`` at tiny scale, and its quality metrics on mosaics with a known answer.

Not a timing test: the figures come from full runs (docs/grid.md, "Against SWarp and
reproject"). Here the metrics must give the expected number on constructed mosaics (a
known step gives a known seam, injected outliers are counted, a global gain is not a
seam), the truth must land on another grid where it belongs, and the script must produce
its table on a 12-frame survey of 64² frames, with SWarp's rows when ``SWarp`` is installed
and a clear message when it is not.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "peers_grid.py"
SURVEY = "2x2x3@64"
SIGMA = 10.0


@pytest.fixture(scope="module")
def peers_grid():
    spec = importlib.util.spec_from_file_location("peers_grid_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path for the sibling modules
    yield module
    sys.modules.pop(spec.name, None)


def _sky(shape=(200, 200), stars=((50.0, 60.0, 3000.0), (140.0, 150.0, 800.0))):
    """A background varying along y only (so a step along x is orthogonal to it) plus stars."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sky = 1000.0 + 0.5 * yy
    for y, x, peak in stars:
        sky += peak * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.27**2))
    return sky


def _quality(peers_grid, image, sky, *, coverage=None, has_data=None):
    from peers_grid_quality import mosaic_quality, source_mask

    coverage = np.full(sky.shape, 4, dtype=np.int16) if coverage is None else coverage
    has_data = np.isfinite(image) if has_data is None else has_data
    return mosaic_quality(image, has_data, sky, coverage, source_mask(sky, SIGMA), SIGMA)


def test_source_mask_covers_the_stars_only(peers_grid):
    from peers_grid_quality import source_mask

    sky = _sky()
    mask = source_mask(sky, SIGMA)
    assert mask[50, 60] and mask[140, 150] and mask[50, 66]  # cores and wings (0.05 σ reaches ~5 px)
    assert not mask[50, 75] and not mask[0, 0] and not mask[199, 199]
    assert 0.005 < mask.mean() < 0.03


def test_known_step_gives_its_seam(peers_grid):
    # Right half of the mosaic +2σ: after the global fit the residual is ±1σ, so the RMS of
    # the smoothed residual is 1σ except in the 15 px where the box straddles the step.
    sky = _sky()
    image = sky.copy()
    image[:, 100:] += 2.0 * SIGMA
    q = _quality(peers_grid, image, sky)
    assert q["gain"] == pytest.approx(1.0, abs=5e-3)  # the masked stars tie the step a little to the sky
    assert 0.95 < q["seam_sigma"] < 1.0
    assert q["outlier_pixels"] == 0 and q["coverage"] == 1.0


def test_global_gain_and_offset_are_not_a_seam(peers_grid):
    sky = _sky()
    q = _quality(peers_grid, 1.03 * sky + 20.0, sky)
    assert q["seam_sigma"] < 1e-6
    assert q["gain"] == pytest.approx(1.03) and q["offset"] == pytest.approx(20.0, abs=1e-6)


def test_noise_floor(peers_grid):
    # White noise of σ/√n per pixel: the seam is its 15 × 15 mean, σ/(√n·15) = 0.033 σ at n = 4.
    sky = _sky()
    rng = np.random.default_rng(3)
    image = sky + rng.normal(0.0, SIGMA / 2.0, sky.shape)
    q = _quality(peers_grid, image, sky)
    assert 0.025 < q["seam_sigma"] < 0.045
    assert q["outlier_pixels"] <= 1


def test_injected_outliers_are_counted(peers_grid):
    sky = _sky()
    image = sky.copy()
    coverage = np.full(sky.shape, 4, dtype=np.int16)
    coverage[:, :20] = 2  # too shallow to reject: hot there, but not counted
    spots = [(10, 30), (10, 100), (80, 120), (120, 40), (150, 90), (190, 190), (30, 170)]
    for y, x in spots:
        image[y, x] += 20.0 * SIGMA
    image[50, 60] += 20.0 * SIGMA  # on a star: not background, not counted
    image[100, 5] += 20.0 * SIGMA  # depth 2: not counted
    q = _quality(peers_grid, image, sky, coverage=coverage)
    assert q["outlier_pixels"] == len(spots)
    assert q["seam_sigma"] < 1e-6  # hot pixels are left out of the seam
    # 2 σ above the truth is under the threshold 5 σ/√n = 2.5 σ at n = 4: not an outlier
    image2 = sky.copy()
    image2[10, 30] += 2.0 * SIGMA
    assert _quality(peers_grid, image2, sky)["outlier_pixels"] == 0


def test_coverage_is_the_footprint_fraction_with_data(peers_grid):
    sky = _sky()
    image = sky.copy()
    image[:, :40] = np.nan  # 20 % of the footprint without data
    coverage = np.full(sky.shape, 4, dtype=np.int16)
    coverage[:, 180:] = 0  # outside the union footprint: not counted either way
    q = _quality(peers_grid, image, sky, coverage=coverage)
    assert q["coverage"] == pytest.approx(140 / 180)


def test_truth_lands_on_another_grid(peers_grid):
    from astropy.wcs import WCS
    from peers_grid_quality import Truth, truth_on_grid

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 30.0]
    wcs.wcs.crpix = [100.5, 100.5]
    wcs.wcs.cdelt = [-1 / 1800, 1 / 1800]
    sky = _sky()
    coverage = np.zeros(sky.shape, dtype=np.int16)
    coverage[:, 100:] = 5
    truth = Truth(sky.astype(np.float32), wcs, coverage, SIGMA)
    out = wcs.deepcopy()
    out.wcs.crpix = [100.5 - 7, 100.5 + 3]  # output pixel (x, y) = truth pixel (x + 7, y - 3)
    got, cov, src = truth_on_grid(truth, out, (150, 160))
    assert np.allclose(got[10:140, :150], sky[7:137, 7:157], atol=0.05)
    assert np.isnan(got[0:3]).all()  # above the truth canvas
    assert (cov[10:140, 93:150] == 5).all() and (cov[10:140, :92] == 0).all()
    assert src[53, 53] and not src[53, 20]  # the star at truth (50, 60)


def test_frame_edge_steps_known_step(peers_grid):
    from peers_grid_quality import Footprint, frame_edge_steps

    ones = np.broadcast_to(np.float32(1.0), (200, 120))
    a = Footprint(0, 0, 0, ones, np.ones((200, 120), dtype=bool))    # x in [0, 120)
    b = Footprint(1, 0, 80, ones, np.ones((200, 120), dtype=bool))   # x in [80, 200)
    residual = np.zeros((200, 200))
    residual[:, 80:] = 0.5 * SIGMA  # a step where frame b starts; none where frame a ends
    got = frame_edge_steps(residual, [a, b], SIGMA)
    assert got["edge_segments"] == 2
    assert got["edge_step_max_sigma"] == pytest.approx(0.5)
    assert got["edge_step_median_sigma"] == pytest.approx(0.25)


def test_frame_footprints(peers_grid):
    from astropy.wcs import WCS
    from peers_grid_quality import frame_footprints

    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.crval = [150.0, 30.0]
    out.wcs.crpix = [100.5, 100.5]
    out.wcs.cdelt = [-1 / 1800, 1 / 1800]
    frame = out.deepcopy()
    frame.wcs.crpix = [100.5 - 30, 100.5 - 50]  # frame pixel (x, y) = output pixel (x + 30, y + 50)
    (fp,) = frame_footprints([frame], (64, 48), out, (200, 200))
    rows, cols = np.nonzero(fp.weight)
    assert (rows.min() + fp.y0, rows.max() + fp.y0) == (50, 113)
    assert (cols.min() + fp.x0, cols.max() + fp.x0) == (30, 77)
    assert fp.weight.sum() == 64 * 48 and fp.tile_id == 0


def test_grid_log_parsing(peers_grid):
    from peers_grid_tools import parse_grid_elapsed, parse_grid_timings

    log = ("INFO [GRID] timings: setup 2.9 s, frame normalisation 3.3 s (during the tiles), tiles 2.7 s, "
           "assembly 0.4 s\ntiles: 4 stacked, 0 resumed, 0 failed of 4; 36 frames; 2 worker(s), GPU off, "
           "0.42 % samples rejected; 9.6 s\n")
    assert parse_grid_timings(log) == {"setup_sec": 2.9, "normalise_sec": 3.3, "normalise_during_tiles": True,
                                       "tiles_sec": 2.7, "assembly_sec": 0.4}
    assert parse_grid_elapsed(log) == 9.6
    assert parse_grid_timings("no timings") is None and parse_grid_elapsed("") is None
    # the runner's own format string: a change there must show up here
    runner = (ROOT / "zemosaic_xp" / "grid" / "runner.py").read_text()
    assert '"[GRID] timings: setup %.1f s, frame normalisation %.1f s%s, tiles %.1f s, assembly %.1f s"' in runner


@pytest.fixture(scope="module")
def tiny_run(peers_grid, tmp_path_factory):
    work = tmp_path_factory.mktemp("peers_grid")
    code = peers_grid.main(["--surveys", SURVEY, "--workers", "1", "--repeat", "1", "--workdir", str(work),
                            "--json", str(work / "out.json"), "-o", str(work / "table.md")])
    data = json.loads((work / "out.json").read_text())
    rows = {row["label"]: row for row in data["surveys"][0]["rows"]}
    return code, data, rows, (work / "table.md").read_text(), work


def _check_mosaic(row: dict, *, seam_max: float, coverage_min: float) -> None:
    assert "error" not in row, row
    assert row["best_sec"] > 0 and row["largest_rss_mib"] > 1 and row["tree_rss_mib"] >= row["largest_rss_mib"]
    assert 0 < row["best_cpu_sec"]
    assert row["seam_sigma"] < seam_max, row
    assert row["coverage"] > coverage_min, row
    assert row["background_pixels"] > 0.8 * row["footprint_pixels"] * row["coverage"]


def test_tiny_run_table_and_ours(tiny_run):
    code, data, rows, table, _ = tiny_run
    assert code == 0
    assert f"### {SURVEY}: 2×2 pointings × 3 exposures = 12 frames of 64²" in table
    assert "| tool | workers | best s | speed vs SWarp |" in table and "frame-edge step median / max (σ)" in table
    assert data["machine"]["tools"]["ours"].startswith("zemosaic-xp ")
    survey = data["surveys"][0]
    assert survey["n_frames"] == 12 and survey["noise_sigma"] > 0
    ours = rows["ours-w1"]
    # Normalised frames, rejection and a feathered assembly: a seam at the noise floor.
    _check_mosaic(ours, seam_max=0.15, coverage_min=0.98)
    assert ours["edge_segments"] > 10 and ours["edge_step_max_sigma"] < 0.5
    assert ours["gain"] == pytest.approx(1.0, abs=0.05)  # frame 0 (gain 1, offset 0) is the reference
    assert set(ours["phases"]) == {"setup_sec", "normalise_sec", "normalise_during_tiles", "tiles_sec",
                                   "assembly_sec"}
    assert 0 < ours["in_process_sec"] < ours["best_sec"]
    assert "- ours, 1 worker(s): setup " in table


def test_tiny_run_reproject(tiny_run):
    rows = tiny_run[2]
    if tiny_run[1]["machine"]["tools"].get("reproject") is None:
        pytest.skip("reproject is not installed")
    _check_mosaic(rows["reproject"], seam_max=0.3, coverage_min=0.98)


def test_tiny_run_swarp(tiny_run):
    _, data, rows, table, _ = tiny_run
    if data["machine"]["tools"].get("swarp") is None:
        pytest.skip("SWarp is not installed here (apt-get install swarp)")
    swarp = rows["swarp-t1"]
    _check_mosaic(swarp, seam_max=1.0, coverage_min=0.9)
    assert swarp["speed_vs_swarp"] == 1.0
    assert rows["ours-w1"]["speed_vs_swarp"] == pytest.approx(swarp["best_sec"] / rows["ours-w1"]["best_sec"])
    assert "| SWarp `CLIPPED` `BILINEAR` | 1 |" in table
    config = (tiny_run[4] / "runs" / SURVEY / "swarp-t1" / "run.swarp").read_text()
    for line in ("COMBINE_TYPE", "CLIPPED"), ("RESAMPLING_TYPE", "BILINEAR"), ("SUBTRACT_BACK", "N"), (
            "NTHREADS", "1"):
        assert any(row.split() == list(line) for row in config.splitlines()), line


def test_bench_peers_grid_without_swarp(tiny_run, monkeypatch, capsys):
    # `zemosaic-xp bench --peers-grid` with a PATH that has no SWarp: a clear message, the others run.
    from zemosaic_xp.cli import main

    work = tiny_run[4]
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert shutil.which("SWarp") is None and shutil.which("swarp") is None
    out = work / "noswarp.json"
    code = main(["--quiet", "bench", "--json", str(out), "--peers-grid", "--surveys", SURVEY, "--workers", "1",
                 "--tools", "swarp,reproject", "--repeat", "1", "--workdir", str(work)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "SWarp not found: install it with `apt-get install swarp`" in captured.err
    data = json.loads(out.read_text())
    assert data["machine"]["tools"]["swarp"] is None
    assert [r["label"] for r in data["surveys"][0]["rows"]] == ["reproject"]
    assert data["surveys"][0]["rows"][0]["speed_vs_swarp"] is None and data["surveys"][0]["data_reused"]


def test_failed_tool_is_reported(peers_grid, tiny_run, tmp_path, capsys):
    fake = tmp_path / "SWarp"
    fake.write_text("#!/bin/sh\necho 'boom: no such frame'\nexit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "fail.json"
    code = peers_grid.main(["--surveys", SURVEY, "--workers", "1", "--tools", "swarp", "--repeat", "1",
                            "--workdir", str(tiny_run[4]), "--swarp", str(fake), "--json", str(out)])
    assert code == 2
    assert "Failed runs:" in capsys.readouterr().out
    row = json.loads(out.read_text())["surveys"][0]["rows"][0]
    assert row["error"].startswith("exit 3: boom: no such frame (log: ")


def test_bad_options_exit_2(peers_grid, tmp_path, capsys):
    assert peers_grid.main(["--tools", "montage", "--workdir", str(tmp_path)]) == 2
    assert "`--tools` must name some of swarp, ours, reproject" in capsys.readouterr().err
    assert peers_grid.main(["--surveys", "huge", "--workdir", str(tmp_path)]) == 2
    assert peers_grid.main(["--surveys", "3x3x4@8", "--workdir", str(tmp_path)]) == 2
    assert peers_grid.main(["--workers", "0", "--workdir", str(tmp_path)]) == 2
    assert peers_grid.main(["--repeat", "0", "--workdir", str(tmp_path)]) == 2


def test_survey_spec(peers_grid):
    from peers_grid_data import parse_survey

    assert parse_survey("small") == ((3, 3), 4, 384)
    assert parse_survey("large") == ((4, 5), 5, 1024)
    assert parse_survey("2×2×3@64") == ((2, 2), 3, 64)
    for bad in ("1x1x1@64", "2x2@64", "axbxc@d"):
        with pytest.raises(ValueError, match="is neither small nor large nor RxCxE@S"):
            parse_survey(bad)


def test_tree_cpu_counts_a_descendant_nobody_waited_for(peers_grid, tmp_path):
    # A child starts a grandchild that burns ~0.4 s of CPU and exits without waiting for
    # it (as the grid's fork server, stopped in the background, leaves its workers): wait4
    # does not see the grandchild's CPU, the tree's samples do.
    pytest.importorskip("psutil")
    from proc_tree import run_tree

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4:\n    pass\n"
    child = ("import subprocess, sys, time\n"
             f"subprocess.Popen([sys.executable, '-c', {burn!r}])\n"
             "time.sleep(1.2)\n")
    run = run_tree([sys.executable, "-c", child], tmp_path / "log.txt")
    assert run.returncode == 0
    assert run.cpu_sec >= 0.3
