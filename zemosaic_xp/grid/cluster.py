"""Grid tiles on a dask.distributed cluster: connect, size, clean up.

Tiles are independent tasks, so a cluster needs nothing but an executor:
``run_grid_mode(..., executor=client.get_executor())``. This module adds what a
user of that executor would otherwise write by hand:

- :func:`connect_cluster`, a ``distributed.Client`` for a scheduler address
  (``tcp://host:8786``) or scheduler file, with one clear error when it cannot be
  reached or when ``distributed`` is not installed (``pip install "zemosaic-xp[dask]"``);
- :func:`executor_slots`, how many tiles to keep in flight on an executor: every
  worker thread of a dask cluster, ``max_workers`` of a local pool;
- :func:`release_worker_caches`, run at the end of a grid run, which empties the
  frame cache (:mod:`.framecache`) of every dask worker, since cluster workers
  outlive the run.

Where the work happens on a cluster: workers read the frames named in
``stack_plan.csv`` and write ``tiles/`` under the output folder, so both must be on a
path every worker sees (a shared file system); the driver reads the plan, solves the
frame normalisation and assembles the mosaic. A lost worker is dask's to handle: its
tasks are rescheduled on the others (``distributed.scheduler.allowed-failures``
times); a tile that still fails (``KilledWorker``) is retried once by the scheduler
of :mod:`.scheduler` and then reported as failed.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["connect_cluster", "executor_slots", "describe_executor", "release_worker_caches",
           "DASK_MISSING"]

logger = logging.getLogger(__name__)

DASK_MISSING = ('running tiles on a dask cluster needs dask.distributed: '
                'pip install "zemosaic-xp[dask]"')


def _client_of(executor: Executor | None) -> Any:
    """The ``distributed.Client`` behind ``client.get_executor()``, else None."""
    if executor is None or type(executor).__module__.split(".")[0] != "distributed":
        return None
    return getattr(executor, "_client", None)


def _warn(warn: Callable[..., Any] | None, message: str, *args: Any) -> None:
    """A warning of the cluster path: to ``warn`` (the run's progress, which logs it and
    sends it to the callback as ``WARN``), else to this module's logger."""
    if warn is not None:
        warn(message, *args)
    else:
        logger.warning(message, *args)


def executor_slots(executor: Executor, default: int, *, warn: Callable[..., Any] | None = None) -> int:
    """Count the tiles to keep in flight on ``executor``.

    Parameters
    ----------
    executor : concurrent.futures.Executor
        A dask ``ClientExecutor`` counts the threads of the cluster's workers now;
        a ``ThreadPoolExecutor`` / ``ProcessPoolExecutor`` its ``max_workers``.
    default : int
        Used when the executor does not tell (any other kind), or when a dask
        cluster cannot be asked (a warning).
    warn : callable, optional
        ``warn(fmt, *args)`` receives that warning (the run passes its progress, so
        the callback gets it as ``WARN``); default: logged here.

    Returns
    -------
    int
        At least 1.
    """
    client = _client_of(executor)
    if client is not None:
        try:
            threads = sum(int(n) for n in client.nthreads().values())
        except Exception as exc:  # noqa: BLE001 - a cluster that cannot answer is sized by default
            _warn(warn, "[GRID] cannot ask the dask cluster its size (%s); %d tile(s) in flight", exc, default)
            threads = 0
        return max(1, threads or int(default))
    return max(1, int(getattr(executor, "_max_workers", None) or default))


def describe_executor(executor: Executor) -> str:
    """Describe ``executor`` in a few words, for the logs.

    Parameters
    ----------
    executor : concurrent.futures.Executor
        The executor the tiles run on.

    Returns
    -------
    str
        ``"dask cluster tcp://…, 2 worker(s)"`` for a dask executor (``"dask cluster"``
        when the scheduler does not answer), else ``"external <class name>"``.
    """
    client = _client_of(executor)
    if client is None:
        return f"external {type(executor).__name__}"
    try:
        address = client.scheduler.address
        workers = len(client.nthreads())
    except Exception:  # noqa: BLE001 - descriptive only
        return "dask cluster"
    return f"dask cluster {address}, {workers} worker(s)"


def _clear_frame_cache() -> int:
    from ..io.framecache import FRAMES

    FRAMES.clear()
    return os.getpid()


def release_worker_caches(executor: Executor | None, *, warn: Callable[..., Any] | None = None) -> None:
    """Empty the frame cache of every worker of a dask ``executor`` (no-op otherwise).

    The cache is per process (up to 256 MB): harmless in the run's own pool, which
    ends with the run, but a cluster's workers stay up for other work.

    Parameters
    ----------
    executor : concurrent.futures.Executor or None
        The run's executor; anything but a dask ``ClientExecutor`` (None included)
        is left alone. A failure is a warning, never raised.
    warn : callable, optional
        ``warn(fmt, *args)`` receives that warning (as in :func:`executor_slots`).
    """
    client = _client_of(executor)
    if client is None:
        return
    try:
        client.run(_clear_frame_cache)
    except Exception as exc:  # noqa: BLE001 - best effort: never fail a finished run
        _warn(warn, "[GRID] could not clear the frame caches of the dask workers (%s)", exc)


@contextmanager
def connect_cluster(address: str | os.PathLike, *, timeout: float = 10.0) -> Iterator[Any]:
    """Connect a ``distributed.Client`` to an existing cluster; close it on exit.

    Parameters
    ----------
    address : str or path
        ``tcp://host:port`` (any dask address: ``tls://``, ``inproc://``, ...) or the
        path of a scheduler file (``dask scheduler --scheduler-file FILE``).
    timeout : float, default 10.0
        Seconds to wait for the scheduler before giving up.

    Yields
    ------
    distributed.Client
        Pass ``client.get_executor()`` to :func:`~.runner.run_grid_mode`.

    Raises
    ------
    ImportError
        dask.distributed is not installed.
    FileNotFoundError
        ``address`` names a scheduler file that does not exist.
    ConnectionError
        The scheduler did not answer within ``timeout`` (message names the address).
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(DASK_MISSING) from exc
    text = os.fspath(address)
    is_url = "://" in text
    if not is_url and not text.endswith(".json") and not Path(text).exists() and ":" in text:
        text, is_url = f"tcp://{text}", True  # host:port
    if is_url:
        kwargs: dict[str, Any] = {"address": text}
        where = f"the dask scheduler at {text}"
    else:
        path = Path(text)
        if not path.is_file():
            msg = f"dask scheduler file '{path}' does not exist"
            raise FileNotFoundError(msg)
        kwargs = {"scheduler_file": str(path)}
        where = f"the dask scheduler of '{path}'"
    try:
        client = Client(timeout=timeout, set_as_default=False, **kwargs)
    except (OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"cannot reach {where} within {timeout:g} s ({reason})"
        raise ConnectionError(msg) from exc
    except ValueError as exc:  # unreadable scheduler file, malformed address
        msg = f"cannot use {where}: {exc}"
        raise ConnectionError(msg) from exc
    try:
        yield client
    finally:
        client.close()
