"""A stand-in for ZeMosaic's GUI, driven by a grid run and a classic Phase 3 run through the compat entries.

:class:`WorkerQueueProxy` and :class:`QtGuiModel` re-implement, from the description of
``zemosaic_worker.py``'s queue proxy and ``zemosaic_gui_qt.py`` (reference/upstream_spec.md
§3.11, §6.4, §7 and the log levels of §2.1), how each callback reaches the GUI and what
the GUI does with it:

- the worker's proxy forwards the special keys (``STAGE_PROGRESS``, ``STATS_UPDATE``,
  ``ETA_UPDATE:``, ``MASTER_TILE_COUNT_UPDATE:``, ``RAW_FILE_COUNT_UPDATE:``,
  ``CHRONO_*``) and, for every other message, only the levels ``INFO``, ``WARN``,
  ``ERROR``, ``SUCCESS``, ``ETA_LEVEL`` and ``CHRONO_LEVEL``: anything else (``WARNING``,
  ``DEBUG``, ``INFO_DETAIL``) is dropped;
- the GUI turns ``STAGE_PROGRESS`` (progress = stage name, level = units done,
  ``total=``) into the bar's percent, shows ``ETA_UPDATE:HH:MM:SS`` unless a structured
  ETA (``STATS_UPDATE`` ``eta_seconds``) came in the last 3 s, parses
  ``MASTER_TILE_COUNT_UPDATE:d/t``, hands ``STATS_UPDATE`` to the resource monitor
  without logging it (optional keys, numbers), and logs the other messages.

The tests check what a user sees: every warning of the run in the GUI's log, a bar
that never moves back and ends at 100 %, and an ETA that is never 00:00:00 before
the end.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import threading
from collections import Counter

import numpy as np
import pytest

from tests.grid.survey_cases import small_survey
from zemosaic_xp.compat.zemosaic import run_grid_mode, stack_master_tile_auto, start_phase3
from zemosaic_xp.gpu.testing import FaultInjector
from zemosaic_xp.grid.worker import TEST_FAIL_ENV
from zemosaic_xp.synthetic import make_stack

FORWARDED_LEVELS = {"INFO", "WARN", "ERROR", "SUCCESS", "ETA_LEVEL", "CHRONO_LEVEL"}
SPECIAL_PREFIXES = ("ETA_UPDATE:", "MASTER_TILE_COUNT_UPDATE:", "RAW_FILE_COUNT_UPDATE:", "CHRONO_")
_HHMMSS = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)$")
_COUNT = re.compile(r"^(\d+)/(\d+)$")
_STRUCTURED_ETA_HOLD_SEC = 3.0
_NUMERIC_STATS = ("cpu_percent", "ram_used_mb", "ram_total_mb", "ram_available_mb", "gpu_used_mb",
                  "gpu_total_mb", "gpu_util_percent", "eta_seconds")


class QtGuiModel:
    """What ZeMosaic's Qt GUI keeps from the worker's messages."""

    def __init__(self, clock=None):
        self.clock = clock or (lambda: 0.0)
        self.log: list[tuple[str, str]] = []  # (level, text)
        self.percents: list[float] = []
        self.eta_shown: list[tuple[str, float]] = []  # (text, percent when shown)
        self.tile_counts: list[tuple[int, int]] = []
        self.stats: list[dict] = []
        self._structured_eta_at = -math.inf

    @property
    def percent(self) -> float:
        return self.percents[-1] if self.percents else 0.0

    def on_message(self, key, progress, level, kw):
        upper = key.upper() if isinstance(key, str) else key
        if upper == "STATS_UPDATE":
            self._on_stats(kw)
        elif upper == "STAGE_PROGRESS":
            assert isinstance(progress, str) and progress, f"stage name expected, got {progress!r}"
            total = kw.get("total")
            assert isinstance(level, int) and isinstance(total, int) and total > 0, (level, total)
            assert 0 <= level <= total
            self.percents.append(100.0 * level / total)
        elif key.startswith("ETA_UPDATE:"):
            text = key.split(":", 1)[1]
            assert _HHMMSS.match(text), f"bad ETA text {text!r}"
            if self.clock() - self._structured_eta_at >= _STRUCTURED_ETA_HOLD_SEC:
                self.eta_shown.append((text, self.percent))
        elif key.startswith("MASTER_TILE_COUNT_UPDATE:"):
            m = _COUNT.match(key.split(":", 1)[1])
            assert m, key
            self.tile_counts.append((int(m.group(1)), int(m.group(2))))
        else:
            self.log.append((level, key))

    def _on_stats(self, payload):
        for name in _NUMERIC_STATS:
            value = payload.get(name)
            assert value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)), (name, value)
        for name in ("phase_index", "tiles_done", "tiles_total", "files_done", "files_total"):
            value = payload.get(name)
            assert value is None or (isinstance(value, int) and not isinstance(value, bool)), (name, value)
        if payload.get("tiles_total") is not None:
            assert 0 <= payload["tiles_done"] <= payload["tiles_total"]
        assert isinstance(payload.get("phase_name", ""), str)
        eta = payload.get("eta_seconds")
        if eta is not None and eta >= 0:
            self._structured_eta_at = self.clock()
            h, rest = divmod(int(round(eta)), 3600)
            self.eta_shown.append((f"{h:02d}:{rest // 60:02d}:{rest % 60:02d}", self.percent))
        self.stats.append(dict(payload))


class WorkerQueueProxy:
    """The worker's ``progress_callback``: filters levels, then queues to the GUI (here: calls it)."""

    def __init__(self, gui: QtGuiModel):
        self.gui = gui
        self.dropped: list[tuple] = []
        self._lock = threading.Lock()

    def __call__(self, key, progress=None, level="INFO", **kw):
        special = isinstance(key, str) and (key.upper() in ("STAGE_PROGRESS", "STATS_UPDATE")
                                            or key.startswith(SPECIAL_PREFIXES))
        level_name = level.upper() if isinstance(level, str) else level
        with self._lock:
            if special or level_name in FORWARDED_LEVELS:
                self.gui.on_message(key, progress, level_name, kw)
            else:
                self.dropped.append((key, level))


