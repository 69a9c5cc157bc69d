"""The output folder's run lock: held by a live process, taken over from a dead one (issue 15, case 1)."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from zemosaic_xp.io import runlock
from zemosaic_xp.io.runlock import LOCK_NAME, FolderLock, FolderLockedError, LockHolder, write_lock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the tests kill and inspect POSIX processes")

_HOLD = textwrap.dedent("""
    import sys
    from zemosaic_xp.io.runlock import FolderLock
    lock = FolderLock(sys.argv[1], what=sys.argv[2]).acquire()
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes stdin
    lock.release()
""")


@pytest.fixture
def holder(tmp_path):
    """A second process that holds the lock of ``tmp_path / 'out'`` until the test ends."""
    procs = []

    def start(folder, what="grid run"):
        proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder), what], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_process_is_refused_with_the_holder_named(tmp_path, holder):
    out = tmp_path / "out"
    proc = holder(out)
    with pytest.raises(FolderLockedError, match="in use by another run") as info:
        FolderLock(out, what="grid run").acquire()
    message = str(info.value)
    assert f"'{out}'" in message and f"pid {proc.pid}" in message
    assert f"host '{socket.gethostname()}'" in message and "started 20" in message
    assert "\n" not in message and info.value.errno == errno.EBUSY
    proc.stdin.close()
    proc.wait(timeout=30)
    assert not (out / LOCK_NAME).exists()  # released: the file goes with the lock
    with FolderLock(out, what="grid run") as lock:
        assert lock.held and lock.taken_over is None


def test_a_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    pid = _dead_pid()
    stale = LockHolder(pid, socket.gethostname(), "2025-01-01 00:00:00", "grid run")
    (out / LOCK_NAME).write_text(stale.to_text(), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        lock = FolderLock(out, what="grid run", tag="[GRID]").acquire()
    try:
        assert lock.taken_over == stale
        assert f"[GRID] output folder '{out}' was locked by a run that is gone (grid run, pid {pid}" in caplog.text
        assert lock.holder().pid == os.getpid()
    finally:
        lock.release()


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    other = LockHolder(4242, "another-host.example", "2025-01-01 00:00:00", "grid run")
    (out / LOCK_NAME).write_text(other.to_text(), encoding="utf-8")
    with pytest.raises(FolderLockedError, match="another-host.example.*if that run is over, delete"):
        FolderLock(out, what="grid run").acquire()


def test_the_same_process_cannot_lock_a_folder_twice(tmp_path):
    with FolderLock(tmp_path, what="grid run") as first:
        assert first.held_by_this_process()
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):
            FolderLock(tmp_path, what="grid run").acquire()
        with write_lock(tmp_path, what="master tile write") as took:
            assert took is False  # the run of this process holds it: its writes pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_write_lock_waits_only_for_other_writes(tmp_path, holder, monkeypatch):
    monkeypatch.setattr(runlock, "_POLL_SEC", 0.01)
    holder(tmp_path / "a", what="grid run")
    with pytest.raises(FolderLockedError, match="grid run"):
        with write_lock(tmp_path / "a", what="master tile write", wait_sec=5.0):
            pass
    holder(tmp_path / "b", what="master tile write")
    with pytest.raises(FolderLockedError, match="master tile write"):
        with write_lock(tmp_path / "b", what="master tile write", wait_sec=0.1):
            pass


@pytest.mark.parametrize("alive", [True, False], ids=["live-holder", "dead-holder"])
def test_without_file_locks_an_exclusive_file_stands_in(tmp_path, monkeypatch, alive):
    # A file system without flock (some FUSE mounts): O_EXCL, and the pid decides.
    def no_locks(fd):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock, "_lock_fd", no_locks)
    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) if alive else None
    pid = live.pid if alive else _dead_pid()
    (out / LOCK_NAME).write_text(LockHolder(pid, socket.gethostname(), "2025-01-01 00:00:00", "grid run",
                                            runlock._proc_start(pid)).to_text(), encoding="utf-8")
    try:
        if alive:
            with pytest.raises(FolderLockedError, match=f"pid {pid}"):
                FolderLock(out, what="grid run").acquire()
        else:
            with FolderLock(out, what="grid run") as lock:
                assert lock.taken_over.pid == pid and lock.holder().pid == os.getpid()
                with pytest.raises(FolderLockedError):
                    FolderLock(out, what="grid run").acquire()
            assert not (out / LOCK_NAME).exists()
    finally:
        if live is not None:
            live.kill()
            live.wait()


def test_a_lock_kept_by_a_forked_child_of_a_dead_holder_says_so(tmp_path):
    # The holder forks (the child inherits the locked file), then dies: the lock stays held.
    child = textwrap.dedent("""
        import os, sys, time
        from zemosaic_xp.io.runlock import FolderLock
        FolderLock(sys.argv[1], what="grid run").acquire()
        forked = os.fork()
        if forked == 0:  # keeps the lock, lets go of the test's pipes
            for fd in (0, 1, 2):
                os.close(fd)
            time.sleep(60)
            os._exit(0)
        print(os.getpid(), forked, flush=True)
        os._exit(0)
    """)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", child, str(out)], capture_output=True, text=True, check=True)
    dead, forked = (int(v) for v in proc.stdout.split())
    try:
        with pytest.raises(FolderLockedError, match=rf"pid {dead} .*; that process is gone but one it started "
                                                    r"still holds the lock: stop it, or delete"):
            FolderLock(out, what="grid run").acquire()
    finally:
        (out / LOCK_NAME).unlink()  # the advice works: the next run locks a new file
        with FolderLock(out, what="grid run") as lock:
            assert lock.held
        os.kill(forked, signal.SIGKILL)
