"""Atomic file replacement: write to a temporary name beside the target, then rename.

A crash or an exception while writing never leaves a half-written file under the
final name, and an older file there stays intact until the new one is complete. A
write that fails for lack of room (a full disk, a quota, the process's file-size
limit) raises :class:`FileWriteError`, which names the file and the cause; the
temporary file is removed. A process killed while writing cannot remove its
temporary file: :func:`remove_temp_files` clears them, called by the next run into
the folder while it holds the folder's lock (:mod:`.runlock`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "FileWriteError", "remove_temp_files", "temp_glob"]

# NumPy's ``tofile`` (astropy writes image data with it) reports a short write without
# an errno: "25600 requested and 24160 written".
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
_ROOM_ERRNOS = {errno.ENOSPC: "ENOSPC", errno.EFBIG: "EFBIG", getattr(errno, "EDQUOT", -1): "EDQUOT"}
# A short write this close to RLIMIT_FSIZE was stopped by it.
_FSIZE_SLACK_BYTES = 1 << 16


class FileWriteError(OSError):
    """A file could not be written (disk full, quota, file-size limit); the message names it and the cause.

    ``errno`` is ``ENOSPC``, ``EDQUOT`` or ``EFBIG`` (``EIO`` for a short write of
    unknown cause) and ``filename`` the file; ``str()`` is the message alone.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def temp_glob(name: str = "*") -> str:
    """Return the glob pattern of the temporary files :func:`atomic_path` makes for ``name``.

    Parameters
    ----------
    name : str
        The final file name, or a glob of names (``"mosaic_grid*"``).

    Returns
    -------
    str
        ``".<name>.*.tmp"``.
    """
    return f".{name}.*.tmp"


def remove_temp_files(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Delete the temporary files that killed writers of ``name`` left in ``folder``.

    Call it only while no live process writes there (holding the folder's run lock):
    a live writer's temporary file looks the same.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder; nothing happens when it does not exist.
    name : str
        The final file name, or a glob of names; default every file.

    Returns
    -------
    list of Path
        The files removed.
    """
    removed = []
    for path in Path(folder).glob(temp_glob(name)):
        with contextlib.suppress(OSError):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def _bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns


def _fsize_limit() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return int(st.f_bavail * st.f_frsize)


def _room_error(path: Path, tmp: Path, exc: OSError) -> FileWriteError | None:
    """The :class:`FileWriteError` for a write that ran out of room; None for other errors."""
    code = exc.errno
    if code not in _ROOM_ERRNOS and not (code is None and _SHORT_WRITE.search(str(exc))):
        return None
    written = tmp.stat().st_size if tmp.exists() else 0
    limit = _fsize_limit()
    free = _free_bytes(path.parent)
    if code is None:  # a short write: find out why
        if limit is not None and written >= limit - _FSIZE_SLACK_BYTES:
            code = errno.EFBIG
        elif free is not None and free < _FSIZE_SLACK_BYTES:
            code = errno.ENOSPC
        else:
            code = errno.EIO
    if code == errno.EFBIG and limit is not None:
        cause = f"the file would exceed this process's file-size limit of {_bytes(limit)} (`ulimit -f`)"
    elif code == errno.EFBIG:
        cause = "the file is larger than the file system allows"
    elif code == errno.ENOSPC:
        room = f" ({_bytes(free)} free)" if free is not None else ""
        cause = f"no space left on the device of '{path.parent}'{room}"
    elif code == getattr(errno, "EDQUOT", None):
        cause = f"the disk quota of '{path.parent}' is exhausted"
    else:
        cause = f"the write stopped short ({exc})"
    name = _ROOM_ERRNOS.get(code, "EIO")
    msg = (f"cannot write '{path}': {cause} [{name}] after {_bytes(written)}; nothing was written under "
           f"that name (an older file there is unchanged)")
    return FileWriteError(code, msg, str(path))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; rename it to ``path`` on success.

    The directory is created if needed. On an exception the temporary file is removed
    and the exception propagates; one that ran out of room (ENOSPC, EDQUOT, EFBIG, or a
    short write) becomes a :class:`FileWriteError` naming ``path`` and the cause. The
    new file gets the permissions a plain ``open`` would give it (``0o666`` minus the
    umask), not ``mkstemp``'s 0600.

    Parameters
    ----------
    path : str or os.PathLike
        Final name of the file. An existing file there is replaced only when the
        ``with`` block completes without an exception.

    Yields
    ------
    pathlib.Path
        An empty temporary file beside ``path`` (hidden name
        ``.<name>.<random>.tmp``, :func:`temp_glob`) for the caller to write.

    Raises
    ------
    FileWriteError
        The file could not be written for lack of room (the message names it and the
        cause: disk full, quota, the process's file-size limit).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        error = _room_error(path, tmp, exc)
        tmp.unlink(missing_ok=True)
        if error is None:
            raise
        raise error from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
