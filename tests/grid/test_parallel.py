"""Worker processes: identical output for 1 and 2 workers, a failing tile and a SIGKILLed
worker survived and reported, and an external executor."""

from __future__ import annotations

import logging
import multiprocessing
import signal
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from zemosaic_xp import run_grid_mode
from zemosaic_xp.grid.processes import START_ENV
from zemosaic_xp.grid.worker import TEST_FAIL_ENV, TEST_KILL_ENV

from .survey_cases import SMALL_CONFIG, Recorder, mosaic_data, small_survey

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"), seed=5)


@pytest.fixture(scope="module")
def one_worker(survey, tmp_path_factory):
    result = run_grid_mode(survey.folder, tmp_path_factory.mktemp("w1"), config=SMALL_CONFIG, grid_workers=1)
    return result, mosaic_data(result.mosaic_path)


@pytest.mark.parametrize("method", [m for m in ("forkserver", "spawn") if m in multiprocessing.get_all_start_methods()])
def test_two_workers_give_the_same_mosaic_as_one(survey, one_worker, tmp_path, caplog, monkeypatch, method):
    monkeypatch.setenv(START_ENV, method)  # forked from the fork server, or spawned
    with caplog.at_level(logging.INFO, logger="zemosaic_xp"):
        result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG, grid_workers=2)
    assert result.workers == 2 and result.tiles_processed == result.tiles_total
    assert "[GRID] using 2 workers (requested)" in caplog.text
    pids = {r.getMessage().split("pid=")[1].split()[0] for r in caplog.records if "processed by worker pid=" in
            r.getMessage()}
    assert str(__import__("os").getpid()) not in pids  # tiles ran in worker processes
    assert result.mosaic_path.read_bytes() == one_worker[0].mosaic_path.read_bytes()
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), one_worker[1])
    if method == "forkserver":  # the run stopped the server it started: no process of it is left
        from multiprocessing import forkserver

        from zemosaic_xp.grid import processes

        with processes._SERVER_LOCK:  # the stop runs in a daemon thread, which holds it until the server is reaped
            assert getattr(forkserver._forkserver, "_forkserver_pid", None) is None


def test_failing_tile_and_killed_worker_are_survived_and_reported(survey, one_worker, tmp_path, monkeypatch,
                                                                  caplog):
    tiles = one_worker[0].tiles_total
    monkeypatch.setenv(TEST_KILL_ENV, "2")   # its worker SIGKILLs itself on the first attempt
    monkeypatch.setenv(TEST_FAIL_ENV, str(tiles))  # raises on every attempt
    rec = Recorder()
    with caplog.at_level(logging.INFO, logger="zemosaic_xp"):
        result = run_grid_mode(survey.folder, tmp_path, rec, config=SMALL_CONFIG, grid_workers=2)
    assert result.worker_crashes == 1
    assert list(result.failed_tiles) == [tiles] and "injected failure" in result.failed_tiles[tiles]
    assert 2 in result.retried_tiles and tiles in result.retried_tiles
    assert result.tiles_processed == tiles - 1 and result.mosaic_path.is_file()
    assert f"[GRID] Tile {tiles} failed with error: RuntimeError: injected failure" in caplog.text
    # the message names the worker the hook killed, and its signal (issue 15: no guessing)
    killed_pid = (tmp_path / "tiles" / ".test_killed_0002").read_text(encoding="utf-8")
    assert (f"[GRID] a worker process (pid {killed_pid}) was killed by SIGKILL (out of memory?); "
            "pool rebuilt") in caplog.text
    assert any(m.startswith(f"[GRID] Tile {tiles} failed with error") for m in rec.messages())
    assert any("finished with 1 failed tile(s)" in m for m in rec.messages())
    # tile 2 was redone after the crash: identical to the undisturbed run
    from zemosaic_xp.grid.tile import read_tile

    again, _ = read_tile(tmp_path / "tiles" / "tile_0002.fits")
    ref, _ = read_tile(one_worker[0].output_folder / "tiles" / "tile_0002.fits")
    np.testing.assert_array_equal(again.image, ref.image)


def test_failing_tile_in_process(survey, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(TEST_FAIL_ENV, "1")
    result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG)
    assert list(result.failed_tiles) == [1] and result.retried_tiles == [1]
    assert caplog.text.count("[GRID] Tile 1 failed with error") == 2  # first try and the retry
    assert result.mosaic_path.is_file()
    # the failed tile is not in the manifest: a resume (without the fault) makes it
    monkeypatch.delenv(TEST_FAIL_ENV)
    again = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG)
    assert again.tiles_processed == 1 and again.failed_tiles == {}


def test_every_tile_failing_is_an_error(survey, tmp_path, monkeypatch):
    monkeypatch.setenv(TEST_FAIL_ENV, ",".join(str(i) for i in range(1, 40)))
    with pytest.raises(RuntimeError, match="every tile failed"):
        run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG)


def test_external_executor(survey, one_worker, tmp_path):
    with ThreadPoolExecutor(max_workers=2) as pool:
        result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG, executor=pool)
    assert result.workers == 2 and result.tiles_processed == result.tiles_total
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), one_worker[1])
