"""Grid GPU use with the one fault injector (CPU-only CI): same output, fallback to the CPU,
out-of-memory block halving, circuit breaker, and the GPU flags of a ZeMosaic config."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from zemosaic_xp import run_grid_mode
from zemosaic_xp.gpu.testing import FaultInjector
from zemosaic_xp.grid.config import GridConfig
from zemosaic_xp.grid.geometry import build_global_grid
from zemosaic_xp.grid.plan import load_stack_plan
from zemosaic_xp.grid.tile import FrameRef, stack_tile

from ..conftest import gpu_present
from .survey_cases import SMALL_CONFIG, Recorder, mosaic_data, small_survey


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"), seed=7)


@pytest.fixture(scope="module")
def cpu_mosaic(survey, tmp_path_factory):
    return mosaic_data(run_grid_mode(survey.folder, tmp_path_factory.mktemp("cpu"), config=SMALL_CONFIG).mosaic_path)


MAX_GPU_FAILURES = 3  # grid's breaker (GpuPolicy.for_grid)


def test_gpu_run_matches_the_cpu_run(survey, cpu_mosaic, tmp_path):
    injector = FaultInjector()
    rec = Recorder()
    result = run_grid_mode(survey.folder, tmp_path, rec, config=SMALL_CONFIG, grid_workers=2,
                           gpu_policy=injector.policy(grid=True))
    assert result.use_gpu and result.gpu_fallbacks == 0 and result.workers == 1  # GPU tiles stay in-process
    assert "[GRID] GPU requested = True" in rec.messages()
    assert "[GRID] GPU=ON (numpy:fake-gpu)" in rec.messages()
    assert len(injector.gpu_attempts) > 1  # every block went to the (fake) GPU
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), cpu_mosaic)


def test_gpu_errors_fall_back_to_cpu_and_open_the_breaker(survey, cpu_mosaic, tmp_path, caplog):
    injector = FaultInjector(then="error")
    policy = injector.policy(grid=True)
    rec = Recorder()
    with caplog.at_level(logging.WARNING, logger="zemosaic_xp.gpu"):
        result = run_grid_mode(survey.folder, tmp_path, rec, config=SMALL_CONFIG, gpu_policy=policy)
    assert caplog.text.count("[GRID] GPU stack failed, falling back to CPU") == MAX_GPU_FAILURES
    # ... and the GUI gets them too, at ZeMosaic's "WARN" level (its worker forwards no "WARNING").
    fallbacks = [c for c in rec.calls if str(c[0]).startswith("[GRID] GPU stack failed, falling back to CPU")]
    assert len(fallbacks) == MAX_GPU_FAILURES and {c[2] for c in fallbacks} == {"WARN"}
    assert any(str(c[0]).startswith("[GRID] GPU disabled for the rest of the run") and c[2] == "WARN"
               for c in rec.calls)
    assert "[GRID] GPU disabled for the rest of the run after 3 failures" in caplog.text
    assert len(injector.gpu_attempts) == MAX_GPU_FAILURES and result.gpu_fallbacks == MAX_GPU_FAILURES
    assert policy.hard_disabled and result.failed_tiles == {}
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), cpu_mosaic)


def test_a_transient_gpu_error_costs_one_block(survey, cpu_mosaic, tmp_path):
    injector = FaultInjector(["error"])
    result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG, gpu_policy=injector.policy(grid=True))
    assert result.gpu_fallbacks == 1 and len(injector.gpu_attempts) > 1  # the GPU stayed in use afterwards
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), cpu_mosaic)


def test_garbage_gpu_blocks_are_redone_on_the_cpu(survey, cpu_mosaic, tmp_path):
    injector = FaultInjector(["nan", "nan"])
    result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG, gpu_policy=injector.policy(grid=True))
    assert result.gpu_fallbacks == 2
    np.testing.assert_array_equal(mosaic_data(result.mosaic_path), cpu_mosaic)


def test_out_of_memory_halves_the_blocks(survey, tmp_path):
    grid = build_global_grid(load_stack_plan(survey.folder).entries, grid_size_factor=1.0, overlap_fraction=0.2)
    tile = max(grid.tiles, key=lambda t: len(t.frames))
    frames = [FrameRef(i, grid.frames[i].path, grid.frames[i].exposure) for i in tile.frames]
    config = GridConfig(stack_chunk_budget_mb=4096.0)

    def run(policy):
        return stack_tile(tile, grid.wcs, frames, config, scratch_dir=tmp_path, channels=1, gpu_policy=policy)

    cpu = run(None)
    healthy = run(FaultInjector().policy(grid=True))
    assert healthy.stats["gpu_fallbacks"] == 0 and healthy.stats["cpu_bands"] == 0
    policy = FaultInjector(["oom"]).policy(grid=True)
    oom = run(policy)
    # the first block failed (OOM) and was redone on the CPU; every later block is half as high
    assert oom.stats["gpu_fallbacks"] == 1 and oom.stats["cpu_bands"] == 1 and policy.failures == 1
    assert policy.budget_scale == 0.5 and policy.oom_events == 1 and not policy.hard_disabled
    assert oom.stats["n_bands"] > healthy.stats["n_bands"] and oom.stats["gpu_bands"] > 0
    np.testing.assert_array_equal(oom.image, cpu.image)
    np.testing.assert_array_equal(healthy.image, cpu.image)


def test_a_failed_health_check_means_gpu_off(survey, tmp_path):
    rec = Recorder()
    result = run_grid_mode(survey.folder, tmp_path, rec, config=SMALL_CONFIG,
                           gpu_policy=FaultInjector(health="error").policy(grid=True))
    assert not result.use_gpu
    assert any(m.startswith("[GRID] GPU=OFF (numpy:fake-gpu health check failed") for m in rec.messages())


def test_a_requested_gpu_is_used_only_where_one_works(survey, cpu_mosaic, tmp_path):
    # Correct on both kinds of machine: GPU=ON where CuPy or torch CUDA passes its health
    # check, GPU=OFF with the reason elsewhere; the mosaic is the CPU's either way.
    rec = Recorder()
    result = run_grid_mode(survey.folder, tmp_path, rec, config={**SMALL_CONFIG, "use_gpu_grid": True})
    assert "[GRID] GPU requested = True" in rec.messages()
    state = "ON" if gpu_present() else "OFF"
    assert result.use_gpu is gpu_present()
    assert any(m.startswith(f"[GRID] GPU={state} (") for m in rec.messages())
    np.testing.assert_allclose(mosaic_data(result.mosaic_path), cpu_mosaic, rtol=1e-5, atol=1e-3)


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
