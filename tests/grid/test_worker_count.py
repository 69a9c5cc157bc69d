"""The worker count of a grid run (``grid/worker_count.py``): auto, explicit, and the caps by
tiles, CPU cores and RAM that apply to both (issue 15, case 7)."""

from __future__ import annotations

import logging
import os

import pytest

from zemosaic_xp import GridConfig, run_grid_mode
from zemosaic_xp.grid import worker_count
from zemosaic_xp.grid.worker_count import resolve_workers

from .survey_cases import small_survey

GB = 1024.0  # MB


@pytest.fixture
def machine(monkeypatch):
    """A machine of ``cores`` cores and ``ram_mb`` MB of available RAM (None: psutil missing)."""
    def set_machine(cores, ram_mb=64 * GB):
        monkeypatch.setattr(worker_count, "_cpu_count", lambda: cores)
        monkeypatch.setattr(worker_count, "_available_ram_mb", lambda: ram_mb)
    return set_machine


class _Emit:
    def __init__(self):
        self.messages = []

    def __call__(self, message, *args, level=logging.INFO):
        self.messages.append((message % args, level))


def test_default_requested_and_auto(machine):
    cfg = GridConfig()
    machine(8)
    assert resolve_workers(None, cfg) == (1, "default")  # the library's safe default
    assert resolve_workers(3, cfg) == (3, "requested")
    assert resolve_workers(None, cfg.replace(workers=2)) == (2, "requested")
    assert resolve_workers(1, cfg.replace(workers=4)) == (1, "requested")  # the argument wins
    assert resolve_workers(0, cfg) == (6, "auto")  # cpu_count - 2
    assert resolve_workers(0, cfg.replace(max_cpu_workers=2)) == (2, "auto")
    assert resolve_workers(0, cfg, n_tiles=3) == (3, "auto")
    machine(2)
    assert resolve_workers(0, cfg) == (1, "auto")
    with pytest.raises(ValueError, match="grid_workers"):
        resolve_workers(-1, cfg)


def test_an_explicit_count_may_use_every_core(machine):
    machine(8)
    emit = _Emit()
    assert resolve_workers(8, GridConfig(), n_tiles=20, emit=emit) == (8, "requested")
    assert resolve_workers(8, GridConfig(max_cpu_workers=2), emit=emit) == (8, "requested")  # an auto bound
    assert emit.messages == []


@pytest.mark.parametrize(("cores", "ram_mb", "n_tiles", "workers", "reason"), [
    # the issue's case: 16 workers asked for a 2-tile job
    (16, 64 * GB, 2, 2, "the run has 2 tile(s)"),
    (4, 64 * GB, 40, 4, "4 CPU core(s) available to this process"),
    # 512 MB + 2 x 192 MB budget = 896 MB per worker; 0.9 x 3 GB holds three
    (16, 3 * GB, 40, 3, "3.0 GB of RAM available x 0.9 holds 3 worker(s) of ~0.9 GB (512 MB + 2 x "
                        "stack_chunk_budget_mb)"),
    (2, 64 * GB, 2, 2, "2 CPU core(s) available to this process; the run has 2 tile(s)"),  # every binding cap
    (16, None, 40, 16, None),  # without psutil: no RAM cap
])
def test_issue15_explicit_workers_are_capped_with_a_warning(machine, cores, ram_mb, n_tiles, workers, reason):
    machine(cores, ram_mb)
    emit = _Emit()
    expected_how = "requested" if reason is None else "requested, capped"
    assert resolve_workers(16, GridConfig(), n_tiles=n_tiles, emit=emit) == (workers, expected_how)
    if reason is None:
        assert emit.messages == []
    else:
        assert emit.messages == [(f"[GRID] 16 workers requested, capped to {workers}: {reason}", logging.WARNING)]


def test_ram_caps_the_auto_worker_count(machine):
    machine(16, 3 * GB)
    assert resolve_workers(0, GridConfig())[0] == 3  # 0.9 x 3 GB / 896 MB
    assert resolve_workers(0, GridConfig(stack_chunk_budget_mb=512))[0] == 1  # 0.9 x 3 GB / 1.5 GB
    assert resolve_workers(0, GridConfig(stack_chunk_budget_mb=64))[0] == 4  # 0.9 x 3 GB / 640 MB


def test_issue15_sixteen_workers_for_two_tiles_start_two(machine, tmp_path, caplog):
    machine(16)  # so that only the tiles cap: the same run on any CI machine
    survey = small_survey(tmp_path / "survey", seed=9)
    config = {"grid_size_factor": 2.0, "batch_overlap_pct": 20}
    with caplog.at_level(logging.INFO, logger="zemosaic_xp"):
        result = run_grid_mode(survey.folder, tmp_path / "out", config=config, grid_workers=16)
    assert result.tiles_total == 2 and result.tiles_processed == 2 and result.workers == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["[GRID] 16 workers requested, capped to 2: the run has 2 tile(s)"]
    assert "[GRID] using 2 workers (requested, capped)" in caplog.text
    pids = {r.getMessage().split("pid=")[1].split()[0] for r in caplog.records
            if "processed by worker pid=" in r.getMessage()}
    assert pids and str(os.getpid()) not in pids and len(pids) <= 2  # tiles ran in (at most 2) worker processes


@pytest.mark.parametrize("requested", [None, 0, 1, 2, 3, 16])
@pytest.mark.parametrize(("cores", "ram_mb"), [(8, 64 * GB), (2, 64 * GB), (8, 3 * GB), (1, None)])
def test_most_workers_is_the_count_before_the_tiles_cap_it(machine, requested, cores, ram_mb):
    machine(cores, ram_mb)
    cfg = GridConfig()
    expected = resolve_workers(requested, cfg, emit=_Emit())[0]
    assert worker_count.most_workers(requested, cfg) == expected
    assert worker_count.most_workers(None, GridConfig(workers=requested)) == expected
    assert resolve_workers(requested, cfg, n_tiles=1, emit=_Emit())[0] <= expected


def test_most_workers_of_an_invalid_count_is_one(machine):
    machine(8)
    assert worker_count.most_workers(-2, GridConfig()) == 1  # resolve_workers raises later, naming it
    assert worker_count.most_workers(True, GridConfig()) == 1
