"""Parallel grid runs: tiles submitted before the normalisation is solved, worker threads,
the per-process frame cache and the threaded assembly all leave every bit unchanged."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from zemosaic_xp import GridConfig, StackConfig, run_grid_mode
from zemosaic_xp.grid.framemaps import await_frame_maps, maps_path, publish_failure, publish_frame_maps
from zemosaic_xp.grid.reproject_tile import frame_planes
from zemosaic_xp.grid.tile import FrameRef, read_tile
from zemosaic_xp.grid.worker import warm_up
from zemosaic_xp.io.fits import read_frame
from zemosaic_xp.io.framecache import FrameCache
from zemosaic_xp.mosaic import assemble_mosaic, write_mosaic_outputs

from .frames_util import write_frames
from .survey_cases import SMALL_CONFIG, mosaic_data, small_survey


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"), seed=11)


@pytest.fixture(scope="module")
def one_worker(survey, tmp_path_factory):
    result = run_grid_mode(survey.folder, tmp_path_factory.mktemp("w1"), config=SMALL_CONFIG, grid_workers=1)
    return result, mosaic_data(result.mosaic_path)


def test_worker_threads_give_the_same_mosaic_as_one_worker(survey, one_worker, tmp_path, caplog):
    config = {**SMALL_CONFIG, "grid_worker_kind": "thread"}
    with caplog.at_level(logging.INFO, logger="zemosaic_xp"):
        result = run_grid_mode(survey.folder, tmp_path, config=config, grid_workers=2)
    assert result.workers == 2 and result.tiles_processed == result.tiles_total
    assert "[GRID] using 2 workers (requested, threads)" in caplog.text
    assert "while the tiles reprojected" in caplog.text and "(during the tiles)" in caplog.text
    assert result.mosaic_path.read_bytes() == one_worker[0].mosaic_path.read_bytes()
    assert result.coverage_path.read_bytes() == one_worker[0].coverage_path.read_bytes()
    assert not list((tmp_path / "tiles").glob(".maps_*"))  # published maps removed


def test_resume_with_workers_normalises_first_and_skips(survey, one_worker, tmp_path, caplog):
    config = {**SMALL_CONFIG, "grid_worker_kind": "thread"}
    first = run_grid_mode(survey.folder, tmp_path, config=config, grid_workers=2)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zemosaic_xp"):
        again = run_grid_mode(survey.folder, tmp_path, config=config, grid_workers=2)
    assert again.tiles_skipped == first.tiles_total and again.tiles_processed == 0
    assert "while the tiles reprojected" not in caplog.text  # serial order: the hashes need the maps
    np.testing.assert_array_equal(mosaic_data(again.mosaic_path), one_worker[1])


def test_cancel_with_worker_threads_then_resume(survey, one_worker, tmp_path):
    import threading

    cancel = threading.Event()

    def on_call(key, *_args, **_kw):
        if isinstance(key, str) and key.startswith("MASTER_TILE_COUNT_UPDATE:"):
            cancel.set()

    config = {**SMALL_CONFIG, "grid_worker_kind": "thread"}
    result = run_grid_mode(survey.folder, tmp_path, on_call, config=config, grid_workers=2, cancel=cancel)
    assert result.cancelled and 1 <= result.tiles_processed < result.tiles_total
    again = run_grid_mode(survey.folder, tmp_path, config=config, grid_workers=2)
    assert again.tiles_skipped == result.tiles_processed
    assert again.tiles_processed == again.tiles_total - result.tiles_processed
    np.testing.assert_array_equal(mosaic_data(again.mosaic_path), one_worker[1])
    other = run_grid_mode(survey.folder, tmp_path, config={**config, "stacking_kappa_high": 2.5}, grid_workers=2)
    assert other.tiles_processed == other.tiles_total  # other settings: nothing to skip, pipelined again


def test_normalisation_failure_during_the_tiles_is_raised(survey, tmp_path, monkeypatch):
    from zemosaic_xp.grid import normalise

    def broken(*_a, **_k):
        raise RuntimeError("normalisation exploded")

    monkeypatch.setattr(normalise, "normalise_frames", broken)
    with pytest.raises(RuntimeError, match="normalisation exploded"):
        run_grid_mode(survey.folder, tmp_path, config={**SMALL_CONFIG, "grid_worker_kind": "thread"},
                      grid_workers=2)
    assert not list((tmp_path / "tiles").glob(".maps_*"))


def test_published_maps_reach_the_waiting_tile(tmp_path):
    path = maps_path(tmp_path, "run", None)
    gains = np.array([[1.0, 2.0], [0.1 + 0.2, 3.0]])
    offsets = np.array([[0.0, -1.5], [1e-300, 7.25]])
    publish_frame_maps(path, gains, offsets)
    frames = [FrameRef(1, "b.fits", 2.0), FrameRef(0, "a.fits")]
    got = await_frame_maps(path, frames, timeout=1.0)
    assert got[0].gain == (0.1 + 0.2, 3.0) and got[0].offset == (1e-300, 7.25) and got[0].exposure == 2.0
    assert got[1].gain == (1.0, 2.0) and got[1].offset == (0.0, -1.5) and got[1].path == "a.fits"


def test_waiting_tile_fails_on_a_published_failure_or_a_timeout(tmp_path):
    path = maps_path(tmp_path, "run", "EQ")
    with pytest.raises(TimeoutError):
        await_frame_maps(path, [FrameRef(0, "a.fits")], timeout=0.05)
    publish_failure(path, ValueError("no overlap"))
    with pytest.raises(RuntimeError, match="ValueError: no overlap"):
        await_frame_maps(path, [FrameRef(0, "a.fits")], timeout=5.0)


def test_frame_cache_returns_what_a_fresh_read_gives(tmp_path):
    paths = write_frames(tmp_path, n=3, shape=(40, 50), channels=3, alpha=True)
    frame = read_frame(paths[0])
    one = frame_planes(frame.data, frame.alpha).nbytes
    cache = FrameCache(budget_bytes=2 * one)
    entry, planes = cache.planes(str(paths[0]))
    np.testing.assert_array_equal(planes, frame_planes(frame.data, frame.alpha))
    assert planes.shape == (4, 40, 50) and not planes.flags.writeable and entry.source.has_alpha
    assert cache.planes(str(paths[0]))[1] is planes  # a hit
    assert cache.planes(str(paths[1]), keep=False)[1] is not cache.planes(str(paths[1]), keep=False)[1]
    cache.planes(str(paths[1]))
    cache.planes(str(paths[2]))  # over the budget: the least recently used planes go
    assert cache.planes(str(paths[0]))[1] is not planes
    os.utime(paths[2], ns=(os.stat(paths[2]).st_atime_ns, os.stat(paths[2]).st_mtime_ns + 10**9))
    assert cache.entry(str(paths[2])) is not entry  # a changed file is parsed again


@pytest.mark.parametrize("reject", ["kappa_sigma", "gesd", "mad", "winsorized_sigma_clip", "none"])
def test_worker_warm_up_never_fails(reject):
    assert warm_up(StackConfig(reject=reject)) == os.getpid()
    assert warm_up() == os.getpid()


def test_threaded_assembly_is_bit_identical(one_worker, tmp_path):
    from zemosaic_xp.mosaic import TileImage

    result = one_worker[0]
    tiles = []
    for path in sorted((result.output_folder / "tiles").glob("tile_*.fits")):
        product, header = read_tile(path)
        tiles.append(TileImage(int(header["TILEID"]), int(header["TILEY0"]), int(header["TILEX0"]),
                               product.image, product.weight, product.coverage))
    serial = assemble_mosaic(tiles, result.mosaic_shape)
    threaded = assemble_mosaic(tiles, result.mosaic_shape, threads=3)
    for name in ("image", "weight", "coverage"):
        np.testing.assert_array_equal(getattr(threaded, name), getattr(serial, name))
    assert threaded.gains == serial.gains and threaded.offsets == serial.offsets
    a = write_mosaic_outputs(serial, tmp_path / "a")
    b = write_mosaic_outputs(threaded, tmp_path / "b", threads=3)
    assert sorted(a) == sorted(b) == ["coverage", "mosaic", "preview"]
    np.testing.assert_array_equal(mosaic_data(b["mosaic"]), mosaic_data(result.mosaic_path))
    assert a["preview"].read_bytes() == b["preview"].read_bytes()


def test_worker_kind_setting():
    assert GridConfig().worker_kind == "process"
    assert GridConfig.from_dict({"grid_worker_kind": " Thread "}).worker_kind == "thread"
    with pytest.raises(ValueError, match="worker_kind"):
        GridConfig(worker_kind="fork")