def _warnings_logged(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("zemosaic_xp")]


def _check_every_logged_warning_arrives_once(caplog, gui: QtGuiModel):
    shown = Counter(text for level, text in gui.log if level in ("WARN", "ERROR"))
    logged = Counter(_warnings_logged(caplog))
    assert logged, "the run logged no warning: nothing checked"
    assert {m: (n, shown[m]) for m, n in logged.items() if shown[m] != n} == {}


def _check_the_bar_and_the_eta(gui: QtGuiModel):
    assert gui.percents, "no STAGE_PROGRESS reached the GUI"
    assert gui.percents == sorted(gui.percents), "the bar moved back"
    assert gui.percents[-1] == 100.0
    assert gui.eta_shown, "no ETA reached the GUI"
    early = [text for text, pct in gui.eta_shown if pct < 100.0]
    assert "00:00:00" not in early, f"ETA 0 before the end: {gui.eta_shown}"
    assert gui.eta_shown[-1][0] == "00:00:00"


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"))


def _grid_call(survey, out, proxy, **extra):
    zconfig = {"grid_size_factor": 1.0, "batch_overlap_pct": 20, "use_gpu_phase5": False, "grid_workers": 1,
               "enable_resource_telemetry": True, "resource_telemetry_interval_sec": 0.5}
    return run_grid_mode(input_folder=survey.folder, output_folder=out, progress_callback=proxy,
                         stack_norm_method="linear_fit", stack_weight_method="noise_variance",
                         stack_reject_algo="winsorized_sigma_clip", stack_kappa_low=3.0, stack_kappa_high=3.0,
                         winsor_limits="0.05,0.05", stack_final_combine="mean", apply_radial_weight=False,
                         radial_feather_fraction=0.8, radial_shape_power=2.0, save_final_as_uint16=False,
                         legacy_rgb_cube=False, grid_rgb_equalize=False, zconfig=zconfig, **extra)


