"""Worker processes (``grid/processes.py``) with real processes and real signals: a parent
killed by SIGKILL takes its workers and the resource tracker with it (issue 15, case 6);
an unguarded script gets one clear error (case 8); workers that cannot start are told
apart from workers killed by a signal."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys

import pytest

from zemosaic_xp import run_grid_mode
from zemosaic_xp.grid import processes, scheduler
from zemosaic_xp.grid.processes import START_ENV, UNGUARDED_MAIN_EXIT, exit_reason

from . import process_tree
from .survey_cases import SMALL_CONFIG, small_survey

pytestmark = pytest.mark.skipif(not process_tree.CAN_INSPECT, reason="needs POSIX signals and /proc or psutil")

GUARDED = f"""
import sys
from zemosaic_xp import run_grid_mode

if __name__ == "__main__":
    run_grid_mode(sys.argv[1], sys.argv[2], config={SMALL_CONFIG!r}, grid_workers=2)
"""

# The README's grid example as a new user first writes it: no `if __name__ == "__main__":`.
UNGUARDED = f"""
import sys
from zemosaic_xp import run_grid_mode

result = run_grid_mode(sys.argv[1], sys.argv[2], config={SMALL_CONFIG!r}, grid_workers=2)
print("finished", result.tiles_processed)
"""


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"), seed=9)


@pytest.mark.parametrize(("exitcode", "text"), [
    (-getattr(signal, "SIGKILL", 9), "was killed by SIGKILL (out of memory?)"),
    (-signal.SIGSEGV, "was killed by SIGSEGV"),
    (1, "exited with code 1"),
    (UNGUARDED_MAIN_EXIT, "could not start (the main module runs a grid when imported)"),
    (None, "died"),
])
def test_exit_reason_names_the_signal_or_the_code(exitcode, text):
    assert exit_reason(exitcode) == text


START_METHODS = [m for m in ("forkserver", "spawn") if m in multiprocessing.get_all_start_methods()]


@pytest.mark.parametrize("method", START_METHODS)
def test_issue15_parent_sigkill_leaves_no_worker_nor_resource_tracker(survey, tmp_path, method):
    script = tmp_path / "parent.py"
    script.write_text(GUARDED, encoding="utf-8")
    out = tmp_path / "out"
    proc = process_tree.start([str(script), str(survey.folder), str(out)], out, **process_tree.hold_tiles(),
                              **{START_ENV: method})
    pids: list[int] = []
    try:
        process_tree.wait_running_tiles(out, 2, proc)  # both workers are inside a tile
        tree = process_tree.descendants(proc.pid)
        pids = list(tree)
        if method == "spawn":
            assert sum("spawn_main" in cmd for cmd in tree.values()) == 2, tree
        else:  # the fork server and the two workers it forked (which share its command line)
            assert sum("multiprocessing.forkserver" in cmd for cmd in tree.values()) == 3, tree
        assert any("resource_tracker" in cmd for cmd in tree.values()), tree
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        survivors = process_tree.wait_gone(pids, timeout=60)
        assert survivors == [], {pid: tree[pid] for pid in survivors}
    finally:
        proc.kill()
        proc.communicate(timeout=60)
        process_tree.kill_all(pids)


@pytest.mark.parametrize("method", START_METHODS)
def test_issue15_unguarded_script_gets_one_error_with_the_fix(survey, tmp_path, method):
    script = tmp_path / "mosaic_script.py"
    script.write_text(UNGUARDED, encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(script), str(survey.folder), str(out)], cwd=str(tmp_path),
                          env=process_tree.run_env(**{START_ENV: method}), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "finished" not in proc.stdout
    last = proc.stderr.strip().splitlines()
    first = next(line for line in last if line.startswith("RuntimeError"))
    assert first == (f"RuntimeError: worker processes cannot start: each one imports the main script "
                     f"'{script}', which calls run_grid_mode at top level. Put that call under "
                     "`if __name__ == \"__main__\":` (spawned worker processes import the main module), "
                     "or pass grid_workers=1:")
    assert '    if __name__ == "__main__":' in proc.stderr
    assert proc.stderr.count("Traceback") == 1  # the workers stopped quietly, without a traceback of their own
    assert "killed by" not in proc.stderr and "every tile failed" not in proc.stderr
    assert not list((out / "tiles").glob("tile_*.fits"))


def _exit_at_start(*args):
    os._exit(3)  # a worker that cannot start for a reason of its own (a broken install, say)


def test_workers_that_cannot_start_leave_the_tiles_to_this_process(survey, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(scheduler, "init_worker", _exit_at_start)
    with caplog.at_level(logging.INFO, logger="zemosaic_xp"):
        result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG, grid_workers=2)
    assert result.tiles_processed == result.tiles_total and result.failed_tiles == {}
    assert result.worker_crashes == 0 and result.retried_tiles == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("[GRID] worker processes cannot start: ")
    assert "exited with code 3 before running any task" in errors[0]
    assert errors[0].endswith("the tiles run in this process")
    pids = {r.getMessage().split("pid=")[1].split()[0] for r in caplog.records
            if "processed by worker pid=" in r.getMessage()}
    assert pids == {str(os.getpid())}


def test_start_method_default_and_override(monkeypatch):
    monkeypatch.delenv(START_ENV, raising=False)
    linux = sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()
    assert processes.start_method() == ("forkserver" if linux else "spawn")
    monkeypatch.setenv(START_ENV, " Spawn ")
    assert processes.start_method() == "spawn"
    assert processes.worker_context().get_start_method() == "spawn"
    assert processes.launcher_pid(processes.worker_context()) == os.getpid()
    assert processes.start_server() is False  # spawn: no server
    monkeypatch.setenv(START_ENV, "fork")
    with pytest.raises(ValueError, match=f"^{START_ENV} must be 'forkserver' or 'spawn', got 'fork'$"):
        processes.start_method()


def test_the_fork_server_preload_is_safe_to_fork_and_loads_what_tiles_need():
    # What the fork server imports: no thread may run in a process that forks, and the
    # tile code must be loaded (else each forked worker imports it again).
    code = ("import sys, threading, os; import zemosaic_xp.grid.worker_preload; "
            "print(threading.active_count(), os.environ['OMP_NUM_THREADS'], "
            "'zemosaic_xp.grid.worker' in sys.modules, 'scipy.ndimage' in sys.modules, "
            "any(m.startswith('reproject') for m in sys.modules), 'zemosaic_xp.grid.runner' in sys.modules)")
    env = process_tree.run_env()
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1", "True", "True", "False", "False"]


def test_a_fork_server_that_cannot_start_leaves_spawned_workers(survey, tmp_path, monkeypatch, caplog):
    from multiprocessing import forkserver

    def no_server():
        raise OSError("no Unix sockets here")

    monkeypatch.setenv(START_ENV, "forkserver")
    monkeypatch.setattr(forkserver, "ensure_running", no_server)
    with caplog.at_level(logging.INFO, logger="zemosaic_xp"):
        result = run_grid_mode(survey.folder, tmp_path, config=SMALL_CONFIG, grid_workers=2)
    assert result.tiles_processed == result.tiles_total and result.failed_tiles == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["[GRID] the fork server of the workers cannot start (no Unix sockets here); the workers "
                        "are spawned"]
    pids = {r.getMessage().split("pid=")[1].split()[0] for r in caplog.records
            if "processed by worker pid=" in r.getMessage()}
    assert pids and str(os.getpid()) not in pids  # the tiles ran in (spawned) worker processes


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="no forkserver here")
def test_overlapping_runs_share_the_fork_server_and_the_last_stops_it(monkeypatch):
    from multiprocessing import forkserver

    monkeypatch.setenv(START_ENV, "forkserver")

    def server_pid():
        return getattr(forkserver._forkserver, "_forkserver_pid", None)

    if server_pid() is not None:
        pytest.skip("a fork server that no run holds already runs in this process")
    assert processes.start_server() and processes.start_server()  # two runs of this process
    pid = server_pid()
    assert pid is not None and processes.launcher_pid(processes.worker_context()) == pid
    processes.stop_server()  # the first run ends: the other one's workers still need it
    assert server_pid() == pid and process_tree.alive([pid]) == [pid]
    processes.stop_server()  # returns at once: a daemon thread waits for the server to exit
    assert process_tree.wait_gone([pid], timeout=30) == []
    with processes._SERVER_LOCK:  # held by that thread until the server is reaped
        assert server_pid() is None


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="no forkserver here")
def test_a_run_starting_while_the_server_stops_gets_a_new_one(monkeypatch):
    from multiprocessing import forkserver

    monkeypatch.setenv(START_ENV, "forkserver")

    def server_pid():
        return getattr(forkserver._forkserver, "_forkserver_pid", None)

    if server_pid() is not None:
        pytest.skip("a fork server that no run holds already runs in this process")
    assert processes.start_server()
    first = server_pid()
    processes.stop_server()  # stopping in the background ...
    assert processes.start_server()  # ... and the next run waits for it, then starts its own
    second = server_pid()
    assert second is not None and second != first and process_tree.wait_gone([first], timeout=30) == []
    processes.stop_server(wait=True)
    assert server_pid() is None and process_tree.wait_gone([second], timeout=30) == []
