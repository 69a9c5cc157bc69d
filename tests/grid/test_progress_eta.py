"""Grid progress for ZeMosaic's GUI: the ETA covers the assembly; warnings reach the callback as WARN."""

from __future__ import annotations

import logging

from zemosaic_xp.grid import progress as gp
from zemosaic_xp.grid import scheduler as gs
from zemosaic_xp.grid.progress import GridProgress
from zemosaic_xp.grid.worker import TileOutcome
from zemosaic_xp.telemetry import ResourceTelemetryController

from .survey_cases import Recorder


def _etas(rec):
    return [k.split(":", 1)[1] for k in rec.keys() if k.startswith("ETA_UPDATE:")]


def test_eta_counts_the_assembly_units(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(gp.time, "monotonic", lambda: now[0])
    rec = Recorder()
    progress = GridProgress(rec, ResourceTelemetryController(False, None, None))
    progress.set_totals(4)  # 1 setup + 4 tiles + 4 assembly + 1 save = 10 units
    progress.advance(1, stage="GRID: setup", force=True)
    progress.start_clock()
    for _ in range(4):
        now[0] += 10.0
        progress.tile_finished()
    # every tile stacked, the assembly (4 units) and the save (1) left, at 10 s a unit
    assert _etas(rec)[-1] == "00:00:50"
    relay = progress.sub_progress("GRID: photometry & blending", progress.units_done, 4)
    for done in range(1, 5):
        now[0] += 2.0  # the assembly goes faster: the EMA follows it
        relay("STAGE_PROGRESS", "blend", done, total=4)
        now[0] += 1.0
    etas = _etas(rec)
    assert "00:00:00" not in etas  # never 0 before the end
    assert etas[-1] == "00:00:05"  # one unit (the save) left, EMA of 10, 2, 2, 2, 2 s/unit
    progress.finish()
    assert _etas(rec)[-1] == "00:00:00"
    stages = [(c[2], c[3]["total"]) for c in rec.calls if c[0] == "STAGE_PROGRESS"]
    assert [s[0] for s in stages] == sorted(s[0] for s in stages) and stages[-1] == (10, 10)


def test_eta_is_one_second_at_least_while_work_is_left(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(gp.time, "monotonic", lambda: now[0])
    rec = Recorder()
    progress = GridProgress(rec, ResourceTelemetryController(False, None, None))
    progress.set_totals(2)
    progress.start_clock()
    now[0] += 0.01
    progress.tile_finished()
    assert _etas(rec) == ["00:00:01"]


def test_resumed_tiles_do_not_count_towards_the_rate(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(gp.time, "monotonic", lambda: now[0])
    rec = Recorder()
    progress = GridProgress(rec, ResourceTelemetryController(False, None, None))
    progress.set_totals(3)
    progress.start_clock()
    progress.tile_finished(measured=False)
    assert _etas(rec) == []  # nothing measured yet: no ETA
    now[0] += 4.0
    progress.tile_finished()
    # 6 units left (the setup, 1 tile, 3 assembly units, the save) at 4 s each
    assert _etas(rec)[-1] == "00:00:24"


def test_worker_warnings_and_cancel_reach_the_callback_as_warn():
    rec = Recorder()
    progress = GridProgress(rec, ResourceTelemetryController(False, None, None))
    record = logging.LogRecord("zemosaic_xp.grid.tile", logging.WARNING, __file__, 1, "[GRID] tile 3: odd frame", None,
                               None)
    info = logging.LogRecord("zemosaic_xp.grid.tile", logging.INFO, __file__, 1, "[GRID] fine", None, None)
    outcome = TileOutcome(3, True, "f", 1, 1, 0.1, log_records=[record, info])
    gs._replay(outcome, progress.notify)
    assert rec.calls == [("[GRID] tile 3: odd frame", None, "WARN", {})]

    class Cancel:
        def is_set(self):
            return True

    sched = gs.TileScheduler(workers=1, cancel=Cancel(), emit=progress.message)
    assert sched._cancelled()
    assert rec.calls[-1][2] == "WARN" and "cancel requested" in rec.calls[-1][0]
