"""One run at a time per output folder: a lock file that names its holder.

``zemosaic-xp grid`` / :func:`~zemosaic_xp.grid.run_grid_mode` and ``zemosaic-xp
stack`` / :func:`~zemosaic_xp.classic.write_master_tile` take the lock of the folder
they write into, ``<folder>/.zemosaic_xp.lock``, and release it in ``finally``.
A second run into a locked folder stops at once with :class:`FolderLockedError`,
whose one-line message names the folder and the holder (pid, host, start time).

The lock is the kernel's: ``flock`` on the lock file (``msvcrt.locking`` on Windows),
which the system releases when the holder dies, however it dies. The file's text
only *names* the holder. A file left by a run that is gone (SIGKILL, power loss) is
therefore taken over with a warning. One written on another host is not: its holder
cannot be checked from here, so the error says to delete the file once that run is
over. Where the file system has no locks at all, an ``O_CREAT | O_EXCL`` file stands
in, and a holder on this host whose pid is dead (or reused) counts as gone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["FolderLock", "FolderLockedError", "LockHolder", "LOCK_NAME", "write_lock"]

logger = logging.getLogger(__name__)

LOCK_NAME = ".zemosaic_xp.lock"
# Windows locks byte ranges, and a locked range cannot be read: lock one byte far past
# the holder's text so that others can still read who holds the folder.
_WIN_LOCK_OFFSET = 2**30
_POLL_SEC = 0.05
# A holder writes its text right after locking; a reader that finds the file empty
# waits this long for it before reporting an unknown holder.
_TEXT_WAIT_SEC = 1.0
# flock errors that mean "held by someone else" (EACCES: some NFS clients).
_HELD = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES)


class FolderLockedError(OSError):
    """Another run holds the output folder; the message names the folder and the holder.

    ``errno`` is ``EBUSY`` and ``filename`` the lock file; ``str()`` is the message alone.
    """

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a folder, as written in its lock file.

    Attributes
    ----------
    pid : int
        Process id of the holder.
    host : str
        Host name of the holder's machine.
    started : str
        Local time the lock was taken, ``YYYY-MM-DD HH:MM:SS``.
    what : str
        The run (``"zemosaic-xp grid"``, ``"write_master_tile"``, ...).
    proc_start : str or None
        The process's start time as the system records it (``/proc/<pid>/stat``),
        which tells a live holder from a new process that got the same pid.
    """

    pid: int
    host: str
    started: str
    what: str = ""
    proc_start: str | None = None

    def describe(self) -> str:
        """Return the holder in words, for messages.

        Returns
        -------
        str
            ``"<what>, pid 1234 on host 'name', started 2025-01-31 22:04:11"``.
        """
        if self.pid <= 0:
            return "its lock file does not name it yet"
        run = f"{self.what}, " if self.what else ""
        return f"{run}pid {self.pid} on host '{self.host}', started {self.started}"

    def to_text(self) -> str:
        """Return the JSON text written to the lock file.

        Returns
        -------
        str
            One line of JSON with the fields.
        """
        return json.dumps({"pid": self.pid, "host": self.host, "started": self.started, "what": self.what,
                           "proc_start": self.proc_start}, sort_keys=True) + "\n"

    @classmethod
    def from_text(cls, text: str) -> LockHolder | None:
        """Parse a lock file's text.

        Parameters
        ----------
        text : str
            What :meth:`to_text` wrote; anything else gives None.

        Returns
        -------
        LockHolder or None
            None for an empty or unreadable text.
        """
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), str(data["started"]), str(data.get("what", "")),
                       data.get("proc_start"))
        except (ValueError, KeyError, TypeError):
            return None


