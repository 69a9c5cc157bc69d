"""Grid run safety (issue 15): the run lock (case 1), damaged tiles on resume (3), the canvas
guard (4), a full disk or file-size limit (13) and what killed runs leave behind (16)."""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp import run_grid_mode
from zemosaic_xp.cli import main
from zemosaic_xp.grid import canvas
from zemosaic_xp.grid.canvas import CanvasTooLargeError, check_canvas
from zemosaic_xp.grid.config import GridConfig
from zemosaic_xp.grid.geometry import build_global_grid
from zemosaic_xp.grid.outdir import _OUTPUT_NAMES
from zemosaic_xp.grid.plan import load_stack_plan
from zemosaic_xp.io.runlock import LOCK_NAME, FolderLockedError
from zemosaic_xp.mosaic.assemble import MOSAIC_OUTPUT_NAMES

from .survey_cases import SMALL_CONFIG, mosaic_data, small_survey

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and resource limits")

_ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
_CLI = "import sys; from zemosaic_xp.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "zemosaic_config.json"
    path.write_text(json.dumps(SMALL_CONFIG), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(survey, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    result = run_grid_mode(survey.folder, out, config=SMALL_CONFIG)
    return result, mosaic_data(result.mosaic_path)


@pytest.fixture(scope="module")
def spread_survey(tmp_path_factory):
    """Case 4: nine 64² frames on a 3 × 3 pattern 4° apart (an 8° span, a ~210-megapixel canvas)."""
    survey = small_survey(tmp_path_factory.mktemp("spread"), n_frames=9, grid=(3, 3))
    for i, path in enumerate(survey.frame_paths):
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["CRVAL1"] = 150.0 + 4.0 * (i % 3) / math.cos(math.radians(30.0))
            hdul[0].header["CRVAL2"] = 30.0 + 4.0 * (i // 3)
    return survey


def _wait_for(path, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


# --- case 1: two runs into one folder -------------------------------------------------------------

_PAUSED_RUN = textwrap.dedent("""
    import json, pathlib, sys, time
    from zemosaic_xp import run_grid_mode
    survey, out, ready, go = sys.argv[1:5]

    def pause(key, *args, **kw):  # hold the run (and its lock) after the first tile
        if str(key).startswith("MASTER_TILE_COUNT_UPDATE:1/"):
            pathlib.Path(ready).touch()
            while not pathlib.Path(go).exists():
                time.sleep(0.05)

    result = run_grid_mode(survey, out, pause, config=json.loads(sys.argv[5]))
    print(result.tiles_processed, result.tiles_total, flush=True)
""")


def test_a_second_run_into_a_locked_folder_stops_at_once(survey, reference, tmp_path, capsys):
    out, ready, go = tmp_path / "out", tmp_path / "ready", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", _PAUSED_RUN, str(survey.folder), str(out), str(ready), str(go),
                              json.dumps(SMALL_CONFIG)], stdout=subprocess.PIPE, text=True, env=_ENV)
    try:
        _wait_for(ready)
        manifest = (out / "tiles" / "manifest.json").read_text(encoding="utf-8")
        t0 = time.perf_counter()
        with pytest.raises(FolderLockedError) as info:
            run_grid_mode(survey.folder, out, config={**SMALL_CONFIG, "stacking_kappa_high": 2.5})
        assert time.perf_counter() - t0 < 5.0
        holder = f"(grid run, pid {first.pid} on host '{os.uname().nodename}', started 20"
        assert str(info.value).startswith(f"output folder '{out}' is in use by another run {holder}")
        # The CLI: one line, exit code 2, before anything is written.
        assert main(["--quiet", "grid", str(survey.folder), str(out), "--workers", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"zemosaic-xp: error: output folder '{out}' is in use")
        assert f"pid {first.pid}" in err[0]
        assert (out / "tiles" / "manifest.json").read_text(encoding="utf-8") == manifest
    finally:
        go.touch()
        stdout, _ = first.communicate(timeout=300)
    total = reference[0].tiles_total
    assert first.returncode == 0 and stdout.split() == [str(total), str(total)]
    np.testing.assert_array_equal(mosaic_data(out / "mosaic_grid.fits"), reference[1])
    assert not (out / LOCK_NAME).exists()


# --- case 3: resume checks every finished tile ----------------------------------------------------

def test_resume_recomputes_damaged_tiles_and_names_them(survey, reference, tmp_path, caplog):
    first = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG)
    tiles = tmp_path / "tiles"
    a, b, c, d = (tiles / f"tile_{i:04d}.fits" for i in (1, 2, 3, 4))
    size_a = a.stat().st_size
    assert b.stat().st_size == d.stat().st_size
    a.write_bytes(a.read_bytes()[:5000])             # truncated
    b.write_bytes(d.read_bytes())                    # overwritten by another valid tile of its size
    c.unlink()                                       # gone
    with caplog.at_level(logging.WARNING):
        again = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG)
    # before: every rerun failed in the assembly ("cannot reshape array of size 3560 into
    # shape (144,106)", "No SIMPLE card found"), naming no tile
    assert (f"[GRID] resume: tile 1 does not match the manifest ('{a}' has 5000 bytes, {size_a} were "
            f"written); recomputing it") in caplog.text
    assert f"tile 2 does not match the manifest ('{b}' is not the file that was written" in caplog.text
    assert f"tile 3 does not match the manifest ('{c}' is missing); recomputing it" in caplog.text
    assert again.tiles_processed == 3 and again.tiles_skipped == first.tiles_total - 3
    np.testing.assert_array_equal(mosaic_data(again.mosaic_path), reference[1])


def test_a_tile_damaged_before_the_assembly_is_named(survey, reference, tmp_path):
    tile = tmp_path / "tiles" / "tile_0001.fits"

    def damage(key, *args, **kw):  # once every tile is recorded, truncate one
        total = reference[0].tiles_total
        if key == f"MASTER_TILE_COUNT_UPDATE:{total}/{total}":
            tile.write_bytes(tile.read_bytes()[:5000])

    with pytest.raises(ValueError, match=rf"^tile 1: '{tile}' has 5000 bytes, \d+ were written; the file changed "
                                         r"after the tile was stacked: run again to recompute it \(resume checks "
                                         r"every tile\)$"):
        run_grid_mode(survey.folder, tmp_path, damage, config=SMALL_CONFIG)
    again = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG)
    assert again.tiles_processed == 1
    np.testing.assert_array_equal(mosaic_data(again.mosaic_path), reference[1])


