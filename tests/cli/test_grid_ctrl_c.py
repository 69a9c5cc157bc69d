"""Ctrl-C in a terminal during ``zemosaic-xp grid --workers 2`` (issue 15, case 5).

A terminal sends SIGINT to the whole foreground process group: the CLI runs here in a
session of its own, and the test signals that group with ``os.killpg``, workers
included. Every tile is held running (test hook) until the test releases it, so the
signal surely arrives while tiles run, on any machine.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from zemosaic_xp.cli import main
from zemosaic_xp.grid.manifest import TileManifest

from ..grid import process_tree
from ..grid.survey_cases import SMALL_CONFIG, small_survey

pytestmark = pytest.mark.skipif(not process_tree.CAN_INSPECT, reason="needs POSIX signals and /proc or psutil")

CLI = "import sys; from zemosaic_xp.cli import main; sys.exit(main())"
NOTICE = "zemosaic-xp: Ctrl-C: stopping after the running tile(s); Ctrl-C again to abort"


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"), seed=4)


def _start(survey, tmp_path):
    config = tmp_path / "zemosaic_config.json"
    config.write_text(json.dumps(SMALL_CONFIG), encoding="utf-8")
    out = tmp_path / "out"
    args = ["-c", CLI, "--quiet", "grid", str(survey.folder), str(out), "--workers", "2", "--config", str(config)]
    return process_tree.start(args, out, **process_tree.hold_tiles()), out, config


def _wait_for(out, text, timeout=120.0):
    deadline = time.monotonic() + timeout
    while text not in process_tree.stderr_of(out):
        assert time.monotonic() < deadline, f"{text!r} not on stderr: {process_tree.stderr_of(out)!r}"
        time.sleep(0.05)


def test_issue15_one_ctrl_c_stops_after_the_running_tiles_and_keeps_them(survey, tmp_path, capsys):
    proc, out, config = _start(survey, tmp_path)
    pids: list[int] = []
    try:
        running = process_tree.wait_running_tiles(out, 2, proc)
        pids = list(process_tree.descendants(proc.pid))
        os.killpg(proc.pid, signal.SIGINT)
        _wait_for(out, NOTICE)
        process_tree.release(out)  # the running tiles may finish now
        stdout, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
        process_tree.kill_all(pids)
    err = process_tree.stderr_of(out)
    assert proc.returncode == 130, err
    assert stdout == ""
    total = 6  # SMALL_CONFIG's tiles on a 12-frame survey
    assert err.strip().splitlines() == [
        NOTICE,
        f"zemosaic-xp: cancelled: 2 of {total} tile(s) done and kept in {out}; run the same command again "
        "to resume",
    ]
    kept = sorted(f"tile_{int(tile_id):04d}" for tile_id in TileManifest(out / "tiles").entries)
    assert kept == running
    assert all((out / "tiles" / f"{name}.fits").is_file() for name in kept)
    assert process_tree.wait_gone(pids, timeout=60) == []
    # The same command again resumes from them (in this process: one worker).
    code = main(["--quiet", "grid", str(survey.folder), str(out), "--workers", "1", "--config", str(config)])
    assert code == 0 and f"{total - 2} stacked, 2 resumed, 0 failed of {total}" in capsys.readouterr().out


def test_issue15_second_ctrl_c_aborts_at_once(survey, tmp_path):
    proc, out, _ = _start(survey, tmp_path)
    pids: list[int] = []
    try:
        process_tree.wait_running_tiles(out, 2, proc)
        pids = list(process_tree.descendants(proc.pid))
        os.killpg(proc.pid, signal.SIGINT)
        _wait_for(out, NOTICE)
        os.killpg(proc.pid, signal.SIGINT)  # the held tiles are never released: only an abort ends the run
        proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
        process_tree.kill_all(pids)
    err = process_tree.stderr_of(out)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [NOTICE, "zemosaic-xp: interrupted"]
    assert process_tree.wait_gone(pids, timeout=60) == []
    assert TileManifest(out / "tiles").entries == {}
