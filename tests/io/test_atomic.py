"""Atomic writes that run out of room name the file and the cause, and leave nothing (issue 15, case 13)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from zemosaic_xp.io import atomic
from zemosaic_xp.io.atomic import FileWriteError, atomic_path, remove_temp_files, temp_glob

# A child process with a file-size limit; SIGXFSZ ignored, so that write() fails with
# EFBIG instead of killing it.
_FSIZE_CHILD = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np
    from zemosaic_xp.io.fits_write import write_fits
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        write_fits(sys.argv[1], np.ones((100, 100), np.float32))
    except OSError as exc:
        print(type(exc).__name__, exc.errno, exc)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_file_size_limit_names_the_file_and_efbig(tmp_path):
    target = tmp_path / "master.fits"
    target.write_bytes(b"older file")
    out = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(target)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}).stdout
    # before: "OSError: 10000 requested and 4280 written" (NumPy's short write, no errno, no file)
    assert out.startswith(f"FileWriteError {errno.EFBIG} cannot write '{target}': the file would exceed this "
                          f"process's file-size limit of 19.5 KiB (`ulimit -f`) [EFBIG]")
    assert "nothing was written under that name" in out
    assert target.read_bytes() == b"older file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.fits"]


def test_a_full_disk_names_the_file_and_enospc(tmp_path):
    target = tmp_path / "mosaic.fits"
    with pytest.raises(FileWriteError, match=r"cannot write '.*mosaic.fits': no space left on the device of "
                                             r"'.*' \(.* free\) \[ENOSPC\]") as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_a_short_write_without_errno_is_diagnosed(tmp_path, monkeypatch):
    # NumPy's tofile reports "N requested and M written" without an errno: the free
    # space of the file system tells a full disk.
    monkeypatch.setattr(atomic, "_free_bytes", lambda folder: 0)
    monkeypatch.setattr(atomic, "_fsize_limit", lambda: None)
    with pytest.raises(FileWriteError, match=r"'.*tile_0001.fits': no space left .*\(0 bytes free\) \[ENOSPC\]"):
        _short_write(tmp_path / "tile_0001.fits")
    monkeypatch.setattr(atomic, "_free_bytes", lambda folder: 10**12)
    with pytest.raises(FileWriteError, match=r"the write stopped short \(2880 requested and 0 written\) \[EIO\]"):
        _short_write(tmp_path / "tile_0001.fits")
    assert list(tmp_path.iterdir()) == []


def _short_write(path):
    with atomic_path(path):
        raise OSError("2880 requested and 0 written")


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError, match="denied"):
        with atomic_path(tmp_path / "a.fits"):
            raise PermissionError(errno.EACCES, "denied")
    assert list(tmp_path.iterdir()) == []


def test_remove_temp_files_takes_only_temporary_files_of_the_name(tmp_path):
    keep = [tmp_path / "mosaic_grid.fits", tmp_path / ".mosaic_grid.fits.tmp", tmp_path / "other.tmp",
            tmp_path / ".mosaic_grid_preview.png.x.tmp"]
    stale = [tmp_path / ".mosaic_grid.fits.ab12cd.tmp", tmp_path / ".mosaic_grid.fits.ab12cd.x.tmp"]
    for path in keep + stale:
        path.write_bytes(b"")
    assert temp_glob("a.fits") == ".a.fits.*.tmp"
    assert sorted(remove_temp_files(tmp_path, "mosaic_grid.fits")) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(keep)
    assert remove_temp_files(tmp_path / "missing") == []
