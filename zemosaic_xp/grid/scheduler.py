"""Run tile tasks in this process or on an executor, surviving failing tiles and dead workers.

- A tile whose task reports an error is logged (``[GRID] Tile X failed with error:
  ...``) and retried once; if the retry fails too it is listed as failed and the run
  goes on.
- A worker that dies (a signal such as the OOM killer's SIGKILL, or an exit) breaks a
  ``ProcessPoolExecutor`` and fails every pending future. The scheduler then rebuilds
  the pool and resubmits: tiles that had not started go back to the queue unchanged;
  tiles that were running (their marker is in ``tiles/.running``) are retried once,
  *one at a time*, so that a tile that kills its worker again is identified and failed
  without taking others with it. Messages say how the worker ended (the signal or the
  exit code: :func:`~.processes.exit_reason`).
- Workers that cannot start are not retried: when they re-run a main script without
  ``if __name__ == "__main__":`` the run raises :class:`RuntimeError` with the fix;
  when they exit before any task for another reason, the remaining tiles run in this
  process (logged as an error).
- ``cancel`` (anything with ``is_set()``) stops submitting; tiles already running
  finish and are kept, so a rerun resumes from them. An exception that is not an
  ``Exception`` (a second Ctrl-C's ``KeyboardInterrupt``) ends the worker processes at
  once when it leaves the ``with`` block.

Worker processes ignore SIGINT and exit with their parent (:mod:`.processes`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .processes import (
    UNGUARDED_MAIN_EXIT,
    exit_reason,
    init_worker,
    launcher_pid,
    sigint_blocked,
    unguarded_main_message,
    worker_context,
)
from .worker import RUNNING_DIR, TileOutcome, TileTask, run_tile_task, warm_up

__all__ = ["TileScheduler", "ScheduleReport"]

logger = logging.getLogger(__name__)

_MAX_ATTEMPTS = 2
_POLL_SEC = 0.5
Emit = Callable[..., None]


@dataclass
class ScheduleReport:
    """What happened while the tiles ran.

    Attributes
    ----------
    failed : dict of int to str
        Tiles that failed on every attempt, with the last error.
    retried : list of int
        Tiles that ran a second time (after an error or a worker crash).
    crashes : int
        Times a worker process died (pool rebuilt each time).
    start_failed : bool
        Worker processes exited before running any task; the tiles ran in this process.
    cancelled : bool
        A cancel was seen: tiles not started were not run.
    """

    failed: dict[int, str] = field(default_factory=dict)
    retried: list[int] = field(default_factory=list)
    crashes: int = 0
    start_failed: bool = False
    cancelled: bool = False


def _log_emit(message: str, *args: Any, level: int = logging.INFO, gui_level: int | None = None) -> None:
    logger.log(level, message, *args)


def _replay(outcome: TileOutcome, notify: Callable[[str, int], None] | None = None) -> None:
    """Log a worker's records here; hand its warnings and errors to ``notify`` (the GUI)."""
    for record in outcome.log_records:
        logging.getLogger(record.name).handle(record)
        if notify is not None and record.levelno >= logging.WARNING:
            notify(record.getMessage(), record.levelno)
    outcome.log_records = []