# A holder whose lock file is still empty (it has just locked, or died right then).
_UNKNOWN = LockHolder(0, "?", "?")


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # Field 22, counted after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _this_process(what: str) -> LockHolder:
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return LockHolder(os.getpid(), socket.gethostname(), now, what, _proc_start(os.getpid()))


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (True when it cannot be told)."""
    if sys.platform == "win32":  # pragma: no cover - os.kill would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _gone(holder: LockHolder) -> bool:
    """Whether the holder is a process of this host that no longer runs."""
    if holder.host != socket.gethostname():
        return False
    if not _pid_alive(holder.pid):
        return True
    now = _proc_start(holder.pid)
    return holder.proc_start is not None and now is not None and now != holder.proc_start


class FolderLock:
    """The run lock of one folder; see the module docstring.

    Parameters
    ----------
    folder : str or os.PathLike
        The output folder (created if missing); the lock file is
        ``<folder>/.zemosaic_xp.lock``.
    what : str
        The run, named to whoever finds the folder locked (``"zemosaic-xp grid"``).
    tag : str
        ZeMosaic log tag of the take-over warning (``"[GRID]"``).

    Attributes
    ----------
    path : Path
        The lock file.
    taken_over : LockHolder or None
        The holder of a stale lock this lock replaced.

    Examples
    --------
    >>> import tempfile
    >>> with FolderLock(tempfile.mkdtemp(), what="example"):
    ...     pass
    """

    def __init__(self, folder: str | os.PathLike, *, what: str, tag: str = "") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self.tag = tag
        self.taken_over: LockHolder | None = None
        self._fd: int | None = None
        self._exclusive = False  # the O_EXCL stand-in, where the file system has no locks

    @property
    def held(self) -> bool:
        """Whether this object holds the lock.

        Returns
        -------
        bool
            True between a successful :meth:`acquire` and :meth:`release`.
        """
        return self._fd is not None or self._exclusive

    def holder(self) -> LockHolder | None:
        """Read who the lock file names now.

        Returns
        -------
        LockHolder or None
            None when there is no lock file or it names nobody.
        """
        try:
            return LockHolder.from_text(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None

    def held_by_this_process(self) -> bool:
        """Whether the lock file names this very process (another lock object of it holds the folder).

        Returns
        -------
        bool
            True when pid, host and process start time are this process's.
        """
        holder = self.holder()
        me = _this_process(self.what)
        return holder is not None and (holder.pid, holder.host, holder.proc_start) == (me.pid, me.host,
                                                                                       me.proc_start)

    def acquire(self, *, wait_sec: float = 0.0, wait_for: tuple[str, ...] = ()) -> FolderLock:
        """Take the lock, or raise at once when a live run holds it.

        Parameters
        ----------
        wait_sec : float
            How long to wait for holders whose ``what`` is in ``wait_for`` (short
            writes of other processes); 0 = never wait.
        wait_for : tuple of str
            The ``what`` of holders worth waiting for; any other holder raises at once.

        Returns
        -------
        FolderLock
            ``self``, holding the lock.

        Raises
        ------
        FolderLockedError
            A live run holds the folder, or a lock file written on another host names
            a holder that cannot be checked from here.
        """
        if self.held:
            msg = f"the lock of '{self.folder}' is already held by this object"
            raise RuntimeError(msg)
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_sec
        while True:
            holder = self._try_acquire()
            if holder is None:
                return self
            if holder.what not in wait_for or time.monotonic() >= deadline:
                raise self._locked_error(holder)
            time.sleep(_POLL_SEC)

    def release(self) -> None:
        """Delete the lock file and release the lock; a no-op when not held."""
        fd, self._fd = self._fd, None
        exclusive, self._exclusive = self._exclusive, False
        if fd is None and not exclusive:
            return
        try:
            if fd is not None and sys.platform != "win32":
                # Unlinked while still locked, so that nobody locks a file about to vanish.
                with contextlib.suppress(OSError):
                    if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                        self.path.unlink()
            elif exclusive:
                self.path.unlink(missing_ok=True)
        finally:
            if fd is not None:
                os.close(fd)
                if sys.platform == "win32":  # pragma: no cover - an open file cannot be deleted there
                    with contextlib.suppress(OSError):
                        self.path.unlink()

    def __enter__(self) -> FolderLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _try_acquire(self) -> LockHolder | None:
        """Lock once; None when locked, else the holder that prevents it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        try:
            locked = _lock_fd(fd)
        except OSError as exc:
            os.close(fd)
            logger.debug("no file locks in '%s' (%s); using an exclusive lock file", self.folder, exc)
            return self._try_exclusive()
        if not locked:
            os.close(fd)
            return self._wait_text() or _UNKNOWN
        try:
            if sys.platform != "win32" and os.stat(self.path).st_ino != os.fstat(fd).st_ino:
                os.close(fd)  # the holder released and deleted the file meanwhile: start again
                return self._try_acquire()
        except FileNotFoundError:
            os.close(fd)
            return self._try_acquire()
        previous = LockHolder.from_text(_read_fd(fd))
        if previous is not None and previous.host != socket.gethostname():
            os.close(fd)
            return previous  # maybe alive there (file systems that do not share locks across hosts)
        self._note_takeover(previous)
        _write_fd(fd, _this_process(self.what).to_text())
        self._fd = fd
        return None

    def _try_exclusive(self) -> LockHolder | None:
        """The stand-in without file locks: create the file exclusively, take over a dead holder."""
        if self._stale_exclusive():
            self.path.unlink(missing_ok=True)  # a race with another taker-over is possible here
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            return self._wait_text() or _UNKNOWN
        try:
            _write_fd(fd, _this_process(self.what).to_text())
        finally:
            os.close(fd)
        self._exclusive = True
        return None

    def _stale_exclusive(self) -> bool:
        holder = self.holder()
        if holder is None or not _gone(holder):
            return False
        self._note_takeover(holder)
        return True

    def _note_takeover(self, previous: LockHolder | None) -> None:
        if previous is None:
            return
        self.taken_over = previous
        logger.warning("%s output folder '%s' was locked by a run that is gone (%s); lock taken over",
                       self.tag or "[LOCK]", self.folder, previous.describe())

    def _wait_text(self) -> LockHolder | None:
        """The holder's text; a holder that has just locked writes it a moment later."""
        deadline = time.monotonic() + _TEXT_WAIT_SEC
        while True:
            holder = self.holder()
            if holder is not None or time.monotonic() >= deadline:
                return holder
            time.sleep(_POLL_SEC)

    def _locked_error(self, holder: LockHolder) -> FolderLockedError:
        if holder.host not in (socket.gethostname(), "?"):
            fix = f"if that run is over, delete '{self.path}'"
        elif holder.pid > 0 and _gone(holder):
            # The named process died, but one it forked still holds the lock (it inherited the file).
            fix = (f"that process is gone but one it started still holds the lock: stop it, or delete "
                   f"'{self.path}'")
        else:
            fix = "wait for it to finish or write to another folder"
        msg = f"output folder '{self.folder}' is in use by another run ({holder.describe()}); {fix}"
        return FolderLockedError(errno.EBUSY, msg, str(self.path))