def test_grid_run_with_a_failed_tile_and_gpu_fallbacks(survey, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(TEST_FAIL_ENV, "2")  # tile 2 fails on both attempts
    gui = QtGuiModel()
    proxy = WorkerQueueProxy(gui)
    policy = FaultInjector(then="error").policy(grid=True)  # every GPU block fails: fallbacks, then GPU off
    with caplog.at_level(logging.WARNING, logger="zemosaic_xp"):
        result = _grid_call(survey, tmp_path, proxy, gpu_policy=policy, grid_use_gpu=True)
    assert result.failed_tiles and result.mosaic_path.is_file() and result.gpu_fallbacks >= 1
    _check_every_logged_warning_arrives_once(caplog, gui)  # and once only
    joined = "\n".join(text for level, text in gui.log if level == "WARN")
    assert "retrying tile 2" in joined and "finished with 1 failed tile" in joined
    assert "falling back to CPU" in joined
    # ZeMosaic's default final-mosaic DBE ran and said so (INFO), with photutils installed
    assert any(level == "INFO" and text.startswith("[GRID][DBE]") for level, text in gui.log) \
        or importlib.util.find_spec("photutils") is None
    assert any(level == "ERROR" and "Tile 2 failed" in text for level, text in gui.log)
    assert not any(level == "WARNING" for level, _ in proxy.dropped)
    _check_the_bar_and_the_eta(gui)
    assert gui.tile_counts[-1] == (result.tiles_total, result.tiles_total)
    assert [d for d, _ in gui.tile_counts] == sorted(d for d, _ in gui.tile_counts)
    assert gui.stats[-1]["phase_name"] == "Grid: Completed" and gui.stats[-1]["eta_seconds"] == 0


def test_grid_run_cancelled(survey, tmp_path, caplog):
    cancel = threading.Event()
    gui = QtGuiModel()

    class CancellingProxy(WorkerQueueProxy):
        def __call__(self, key, progress=None, level="INFO", **kw):
            super().__call__(key, progress, level, **kw)
            if isinstance(key, str) and key.startswith("MASTER_TILE_COUNT_UPDATE:"):
                cancel.set()

    with caplog.at_level(logging.WARNING, logger="zemosaic_xp"):
        # an unknown keyword: one logged [CONFIG] warning that must reach the GUI once too
        result = _grid_call(survey, tmp_path, CancellingProxy(gui), cancel=cancel, progress_reporter=None)
    assert result.cancelled
    warns = [text for level, text in gui.log if level == "WARN"]
    assert any("cancel requested" in w for w in warns) and any("cancelled:" in w for w in warns)
    _check_every_logged_warning_arrives_once(caplog, gui)
    assert gui.percents == sorted(gui.percents) and gui.percents[-1] < 100.0
    assert all(text != "00:00:00" for text, _ in gui.eta_shown)  # not finished: never 0


def test_classic_phase3_run(tmp_path, caplog):
    frames = list(make_stack(n_frames=6, shape=(40, 24), seed=6, rgb=True, cosmic_rays_per_frame=4).frames)
    frames.append(np.full_like(frames[0], np.nan))  # a frame with no data: skipped with a warning
    gui = QtGuiModel()
    proxy = WorkerQueueProxy(gui)
    zconfig = {"enable_resource_telemetry": True, "resource_telemetry_interval_sec": 0.5}
    params = {"stack_reject_algo": "kappa_sigma", "stack_final_combine": "mean", "parsed_winsor_limits": (0.05, 0.05)}
    policy = FaultInjector(["oom", "oom"], base="numpy").policy("auto")  # mode C: retry, then GPU off
    run = start_phase3(4, proxy, zconfig, output_folder=tmp_path, gpu_policy=policy)
    with caplog.at_level(logging.WARNING, logger="zemosaic_xp"):
        tiles = []
        for t in range(4):
            tiles.append(stack_master_tile_auto(frames, params, {"max_chunk_bytes": 40_000}, run=run, tile_id=t))
        run.finish()
        run.telemetry.close()
    for image, meta, used_gpu in tiles:
        np.testing.assert_array_equal(image, tiles[-1][0])
        assert image.dtype == np.float32 and meta["phase3_used_gpu"] is used_gpu
    _check_every_logged_warning_arrives_once(caplog, gui)
    shown = [text for level, text in gui.log if level in ("WARN", "ERROR")]
    assert any("[P3][GPU]" in s for s in shown) and sum("no finite pixel" in s for s in shown) == 4
    _check_the_bar_and_the_eta(gui)
    assert gui.tile_counts == [(i, 4) for i in range(1, 5)]
    assert gui.stats[0]["tiles_done"] == 0 and gui.stats[-1]["tiles_done"] == 4
    assert (tmp_path / "resource_telemetry.csv").is_file()


def test_grid_run_reports_frames_it_skips(tmp_path):
    survey = small_survey(tmp_path / "survey", n_frames=6)
    plan = survey.folder / "stack_plan.csv"
    plan.write_text(plan.read_text() + "gone_1.fits,60,night1,98,RGB\ngone_2.fits,60,night1,99,RGB\n")
    gui = QtGuiModel()
    result = _grid_call(survey, tmp_path / "out", WorkerQueueProxy(gui))
    assert result.mosaic_path.is_file()
    warns = [text for level, text in gui.log if level == "WARN"]
    assert any("2 frame(s)" in w and "gone_1.fits" in w and "gone_2.fits" in w for w in warns)
    _check_the_bar_and_the_eta(gui)