class TileScheduler:
    """Execute tile tasks; see the module docstring for the failure policy.

    Parameters
    ----------
    workers : int
        1 runs tiles in this process (no executor); more starts a
        ``ProcessPoolExecutor`` of that size (forked from the fork server on Linux,
        spawned elsewhere: :func:`~.processes.worker_context`) (unless ``executor`` is given), kept
        across :meth:`run` calls until :meth:`close`.
    executor : concurrent.futures.Executor, optional
        Used instead of the own pool (never shut down here; not rebuildable: if it
        breaks, the remaining tiles run in this process).
    cancel : object with ``is_set()``, optional
        E.g. a ``threading.Event``: once set, no new tile is submitted; running tiles
        finish and ``report.cancelled`` becomes True.
    emit : callable, optional
        ``emit(message, *args, level=..., gui_level=...)`` for ``[GRID]`` messages
        (default: log only; ``gui_level``: the level a GUI callback gets instead).
    kind : {"process", "thread"}
        "thread" makes the own pool a ``ThreadPoolExecutor`` of this process instead
        (no start-up, no crash isolation). Default "process".
    gpu_policy : GpuPolicy, optional
        The run's GPU policy, given to the tiles that run in this process.
    notify : callable, optional
        ``notify(text, logging_level)`` receives the warnings and errors that tiles
        made in worker processes logged there (they are logged here too); grid mode
        sends them to ZeMosaic's callback.
    """

    def __init__(self, *, workers: int, executor: Executor | None = None, cancel: Any = None,
                 emit: Emit | None = None, kind: str = "process", gpu_policy: Any = None,
                 notify: Callable[[str, int], None] | None = None) -> None:
        self.workers = max(1, int(workers))
        self.kind = kind
        self.executor = executor
        self.cancel = cancel
        self.emit = emit or _log_emit
        self.report = ScheduleReport()
        self.gpu_policy = gpu_policy
        self.notify = notify
        self.on_done: Callable[[TileOutcome], None] = lambda outcome: None
        self._cancel_seen = False
        self._max_rebuilds = 3
        self._pool: Executor | None = None
        self._watch: tuple[Any, Any] | None = None  # (read end given to the workers, write end kept here)
        self._answered: set[int] = set()  # pids of the workers that returned a result

    @property
    def uses_pool(self) -> bool:
        """Whether tiles go to an executor (own pool or external).

        Returns
        -------
        bool
            False when they run one by one in this process.
        """
        return self.executor is not None or self.workers > 1

    @property
    def in_process(self) -> bool:
        """Whether tiles run in this process (one by one, or on the own worker threads).

        Returns
        -------
        bool
            True when they share this process's frame cache.
        """
        return self.executor is None and (self.workers == 1 or self.kind == "thread")

    def start(self, stack_config: Any = None) -> None:
        """Start the own worker pool now, so worker start-up overlaps the caller's setup.

        Every worker starts at once and loads what tiles need (astropy, scipy, the
        core and its kernels for ``stack_config``; see :func:`~.worker.warm_up`) in a
        warm-up task while the parent goes on (forked from the fork server, a worker
        finds most of it loaded already). Nothing happens with an external executor,
        with one worker, or when the pool exists.

        Parameters
        ----------
        stack_config : StackConfig, optional
            The run's stack settings, for the warm-up of process workers.
        """
        if self.executor is not None or self.workers == 1 or self._pool is not None:
            return
        self._pool = self._new_pool()
        if self.kind == "process":
            for _ in range(self.workers):
                self._submit(self._pool, warm_up, stack_config).add_done_callback(self._note_warm)

    def map(self, fn: Callable[..., Any], *iterables: Any) -> list[Any]:
        """Run ``list(map(fn, *iterables))`` on the workers when there are any, else here.

        For small per-frame jobs before the tiles (the survey normalisation); a broken
        pool falls back to this process (logged as a warning).

        Parameters
        ----------
        fn : callable
            Picklable when the workers are processes.
        *iterables : iterable
            Arguments of ``fn``, one iterable per positional argument.

        Returns
        -------
        list
            ``fn``'s results, in the order of the arguments.
        """
        pool = self.executor if self.executor is not None else self._pool
        if pool is None:
            return list(map(fn, *iterables))
        items = [tuple(args) for args in zip(*iterables)]
        try:
            futures = [self._submit(pool, fn, *args) for args in items]
            return [fut.result() for fut in futures]
        except (BrokenExecutor, RuntimeError) as exc:
            if self.executor is None:
                pool, self._pool = self._pool, None
                codes = self._retire(pool)
                if isinstance(exc, BrokenExecutor):
                    self._check_start(codes, running=False)
            self.emit("[GRID] workers unavailable for %s (%s); running it here", fn.__name__,
                      type(exc).__name__, level=logging.WARNING)
            return [fn(*args) for args in items]

    def close(self, *, abort: bool = False) -> None:
        """Shut the own pool down (idempotent).

        Parameters
        ----------
        abort : bool
            End the worker processes now instead of letting the running tiles finish.
        """
        pool, self._pool = self._pool, None
        if pool is not None:
            if abort:
                self._end_workers(pool)
            self._retire(pool)

    def __enter__(self) -> TileScheduler:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        # An Exception lets the running tiles finish (they are kept); KeyboardInterrupt
        # (a second Ctrl-C) or SystemExit must not wait for workers that ignore SIGINT.
        self.close(abort=exc_type is not None and not issubclass(exc_type, Exception))

    # ------------------------------------------------------------------ common
    def _cancelled(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            if not self._cancel_seen:
                self._cancel_seen = True
                self.report.cancelled = True
                self.emit("[GRID] cancel requested: no new tile is started; the running tiles finish",
                          gui_level=logging.WARNING)
            return True
        return False

    def _handle(self, outcome: TileOutcome, task: TileTask, retry: Callable[[TileTask], None]) -> None:
        _replay(outcome, self.notify)
        if outcome.ok:
            self.on_done(outcome)
            return
        self.emit("[GRID] Tile %d failed with error: %s", task.tile_id, outcome.error, level=logging.ERROR)
        if outcome.details:
            logger.debug("[GRID] tile %d traceback:\n%s", task.tile_id, outcome.details)
        if task.attempt < _MAX_ATTEMPTS:
            self._note_retry(task.tile_id)
            retry(replace(task, attempt=task.attempt + 1))
            return
        self.report.failed[task.tile_id] = outcome.error or "unknown error"
        self.on_done(outcome)

    def _note_retry(self, tile_id: int) -> None:
        if tile_id not in self.report.retried:
            self.report.retried.append(tile_id)
        self.emit("[GRID] retrying tile %d once", tile_id, level=logging.WARNING)

    def _fail(self, task: TileTask, error: str) -> None:
        self.emit("[GRID] Tile %d failed with error: %s", task.tile_id, error, level=logging.ERROR)
        self.report.failed[task.tile_id] = error
        self.on_done(TileOutcome(task.tile_id, False, None, 0, task.attempt, 0.0, error=error))

    # ------------------------------------------------------------------ entry
    def run(self, tasks: list[TileTask], on_done: Callable[[TileOutcome], None]) -> ScheduleReport:
        """Run tile tasks with the failure policy of the module docstring.

        Parameters
        ----------
        tasks : list of TileTask
            In order of submission.
        on_done : callable
            Called in this thread with each tile's final :class:`~.worker.TileOutcome`
            (success, or failure after the retry); not for an attempt that is retried.

        Returns
        -------
        ScheduleReport
            Accumulated over every call of this scheduler.
        """
        self.on_done = on_done
        if not tasks:
            return self.report
        # A pool that cannot stay alive falls back to this process; each bad tile costs at
        # most two crashes, so this bound is never reached by tile faults alone.
        self._max_rebuilds = 3 + 2 * len(tasks)
        if (self.executor is None and self.workers == 1) or self.report.start_failed:
            self._run_inline(deque(tasks))
        else:
            self._run_pool(deque(tasks))
        return self.report

    def _run_inline(self, queue: deque[TileTask]) -> None:
        while queue:
            if self._cancelled():
                return
            task = queue.popleft()
            self._handle(run_tile_task(task, self.gpu_policy), task, queue.appendleft)

    # ------------------------------------------------------------------ pool
    def _new_pool(self) -> Executor:
        if self.kind == "thread":
            return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="zemosaic-grid-tile")
        ctx = worker_context()  # forkserver or spawn: CUDA and threads forbid fork; same on 3.11-3.14
        try:
            launcher = launcher_pid(ctx)
        except OSError as exc:  # e.g. no Unix sockets where this runs
            self.emit("[GRID] the fork server of the workers cannot start (%s); the workers are spawned", exc,
                      level=logging.WARNING)
            ctx, launcher = multiprocessing.get_context("spawn"), os.getpid()
        # Only this process holds the write end: its EOF tells the workers that we are gone.
        self._watch = ctx.Pipe(duplex=False)
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=init_worker,
                                   initargs=(os.getpid(), self._watch[0], 0 if launcher == os.getpid() else launcher))

    @staticmethod
    def _submit(pool: Executor, fn: Callable[..., Any], *args: Any) -> Future:
        # A submit may spawn a worker: it starts with SIGINT blocked (see processes.py).
        with sigint_blocked():
            return pool.submit(fn, *args)

    def _note_warm(self, fut: Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._answered.add(fut.result())

    def _retire(self, pool: Executor) -> dict[int, int | None]:
        """Shut a pool down and return how its worker processes ended (pid -> exit code)."""
        processes = dict(getattr(pool, "_processes", None) or {})  # private; empty for other executors
        pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(pool, ProcessPoolExecutor) and self._watch is not None:
            for end in self._watch:
                end.close()
            self._watch = None
        return {pid: proc.exitcode for pid, proc in processes.items()}

    def _end_workers(self, pool: Executor) -> None:
        """End the worker processes of an own pool now (abort); threads cannot be ended."""
        if isinstance(pool, ProcessPoolExecutor) and self._watch is not None:
            self._watch[1].close()  # each worker's watchdog sees EOF and exits
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            try:
                proc.terminate()
            except (OSError, ValueError, AttributeError):
                pass  # already gone

    def _run_pool(self, queue: deque[TileTask]) -> None:
        own = self.executor is None
        if own and self._pool is None:
            self._pool = self._new_pool()
        pool: Executor | None = self._pool if own else self.executor
        careful: deque[TileTask] = deque()
        inflight: dict[Future, tuple[TileTask, bool]] = {}
        while queue or careful or inflight:
            broken: list[tuple[TileTask, bool]] = []
            if self._cancelled():
                queue.clear()
                careful.clear()
                for fut in [f for f in inflight if f.cancel()]:
                    inflight.pop(fut)
                if not inflight:
                    break
            elif not self._fill(pool, queue, careful, inflight):
                broken = [(None, False)]  # the executor refused work: treat as broken
            if inflight and not broken:
                done, _ = wait(list(inflight), timeout=_POLL_SEC, return_when=FIRST_COMPLETED)
                broken = self._collect(done, inflight, queue)
            if broken:
                # The pool is dead: every other pending future fails too; collect them all.
                rest, _ = wait(list(inflight))
                broken += self._collect(rest, inflight, queue)
                broken = [b for b in broken if b[0] is not None]
                codes = self._retire(pool) if own else {}
                if own:
                    self._pool = None
                running = {task.tile_id: _marker_pid(task) for task, _ in broken if _marker(task).exists()}
                if self._check_start(codes, running=bool(running)):
                    # No task ever ran: every tile goes back unchanged, to run here.
                    queue.extendleft(sorted((task for task, _ in broken), key=lambda t: -t.tile_id))
                    self._run_inline(deque(list(careful) + list(queue)))
                    return
                self._recover(broken, queue, careful, codes, running)
                pool = self._replace_pool(own, queue, careful)
                if own:
                    self._pool = pool
                if pool is None:
                    self._run_inline(deque(list(careful) + list(queue)))
                    return

    def _fill(self, pool: Executor, queue: deque, careful: deque, inflight: dict) -> bool:
        """Submit up to ``workers`` tasks; careful (crash-suspect) tasks run alone. False if broken."""
        try:
            if careful:
                if not inflight:
                    task = careful.popleft()
                    inflight[self._submit(pool, run_tile_task, task)] = (task, True)
                return True
            if any(is_careful for _, is_careful in inflight.values()):
                return True
            while queue and len(inflight) < self.workers:
                task = queue.popleft()
                try:
                    inflight[self._submit(pool, run_tile_task, task)] = (task, False)
                except BaseException:
                    queue.appendleft(task)
                    raise
        except (BrokenExecutor, RuntimeError) as exc:
            first_line = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            self.emit("[GRID] executor refused a tile (%s)", first_line, level=logging.WARNING)
            return False
        return True

    def _collect(self, done: set, inflight: dict, queue: deque) -> list[tuple[TileTask, bool]]:
        broken = []
        for fut in done:
            task, is_careful = inflight.pop(fut)
            try:
                outcome = fut.result()
            except (BrokenProcessPool, BrokenExecutor):
                broken.append((task, is_careful))
                continue
            except CancelledError:
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. a remote executor's transport error
                outcome = TileOutcome(task.tile_id, False, None, 0, task.attempt, 0.0,
                                      error=f"{type(exc).__name__}: {exc}")
            self._answered.add(outcome.pid)
            self._handle(outcome, task, queue.append)
        return broken

    def _check_start(self, codes: dict[int, int | None], *, running: bool) -> bool:
        """Raise when the workers re-run an unguarded main script; True when they cannot start.

        ``codes`` are the exit codes of a broken pool's workers. Workers that exited by
        themselves (not by a signal) before any of them returned a result or started a
        tile failed at start-up: a new pool would fail again, so the tiles run here.
        """
        if UNGUARDED_MAIN_EXIT in codes.values():
            raise RuntimeError(unguarded_main_message())
        own = _own_deaths(codes)
        if running or not own or self._answered & set(codes) or any(c is None or c < 0 for c in own.values()):
            return False
        self.report.start_failed = True
        self.emit("[GRID] worker processes cannot start: %s before running any task (their error is "
                  "above, on stderr); the tiles run in this process", _describe_deaths(own), level=logging.ERROR)
        return True

    def _recover(self, broken: list[tuple[TileTask, bool]], queue: deque, careful: deque,
                 codes: dict[int, int | None], running: dict[int, int | None]) -> None:
        """Sort the tasks of a broken pool into resubmitted, retried-alone and failed."""
        self.report.crashes += 1
        own = _own_deaths(codes)
        culprits_known = any(is_careful for _, is_careful in broken) or bool(running)
        requeue = []
        for task, is_careful in sorted(broken, key=lambda b: b[0].tile_id):
            _marker(task).unlink(missing_ok=True)
            suspect = is_careful or task.tile_id in running or not culprits_known
            if not suspect:
                requeue.append(task)
            elif task.attempt >= _MAX_ATTEMPTS:
                pid = running.get(task.tile_id)
                code = codes[pid] if pid in codes else (next(iter(own.values())) if len(own) == 1 else None)
                self._fail(task, f"worker process {exit_reason(code)} while making this tile")
            else:
                self._note_retry(task.tile_id)
                careful.append(replace(task, attempt=task.attempt + 1))
        queue.extendleft(reversed(requeue))
        self.emit("[GRID] %s; pool rebuilt, %d tile(s) resubmitted, %d retried alone", _describe_deaths(own),
                  len(requeue), len(careful), level=logging.WARNING)

    def _replace_pool(self, own: bool, queue: deque, careful: deque) -> Executor | None:
        if own and self.report.crashes > self._max_rebuilds:
            self.emit("[GRID] worker processes keep dying (%d times); the remaining %d tile(s) run in "
                      "this process", self.report.crashes, len(queue) + len(careful), level=logging.ERROR)
            return None
        if not own:
            self.emit("[GRID] the executor is broken and cannot be rebuilt; the remaining %d tile(s) "
                      "run in this process", len(queue) + len(careful), level=logging.ERROR)
            return None
        return self._new_pool()


def _marker(task: TileTask) -> Path:
    return Path(task.tiles_dir) / RUNNING_DIR / f"tile_{task.tile_id:04d}"


def _marker_pid(task: TileTask) -> int | None:
    """The pid written in a running-marker (``"<pid> <attempt>"``), if readable."""
    try:
        return int(_marker(task).read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _own_deaths(codes: dict[int, int | None]) -> dict[int, int | None]:
    """The workers of a broken pool that ended by themselves: the pool SIGTERMs the others.

    Code 0 counts: a worker whose initializer raised returns from its loop.
    """
    sigterm = -int(getattr(signal, "SIGTERM", 15))
    return {pid: code for pid, code in codes.items() if code != sigterm}


def _describe_deaths(own: dict[int, int | None]) -> str:
    if not own:
        return "a worker process died"
    reasons = sorted({exit_reason(code) for code in own.values()})
    pids = ", ".join(str(pid) for pid in sorted(own))
    noun = "a worker process" if len(own) == 1 else f"{len(own)} worker processes"
    return f"{noun} (pid {pids}) {' / '.join(reasons)}"
