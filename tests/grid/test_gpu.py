"""GPU use with an injected fake GPU backend (CPU-only CI): same output, fallback to the CPU,
out-of-memory band halving, circuit breaker, and the GPU flags of a ZeMosaic config."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from zemosaic_xp import run_grid_mode
from zemosaic_xp.grid._testing import fake_gpu_backend, inject_gpu_backend
from zemosaic_xp.grid.config import GridConfig
from zemosaic_xp.grid.geometry import build_global_grid
from zemosaic_xp.grid.gpu import MAX_GPU_FAILURES, GpuBreaker
from zemosaic_xp.grid.plan import load_stack_plan
from zemosaic_xp.grid.tile import FrameRef, stack_tile

from .survey_cases import SMALL_CONFIG, Recorder, mosaic_data, small_survey


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"), seed=7)


@pytest.fixture(scope="module")
def cpu_mosaic(survey, tmp_path_factory):
    return mosaic_data(run_grid_mode(survey.folder, tmp_path_factory.mktemp("cpu"), config=SMALL_CONFIG).mosaic_path)


def test_gpu_run_matches_the_cpu_run(survey, cpu_mosaic, tmp_path):
    backend = fake_gpu_backend(fail=None)
    rec = Recorder()
    with inject_gpu_backend(backend):
        result = run_grid_mode(survey.folder, tmp_path, rec, config=SMALL_CONFIG, grid_use_gpu=True,
                               grid_workers=2)
    assert result.use_gpu and result.gpu_fallbacks == 0 and result.workers == 1  # GPU tiles stay in-process
    assert "[GRID] GPU requested = True" in rec.messages()
    assert "[GRID] GPU=ON (numpy:fake-gpu (injected))" in rec.messages()
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), cpu_mosaic)


def test_gpu_errors_fall_back_to_cpu_and_open_the_breaker(survey, cpu_mosaic, tmp_path, caplog):
    backend = fake_gpu_backend(fail="error")
    with caplog.at_level(logging.WARNING, logger="zemosaic_xp.grid"), inject_gpu_backend(backend):
        result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG, grid_use_gpu=True)
    assert caplog.text.count("[GRID] GPU stack failed, falling back to CPU") == MAX_GPU_FAILURES
    assert "GPU disabled for the rest of the run after 3 failures" in caplog.text
    assert backend.xp.failures == MAX_GPU_FAILURES and result.gpu_fallbacks == MAX_GPU_FAILURES
    assert result.failed_tiles == {}
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), cpu_mosaic)


def test_a_transient_gpu_error_costs_one_band(survey, cpu_mosaic, tmp_path):
    backend = fake_gpu_backend(fail="error", times=1)
    with inject_gpu_backend(backend):
        result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG, grid_use_gpu=True)
    assert result.gpu_fallbacks == 1 and backend.xp.calls > 1  # the GPU stayed in use afterwards
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), cpu_mosaic)


def test_out_of_memory_halves_the_bands_of_the_tile(survey, tmp_path):
    grid = build_global_grid(load_stack_plan(survey.folder).entries, grid_size_factor=1.0, overlap_fraction=0.2)
    tile = max(grid.tiles, key=lambda t: len(t.frames))
    frames = [FrameRef(i, grid.frames[i].path, grid.frames[i].exposure) for i in tile.frames]
    config = GridConfig(stack_chunk_budget_mb=4096.0)

    def run(gpu, breaker=None):
        return stack_tile(tile, grid.wcs, frames, config, scratch_dir=tmp_path, channels=1, gpu=gpu,
                          breaker=breaker)

    cpu = run(None)
    healthy = run(fake_gpu_backend(fail=None), GpuBreaker())
    assert healthy.stats["gpu_fallbacks"] == 0 and healthy.stats["cpu_bands"] == 0
    breaker = GpuBreaker()
    oom = run(fake_gpu_backend(fail="oom", times=1), breaker)
    # the first call failed (OOM) and was redone on the CPU; every later band is half as high
    assert oom.stats["gpu_fallbacks"] == 1 and oom.stats["cpu_bands"] == 1 and breaker.failures == 1
    assert oom.stats["n_bands"] > healthy.stats["n_bands"] and oom.stats["gpu_bands"] > 0
    np.testing.assert_array_equal(oom.image, cpu.image)
    np.testing.assert_array_equal(healthy.image, cpu.image)


def test_no_gpu_backend_means_gpu_off(survey, tmp_path):
    rec = Recorder()
    result = run_grid_mode(survey.folder, tmp_path, rec, config={**SMALL_CONFIG, "use_gpu_grid": True})
    assert not result.use_gpu and "[GRID] GPU requested = True" in rec.messages()
    assert any(m.startswith("[GRID] GPU=OFF (") for m in rec.messages())


@pytest.mark.parametrize(("keys", "expected"), [
    ({}, None),
    ({"use_gpu_phase5": True}, True),
    ({"stack_use_gpu": "true"}, True),
    ({"use_gpu_grid": "auto", "use_gpu_phase5": False, "stack_use_gpu": True}, False),
    ({"use_gpu_grid": False, "use_gpu_phase5": True}, False),
    ({"use_gpu_grid": True}, True),
], ids=["unset", "phase5", "stack", "auto-inherits-phase5", "own-wins", "own"])
def test_use_gpu_grid_inherits_the_stacking_flags(keys, expected):
    assert GridConfig.from_dict(keys).use_gpu is expected


def test_default_is_cpu(survey, tmp_path):
    rec = Recorder()
    result = run_grid_mode(survey.folder, tmp_path, rec, config=SMALL_CONFIG)
    assert not result.use_gpu and "[GRID] GPU=OFF" in rec.messages()