# --- case 4: the canvas guard ---------------------------------------------------------------------

_CANVAS_MESSAGE = (r"^the frames span 8\.\d° × 8\.\d° and the mosaic would be 14\d{3} × 14\d{3} px × 1 channel\(s\), "
                   r"needing about \d+\.\d GiB to assemble; this run may use LIMIT \(HOW\)\. The 9 frames cover "
                   r"at most 0\.0\d% of that canvas: split stack_plan\.csv into groups of neighbouring frames and "
                   r"make one mosaic of each, or, if the machine has the memory, raise the limit with "
                   r"max_canvas_gb \(ZeMosaic key grid_max_canvas_gb; 0 = no limit\)$")


def test_a_canvas_too_large_is_refused_before_any_tile(spread_survey, tmp_path):
    # before: 30 tiles stacked, then "Unable to allocate 1.36 GiB" in the assembly
    message = _CANVAS_MESSAGE.replace("LIMIT", r"1\.0 GiB").replace("HOW", "max_canvas_gb")
    with pytest.raises(CanvasTooLargeError, match=message):
        run_grid_mode(spread_survey.folder, tmp_path, config={"grid_max_canvas_gb": 1})
    assert not list(tmp_path.rglob("tile_*.fits")) and not (tmp_path / LOCK_NAME).exists()


