"""MasterTileRun: one monotone bar, tile counts, ETA and telemetry over a run of master tiles."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from zemosaic_xp.classic import progress as cp
from zemosaic_xp.classic.progress import SCAN_UNITS, UNITS_PER_TILE, MasterTileRun
from zemosaic_xp.gpu import GpuPolicy
from zemosaic_xp.gpu.testing import FaultInjector
from zemosaic_xp.synthetic import make_stack
from zemosaic_xp.telemetry import ResourceTelemetryController


class Rec:
    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, key, progress=None, level=None, **kw):
        with self.lock:
            self.calls.append((key, progress, level, kw))

    def bar(self):
        return [(c[2], c[3]["total"]) for c in self.calls if c[0] == "STAGE_PROGRESS"]

    def etas(self):
        return [c[0].split(":", 1)[1] for c in self.calls if c[0].startswith("ETA_UPDATE:")]


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(cp.time, "monotonic", lambda: now[0])
    return now


def test_stages_of_each_tile_become_run_units(clock):
    rec = Rec()
    run = MasterTileRun(2, rec, gpu_policy=GpuPolicy("cpu"))
    cb = run.tile_callback()
    cb("STAGE_PROGRESS", "scan", 5, total=10)
    clock[0] += 1
    cb("STAGE_PROGRESS", "stack", 1, total=4)
    clock[0] += 1
    # a GPU retry restarts the tile's stack stage: the bar does not move back
    cb("STAGE_PROGRESS", "stack", 0, total=8)
    cb("STAGE_PROGRESS", "stack", 4, total=8)
    run.tile_finished(cb)
    assert rec.bar()[0] == (SCAN_UNITS // 2, 2 * UNITS_PER_TILE)
    assert rec.bar()[1] == (SCAN_UNITS + (UNITS_PER_TILE - SCAN_UNITS) // 4, 2 * UNITS_PER_TILE)
    assert rec.bar()[-1] == (UNITS_PER_TILE, 2 * UNITS_PER_TILE)
    assert "MASTER_TILE_COUNT_UPDATE:1/2" in [c[0] for c in rec.calls]
    levels = [b[0] for b in rec.bar()]
    assert levels == sorted(levels)
    # 100 units in 2 s: 100 units left -> 00:00:02; never 0 before the end
    assert rec.etas()[-1] == "00:00:02" and "00:00:00" not in rec.etas()
    run.finish()
    assert rec.bar()[-1] == (2 * UNITS_PER_TILE, 2 * UNITS_PER_TILE) and rec.etas()[-1] == "00:00:00"


def test_eta_is_at_least_one_second_while_work_is_left(clock):
    rec = Rec()
    run = MasterTileRun(1, rec, gpu_policy=GpuPolicy("cpu"))
    cb = run.tile_callback()
    clock[0] += 0.01
    cb("STAGE_PROGRESS", "stack", 99, total=100)
    assert rec.etas() == ["00:00:01"]


def test_concurrent_tiles_keep_the_bar_monotone():
    rec = Rec()
    run = MasterTileRun(8, rec, gpu_policy=GpuPolicy("cpu"))

    def tile():
        cb = run.tile_callback()
        for i in range(1, 11):
            cb("STAGE_PROGRESS", "scan", i, total=10)
        for i in range(1, 51):
            cb("STAGE_PROGRESS", "stack", i, total=50)
        run.tile_finished(cb)

    threads = [threading.Thread(target=tile) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    levels = [b[0] for b in rec.bar()]
    assert levels == sorted(levels) and levels[-1] == 8 * UNITS_PER_TILE
    counts = [c[0] for c in rec.calls if c[0].startswith("MASTER_TILE_COUNT_UPDATE:")]
    assert counts == [f"MASTER_TILE_COUNT_UPDATE:{i}/8" for i in range(1, 9)]


def test_real_tiles_with_gpu_retry_warnings_and_telemetry(tmp_path):
    frames = list(make_stack(n_frames=6, shape=(30, 16), seed=3, rgb=True).frames)
    rec = Rec()
    injector = FaultInjector(["oom", "ok"], base="numpy")
    telemetry = ResourceTelemetryController(True, 0.5, rec, csv_path=tmp_path / "t.csv")
    run = MasterTileRun(3, rec, telemetry=telemetry, gpu_policy=injector.policy("auto"))
    with telemetry:
        results = [run.stack(frames, memory_budget_bytes=30_000, tile_id=i) for i in range(3)]
        run.finish()
    ref = results[0].image
    for r in results[1:]:
        np.testing.assert_array_equal(r.image, ref)
    warns = [c[0] for c in rec.calls if c[2] == "WARN"]
    assert any("[P3][GPU]" in w for w in warns)
    levels = [b[0] for b in rec.bar()]
    assert levels == sorted(levels) and levels[-1] == 3 * UNITS_PER_TILE
    stats = [c[3] for c in rec.calls if c[0] == "STATS_UPDATE"]
    assert stats[0]["tiles_done"] == 0 and stats[-1]["tiles_done"] == 3 and stats[-1]["eta_seconds"] == 0
    assert all(s["phase_name"] == "Phase 3: master tiles" for s in stats)


def test_a_failed_tile_is_an_error_and_still_counts():
    rec = Rec()
    run = MasterTileRun(2, rec, gpu_policy=GpuPolicy("cpu"))
    with pytest.raises(ValueError):
        run.stack([np.zeros((4, 4)), np.zeros((5, 4))])
    assert any(c[2] == "ERROR" and c[0].startswith("[P3] master tile 1 failed") for c in rec.calls)
    assert "MASTER_TILE_COUNT_UPDATE:1/2" in [c[0] for c in rec.calls]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_tile_count(bad):
    with pytest.raises(ValueError, match="tiles_total"):
        MasterTileRun(bad)
