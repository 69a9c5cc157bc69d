"""Master tiles written safely (issue 15): the folder's run lock (case 1), a file-size limit
(case 13) and temporary files left by a killed writer (case 16), through ``write_master_tile``
and ``zemosaic-xp stack``."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp import StackConfig, stack_master_tile, write_master_tile
from zemosaic_xp.cli import main
from zemosaic_xp.io import runlock
from zemosaic_xp.io.runlock import LOCK_NAME, FolderLockedError
from zemosaic_xp.synthetic import make_stack

from .helpers import write_frames

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and resource limits")

_ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
_HOLD = textwrap.dedent("""
    import sys
    from zemosaic_xp.io.runlock import FolderLock
    lock = FolderLock(sys.argv[1], what=sys.argv[2]).acquire()
    print("locked", flush=True)
    sys.stdin.read()
    lock.release()
""")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    frames = make_stack(n_frames=5, shape=(32, 24), seed=5, cosmic_rays_per_frame=2).frames
    return write_frames(tmp_path_factory.mktemp("lights"), frames)


@pytest.fixture(scope="module")
def master(paths):
    return stack_master_tile(paths, StackConfig(), backend="numpy")


@pytest.fixture
def holder():
    """Start a second process that holds a folder's lock; it lets go when ``release(proc)`` is called."""
    procs = []

    def start(folder, what):
        proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder), what], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=_ENV)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        if not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_stack_into_a_folder_held_by_another_run_stops_at_once(paths, tmp_path, holder, capsys):
    out = tmp_path / "out"
    proc = holder(out, "grid run")
    assert main(["--quiet", "stack", *paths, "-o", str(out / "master.fits"), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"zemosaic-xp: error: output folder '{out}' is in use by another run (grid run, "
                             f"pid {proc.pid} on host '{os.uname().nodename}', started 20")
    assert not (out / "master.fits").exists()


def test_write_master_tile_respects_the_lock(master, tmp_path, holder, monkeypatch):
    monkeypatch.setattr(runlock, "_POLL_SEC", 0.01)
    holder(tmp_path / "a", "zemosaic-xp stack")
    with pytest.raises(FolderLockedError, match=r"in use by another run \(zemosaic-xp stack, pid"):
        write_master_tile(master, tmp_path / "a" / "master.fits")
    # Another process's master-tile write is waited for, not refused.
    other = holder(tmp_path / "b", "master tile write")
    threading.Timer(0.3, other.stdin.close).start()
    path = write_master_tile(master, tmp_path / "b" / "master.fits")
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul[0].data, master.image)
    assert not (tmp_path / "b" / LOCK_NAME).exists()


def test_stack_removes_temporary_files_of_a_killed_write(paths, tmp_path):
    out = tmp_path / "master.fits"
    leftover = tmp_path / ".master.fits.k1ll3d.tmp"
    leftover.write_bytes(bytes(4096))
    assert main(["--quiet", "stack", *paths, "-o", str(out), "--backend", "numpy"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.fits"]


def test_a_file_size_limit_names_the_master_tile(paths, tmp_path):
    # 32 x 24 float32 + ALPHA + headers: more than 12 kB.
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, resource.RLIM_INFINITY))

    out = tmp_path / "master.fits"
    proc = subprocess.run([sys.executable, "-c", "import sys; from zemosaic_xp.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", "--quiet", "stack", *paths, "-o", str(out),
                           "--backend", "numpy"], capture_output=True, text=True, env=_ENV, preexec_fn=preexec)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"zemosaic-xp: error: cannot write '{out}': the file would exceed this process's "
                           f"file-size limit of 11.7 KiB (`ulimit -f`) [EFBIG]")
    assert list(tmp_path.iterdir()) == []