def test_the_default_limit_counts_the_process_limits(spread_survey, tmp_path):
    # RLIMIT_AS 1.5 GiB above what the process maps: far less than this machine's RAM.
    child = textwrap.dedent("""
        import resource, sys
        import zemosaic_xp.grid.runner, astropy.wcs, reproject.mosaicking, shapely  # mapped before the limit
        from zemosaic_xp.grid.canvas import _proc_status_kib
        from zemosaic_xp import run_grid_mode
        resource.setrlimit(resource.RLIMIT_AS, (_proc_status_kib("VmSize") + 3 * 2**29, resource.RLIM_INFINITY))
        try:
            run_grid_mode(sys.argv[1], sys.argv[2])
        except ValueError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", child, str(spread_survey.folder), str(tmp_path)], env=_ENV,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert "the mosaic would be 14" in out and "RLIMIT_AS leaves 1." in out and "90% of the least of:" in out


def test_check_canvas_limits(spread_survey, monkeypatch):
    grid = build_global_grid(load_stack_plan(spread_survey.folder).entries, grid_size_factor=1.5,
                             overlap_fraction=0.1)
    need = check_canvas(grid, GridConfig(max_canvas_gb=0))  # 0: no limit
    assert 2 * 2**30 < need < 20 * 2**30  # outputs of a 14 000² px canvas, stripes of accumulators
    monkeypatch.setattr(canvas, "memory_limit", lambda: (None, "no memory figure could be read"))
    assert check_canvas(grid, GridConfig()) == need
    monkeypatch.setattr(canvas, "memory_limit", lambda: (2**30, "90% of the least of: RLIMIT_AS leaves 1.1 GiB"))
    with pytest.raises(CanvasTooLargeError, match=r"^\[EQ\] the frames span .*this run may use 1\.0 GiB \(90% of "
                                                  r"the least of: RLIMIT_AS leaves 1\.1 GiB\)"):
        check_canvas(grid, GridConfig(), label="EQ")
    assert check_canvas(grid, GridConfig(max_canvas_gb=need / 2**30 + 0.1)) == need


def test_memory_limit_takes_the_least_figure(monkeypatch):
    monkeypatch.setattr(canvas, "_available_ram", lambda: 8 * 2**30)
    monkeypatch.setattr(canvas, "_rlimit_room", lambda name, key: 2**31 if name == "DATA" else None)
    monkeypatch.setattr(canvas, "_cgroup_room", lambda: 4 * 2**30)
    limit, how = canvas.memory_limit()
    assert limit == int(0.9 * 2**31)
    assert how == ("90% of the least of: available RAM 8.0 GiB, RLIMIT_DATA leaves 2.0 GiB, "
                   "the cgroup memory limit leaves 4.0 GiB")
    for name in ("_available_ram", "_cgroup_room"):
        monkeypatch.setattr(canvas, name, lambda: None)
    monkeypatch.setattr(canvas, "_rlimit_room", lambda name, key: None)
    assert canvas.memory_limit() == (None, "no memory figure could be read")


def test_max_canvas_gb_setting():
    assert GridConfig.from_dict({"grid_max_canvas_gb": "2.5"}).max_canvas_gb == 2.5
    assert GridConfig().max_canvas_gb is None and GridConfig(max_canvas_gb=0).max_canvas_gb == 0.0
    with pytest.raises(ValueError, match=r"`max_canvas_gb` must be >= 0 \(0 = no limit\) or None \(auto\)"):
        GridConfig(max_canvas_gb=-1)
    assert "max_canvas_gb" not in GridConfig().tile_hash_dict()  # tiles do not depend on it


# --- case 13: disk full / file-size limit ---------------------------------------------------------

def _with_file_size_limit(limit_bytes):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))
    return preexec


@pytest.mark.parametrize(("limit", "code", "failed_file"),
                         [(100_000, 2, "mosaic_grid.fits"),
                          (30_000, 1, "tiles/tile_0003.fits")],  # every tile fails; the largest went first
                         ids=["mosaic", "tiles"])
def test_a_file_size_limit_names_the_file(survey, config_file, tmp_path, limit, code, failed_file):
    # Tiles of this survey are 43-72 kB, the mosaic 135 kB.
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", _CLI, "--quiet", "grid", str(survey.folder), str(out), "--config",
                           str(config_file), "--workers", "1"], capture_output=True, text=True, env=_ENV,
                          preexec_fn=_with_file_size_limit(limit))
    # before: "25600 requested and 24160 written", no file named
    assert proc.returncode == code, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert f"cannot write '{out / failed_file}': the file would exceed this process's file-size limit of " in line
    assert "(`ulimit -f`) [EFBIG]" in line and "nothing was written under that name" in line
    assert not list(out.rglob("*.tmp")) and not (out / "mosaic_grid.fits").exists()
    assert not (out / LOCK_NAME).exists()


# --- case 16: what a killed run leaves ------------------------------------------------------------

_KILLED_WHILE_WRITING = textwrap.dedent("""
    import os, signal, sys
    from zemosaic_xp.io.atomic import atomic_path
    from zemosaic_xp.mosaic import assemble

    def killed_while_writing(path, image, **kw):  # SIGKILL halfway through the mosaic
        with atomic_path(path) as tmp:
            tmp.write_bytes(bytes(100_000))
            os.kill(os.getpid(), signal.SIGKILL)

    assemble.write_fits = killed_while_writing
    from zemosaic_xp import run_grid_mode
    run_grid_mode(sys.argv[1], sys.argv[2], config={"grid_size_factor": 1.0, "batch_overlap_pct": 20})
""")


def test_the_next_run_removes_what_a_killed_run_left(survey, reference, tmp_path, caplog):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WHILE_WRITING, str(survey.folder), str(out)], env=_ENV)
    assert proc.wait(timeout=300) == -signal.SIGKILL
    (leftover,) = out.glob(".mosaic_grid.fits.*.tmp")
    assert leftover.stat().st_size == 100_000 and (out / LOCK_NAME).exists()
    # What a kill during the tiles leaves, too: a tile's temporary file, a running-marker, maps.
    tiles = out / "tiles"
    for name in (".tile_0002.fits.k3j4.tmp", ".running/tile_0002", ".maps_0123_all.npz.77.tmp"):
        (tiles / name).parent.mkdir(exist_ok=True)
        (tiles / name).write_bytes(b"x")
    with caplog.at_level(logging.INFO):
        again = run_grid_mode(survey.folder, out, config=SMALL_CONFIG)
    assert f"[GRID] output folder '{out}' was locked by a run that is gone (grid run, pid {proc.pid} " in caplog.text
    assert f"[GRID] removed 4 temporary file(s) left in '{out}' by an interrupted run" in caplog.text
    assert again.tiles_skipped == again.tiles_total
    np.testing.assert_array_equal(mosaic_data(again.mosaic_path), reference[1])
    assert not list(out.rglob("*.tmp")) and not (tiles / ".running").exists() and not (out / LOCK_NAME).exists()


def test_a_run_leaves_no_running_folder_nor_lock(reference):
    out = reference[0].output_folder
    assert not (out / "tiles" / ".running").exists() and not (out / LOCK_NAME).exists()
    assert sorted(p.name for p in out.iterdir()) == ["mosaic_grid.fits", "mosaic_grid_coverage.fits",
                                                     "mosaic_grid_preview.png", "tiles"]


def test_the_output_names_the_clean_up_knows_are_the_assembly_s():
    assert _OUTPUT_NAMES == MOSAIC_OUTPUT_NAMES