def _lock_fd(fd: int) -> bool:
    """Lock ``fd`` without blocking: True when locked, False when another holds it.

    Raises
    ------
    OSError
        The file system has no locks.
    """
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in _HELD:
                return False
            raise
        return True
    import msvcrt  # pragma: no cover - Windows

    os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)  # pragma: no cover
    try:  # pragma: no cover
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # pragma: no cover
        return False
    return True  # pragma: no cover


def _read_fd(fd: int) -> str:
    data = os.pread(fd, 4096, 0) if hasattr(os, "pread") else _read_start(fd)
    return data.decode("utf-8", "replace")


def _read_start(fd: int) -> bytes:  # pragma: no cover - Windows has no pread
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096)


def _write_fd(fd: int, text: str) -> None:
    data = text.encode("utf-8")
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.ftruncate(fd, len(data))


@contextlib.contextmanager
def write_lock(folder: str | os.PathLike, *, what: str, wait_sec: float = 30.0) -> Iterator[bool]:
    """Hold a folder's lock for one short write, unless this process already holds it.

    For writers of single files (:func:`~zemosaic_xp.classic.write_master_tile`): a
    run that holds the folder (``zemosaic-xp stack`` in this process) lets its own
    writes through; another process's short write with the same ``what`` is waited
    for (up to ``wait_sec``), so that processes writing files into one folder in
    parallel do not fail; any other holder raises at once.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder written into.
    what : str
        This writer, as named to others (``"master tile write"``).
    wait_sec : float
        How long to wait for another writer with the same ``what``.

    Yields
    ------
    bool
        True when this call took the lock, False when this process held it already.

    Raises
    ------
    FolderLockedError
        Another run holds the folder.
    """
    lock = FolderLock(folder, what=what)
    if lock.path.exists() and lock.held_by_this_process():
        yield False
        return
    lock.acquire(wait_sec=wait_sec, wait_for=(what,))
    try:
        yield True
    finally:
        lock.release()
