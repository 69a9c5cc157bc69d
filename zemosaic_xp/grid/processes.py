"""The life of a grid worker process: how it starts, what ends it, how its end is told.

:mod:`.scheduler` runs tiles on a spawn-context ``ProcessPoolExecutor``; this module holds
what makes those processes safe to use from a terminal, a script or a GUI:

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

__all__ = ["init_worker", "sigint_blocked", "exit_if_bootstrapping", "exit_reason", "unguarded_main_message",
           "UNGUARDED_MAIN_EXIT"]

#: Exit code of a worker that stopped because the main module it imports runs a grid
#: (no ``if __name__ == "__main__":`` guard); 78 is ``EX_CONFIG`` of sysexits.h.
UNGUARDED_MAIN_EXIT = 78
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_WATCH_SEC = 1.0  # how often the watchdog checks the parent pid (the pipe's EOF wakes it at once)


def init_worker(parent_pid: int = 0, watch: Any = None) -> None:
    """Process-pool initializer: ignore Ctrl-C, one compute thread, exit with the parent.

    Parameters
    ----------
    parent_pid : int, optional
        The process that started the pool; 0 = do not watch it.
    watch : multiprocessing.connection.Connection, optional
        The read end of a pipe whose write end only the parent holds: its EOF means
        the parent closed it or died, and the worker exits at once.

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
    for name in _THREAD_ENV:
        os.environ[name] = "1"
    if parent_pid:
        _exit_with_parent(parent_pid, watch)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def _exit_with_parent(parent_pid: int, watch: Any) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still covers it
    if os.getppid() != parent_pid:  # load-bearing: the parent died before prctl took effect
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
        if os.name == "posix" and os.getppid() != parent_pid:  # re-parented: the parent died
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

    Raises
    ------
    SystemExit
        With :data:`UNGUARDED_MAIN_EXIT`, only in that case.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise SystemExit(UNGUARDED_MAIN_EXIT)


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
