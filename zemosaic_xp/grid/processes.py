"""The life of a grid worker process: how it starts, what ends it, how its end is told.

:mod:`.scheduler` runs tiles on a ``ProcessPoolExecutor``; this module holds how its
processes start and what makes them safe to use from a terminal, a script or a GUI:

- **Start-up.** On Linux the workers are forked from a *fork server*
  (:func:`worker_context`, :func:`start_server`): a clean single-threaded process, started
  when a run begins, that imports what tiles need once (:mod:`.worker_preload`) while the
  run reads its headers; each worker is then a fork of it, ready in milliseconds, and
  still a process of its own (a crashing tile kills only its worker). Elsewhere (Windows,
  macOS, whose frameworks are not safe to fork) or with ``ZEMOSAIC_XP_GRID_START=spawn``
  each worker is a fresh interpreter that imports everything itself. The server is
  stopped at the end of the run that started it (:func:`stop_server`).

- **Ctrl-C.** A terminal sends SIGINT to the whole process group, workers included.
  Workers ignore it (:func:`init_worker`), so the parent alone decides: its first Ctrl-C
  stops after the running tiles, a second aborts. A new worker starts with SIGINT
  blocked (:func:`sigint_blocked` around the submits that spawn it, whose mask the
  child inherits), so a Ctrl-C while it imports cannot kill it either.
- **Parent death.** A worker blocks in the pool's queue, whose pipe it holds both ends
  of, so it would outlive a parent killed by SIGKILL or the OOM killer (and keep the
  multiprocessing resource tracker alive, which exits when the last holder of its pipe
  is gone). A worker therefore exits with its parent: on Linux by
  ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, and everywhere by a watchdog thread that waits on
  a pipe from the parent (EOF: the parent closed it or died) and checks the parent pid.
- **An unguarded ``__main__``.** A spawned worker imports the caller's main module. A
  script that calls ``run_grid_mode`` at top level, without
  ``if __name__ == "__main__":``, would run again in every worker.
  :func:`exit_if_bootstrapping` ends such a worker at once with
  :data:`UNGUARDED_MAIN_EXIT`, and the parent raises :func:`unguarded_main_message`.
- **How a worker ended.** :func:`exit_reason` tells a signal (``killed by SIGKILL``)
  from an exit code, so that a failed tile never blames the OS for what was not a kill.

Only the standard library is imported here: the initializer is the first thing a new
worker unpickles, before the tile code and its astropy imports.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from ..compute_threads import THREAD_ENV

__all__ = ["init_worker", "sigint_blocked", "exit_if_bootstrapping", "exit_reason", "unguarded_main_message",
           "UNGUARDED_MAIN_EXIT", "START_ENV", "start_method", "worker_context", "start_server", "stop_server",
           "launcher_pid"]

#: Exit code of a worker that stopped because the main module it imports runs a grid
#: (no ``if __name__ == "__main__":`` guard); 78 is ``EX_CONFIG`` of sysexits.h.
UNGUARDED_MAIN_EXIT = 78
#: Environment variable choosing how worker processes start: ``forkserver`` or ``spawn``
#: (default: ``forkserver`` on Linux, ``spawn`` elsewhere).
START_ENV = "ZEMOSAIC_XP_GRID_START"
#: What the fork server imports before it forks the first worker.
_PRELOAD = ["zemosaic_xp.grid.worker_preload"]
# The one piece of module state: the runs of this process that hold the fork server
# (multiprocessing keeps one server per process; the last run to finish stops it).
_SERVER_USERS: list[None] = []
_SERVER_LOCK = threading.Lock()
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WATCH_SEC = 1.0  # how often the watchdog checks the parent pid (the pipe's EOF wakes it at once)


def init_worker(parent_pid: int = 0, watch: Any = None, launcher: int = 0) -> None:
    """Process-pool initializer: ignore Ctrl-C, one compute thread, exit with the parent.

    Parameters
    ----------
    parent_pid : int, optional
        The process that started the pool; 0 = do not watch it.
    watch : multiprocessing.connection.Connection, optional
        The read end of a pipe whose write end only the parent holds: its EOF means
        the parent closed it or died, and the worker exits at once.
    launcher : int, optional
        The process this worker was forked from when that is not ``parent_pid``: the
        fork server (:func:`launcher_pid`), which exits when the parent does. 0 =
        ``parent_pid``; -1 = unknown (the pipe alone tells the parent's death).

    Notes
    -----
    The parent-death signal follows the *thread* that started the worker; the
    scheduler starts its workers from the thread that runs it and shuts the pool down
    before that thread returns. The thread-count environment variables cover libraries
    imported later; ``threadpoolctl`` (when installed) also limits a BLAS already
    loaded. The grid's hot paths do not use BLAS threads.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked only while starting
    for name in THREAD_ENV:
        os.environ[name] = "1"
    if parent_pid:
        _exit_with_parent(launcher or parent_pid, watch)  # -1: no pid to check
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def _exit_with_parent(parent_pid: int, watch: Any) -> None:
    """Exit when ``parent_pid`` (the process that forked this one) or the pipe's writer is gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still covers it
    if parent_pid > 0 and os.getppid() != parent_pid:  # load-bearing: the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, watch), name="zemosaic-parent-watch",
                     daemon=True).start()


def _watch_parent(parent_pid: int, watch: Any) -> None:
    """Return never: ``os._exit`` once the parent is gone (nobody is left to report to)."""
    while True:
        try:
            if watch is not None and watch.poll(_WATCH_SEC):
                break  # nothing is ever sent: readable means EOF
            if watch is None:
                threading.Event().wait(_WATCH_SEC)
        except (OSError, EOFError, ValueError):
            break
        if os.name == "posix" and parent_pid > 0 and os.getppid() != parent_pid:  # re-parented: it died
            break
    os._exit(1)


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread for the duration; a worker spawned inside inherits it.

    A Ctrl-C that arrives meanwhile is not lost: another thread takes it, or it is
    delivered when the block ends. Without ``pthread_sigmask`` (Windows) this does
    nothing, and a worker ignores SIGINT from its initializer on.

    Yields
    ------
    None
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def exit_if_bootstrapping() -> None:
    """End this process if it is a spawned worker still importing the caller's main module.

    Called first by :func:`~.runner.run_grid_mode`. In a spawned worker that imports a
    main script without an ``if __name__ == "__main__":`` guard, the script's grid run
    would start again (and start workers of its own); the worker exits quietly with
    :data:`UNGUARDED_MAIN_EXIT` instead, which the parent turns into one clear error.

    Notes
    -----
    The process ends by ``os._exit``: a worker forked by the fork server would turn a
    ``SystemExit`` into exit code 1, and nothing of the run has started in it yet.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(UNGUARDED_MAIN_EXIT)


def exit_reason(exitcode: int | None) -> str:
    """Say how a worker process ended, from its exit code.

    Parameters
    ----------
    exitcode : int or None
        ``multiprocessing.Process.exitcode``: negative for a signal, None when unknown.

    Returns
    -------
    str
        E.g. ``"was killed by SIGKILL (out of memory?)"``, ``"was killed by SIGSEGV"``,
        ``"exited with code 1"`` or ``"died"``.
    """
    if exitcode is None:
        return "died"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if -exitcode == getattr(signal, "SIGKILL", -1) else ""
        return f"was killed by {name}{hint}"
    if exitcode == UNGUARDED_MAIN_EXIT:
        return "could not start (the main module runs a grid when imported)"
    return f"exited with code {exitcode}"


def unguarded_main_message() -> str:
    """The error of a run whose workers re-run the caller's unguarded main script.

    Returns
    -------
    str
        Names the script and shows the ``if __name__ == "__main__":`` fix.
    """
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    where = f"the main script '{script}'" if script else "the main module"
    return (f"worker processes cannot start: each one imports {where}, which calls run_grid_mode "
            "at top level. Put that call under `if __name__ == \"__main__\":` (spawned worker "
            "processes import the main module), or pass grid_workers=1:\n\n"
            "    if __name__ == \"__main__\":\n"
            "        result = run_grid_mode(...)\n")


def start_method() -> str:
    """How worker processes start in this process: ``"forkserver"`` or ``"spawn"``.

    Returns
    -------
    str
        :data:`START_ENV` when it names an available method; else ``"forkserver"`` on
        Linux (when available) and ``"spawn"`` elsewhere.

    Raises
    ------
    ValueError
        :data:`START_ENV` names something else.
    """
    methods = multiprocessing.get_all_start_methods()
    asked = os.environ.get(START_ENV, "").strip().lower()
    if asked:
        if asked not in ("forkserver", "spawn"):
            msg = f"{START_ENV} must be 'forkserver' or 'spawn', got {asked!r}"
            raise ValueError(msg)
        return asked if asked in methods else "spawn"
    return "forkserver" if sys.platform.startswith("linux") and "forkserver" in methods else "spawn"


def worker_context() -> Any:
    """The multiprocessing context of grid worker processes (see :func:`start_method`).

    Returns
    -------
    multiprocessing.context.BaseContext
        Never ``fork``: CUDA and the run's threads forbid forking this process.
    """
    return multiprocessing.get_context(start_method())


def start_server() -> bool:
    """Start the fork server now, so that its imports overlap the run's setup.

    The server imports :mod:`.worker_preload` (what tiles need) with SIGINT blocked,
    which the workers it forks inherit until :func:`init_worker` ignores it: a Ctrl-C
    cannot kill a worker while it starts. Nothing happens with ``spawn``. Runs that
    overlap in one process share the server: each call that returns True must be
    matched by one :func:`stop_server`, and the last one stops it.

    Returns
    -------
    bool
        True when the caller holds the server now. False with ``spawn``, when a server
        this module did not start already runs (not ours to stop), or when it cannot
        start (an ``OSError``, e.g. no Unix sockets): the scheduler then spawns the
        workers and says so.
    """
    if start_method() != "forkserver":
        return False
    from multiprocessing import forkserver

    with _SERVER_LOCK:
        running = getattr(forkserver._forkserver, "_forkserver_pid", None) is not None
        if running and not _SERVER_USERS:
            return False
        try:
            _ensure_server()
        except OSError:
            return False
        _SERVER_USERS.append(None)
        return True


def stop_server(*, wait: bool = False) -> None:
    """Release the server taken by :func:`start_server`; the last holder stops it.

    Its imports would otherwise hold memory for the rest of a long-lived caller's
    life (a GUI); a process that exits stops it anyway. Call it once the workers it
    forked have exited: they die with it.

    Parameters
    ----------
    wait : bool
        Return once the server has exited. By default the stop is asked at once and
        awaited by a daemon thread: the server's own interpreter shutdown (freeing
        astropy, numba, LLVM: ~0.4 s) no longer delays the end of the run. A
        :func:`start_server` meanwhile waits for that thread (one server at a time).
    """
    _SERVER_LOCK.acquire()
    try:
        if _SERVER_USERS:
            _SERVER_USERS.pop()
        if _SERVER_USERS:
            _SERVER_LOCK.release()
            return
    except BaseException:
        _SERVER_LOCK.release()
        raise
    if wait:
        _stop_and_release()
    else:
        threading.Thread(target=_stop_and_release, name="zemosaic-xp-forkserver-stop", daemon=True).start()


def _stop_and_release() -> None:
    """Stop the fork server (waits for it to exit), then release :data:`_SERVER_LOCK`."""
    from multiprocessing import forkserver

    try:
        stop = getattr(forkserver._forkserver, "_stop", None)
        if stop is not None:
            try:
                stop()
            except OSError:
                pass  # already gone
    finally:
        _SERVER_LOCK.release()


def _ensure_server() -> None:
    """Start the fork server with our preload unless it runs (OSError if it cannot)."""
    from multiprocessing import forkserver

    if getattr(forkserver._forkserver, "_forkserver_pid", None) is None:
        forkserver.set_forkserver_preload(list(_PRELOAD))  # not the default "__main__"
    with sigint_blocked():
        forkserver.ensure_running()


def launcher_pid(context: Any) -> int:
    """The process the workers of ``context`` are forked from (for :func:`init_worker`).

    Parameters
    ----------
    context : multiprocessing.context.BaseContext
        From :func:`worker_context`.

    Returns
    -------
    int
        The fork server's pid for ``forkserver`` (started here if needed; -1 if this
        Python does not say it), else this process's.
    """
    if context.get_start_method() != "forkserver":
        return os.getpid()
    from multiprocessing import forkserver

    with _SERVER_LOCK:
        _ensure_server()
        return int(getattr(forkserver._forkserver, "_forkserver_pid", None) or -1)
