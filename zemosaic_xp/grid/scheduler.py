"""Run tile tasks in this process or on an executor, surviving failing tiles and dead workers.

- A tile whose task reports an error is logged (``[GRID] Tile X failed with error:
  ...``) and retried once; if the retry fails too it is listed as failed and the run
  goes on.
- A worker killed by the OS breaks a ``ProcessPoolExecutor`` and fails every pending
  future. The scheduler then rebuilds the pool and resubmits: tiles that had not
  started go back to the queue unchanged; tiles that were running (their marker is
  in ``tiles/.running``) are retried once, *one at a time*, so that a tile that
  kills its worker again is identified and failed without taking others with it.
- ``cancel`` (anything with ``is_set()``) stops submitting; tiles already running
  finish and are kept, so a rerun resumes from them.
"""

from __future__ import annotations

import logging
import multiprocessing
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

from .worker import (
    RUNNING_DIR,
    TileOutcome,
    TileTask,
    init_worker,
    run_tile_task,
    warm_up,
)

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
    cancelled : bool
        A cancel was seen: tiles not started were not run.
    """

    failed: dict[int, str] = field(default_factory=dict)
    retried: list[int] = field(default_factory=list)
    crashes: int = 0
    cancelled: bool = False


def _log_emit(message: str, *args: Any, level: int = logging.INFO) -> None:
    logger.log(level, message, *args)


def _replay(outcome: TileOutcome) -> None:
    for record in outcome.log_records:
        logging.getLogger(record.name).handle(record)
    outcome.log_records = []


class TileScheduler:
    """Execute tile tasks; see the module docstring for the failure policy.

    Parameters
    ----------
    workers : int
        1 runs tiles in this process (no executor); more starts a spawn-context
        ``ProcessPoolExecutor`` of that size (unless ``executor`` is given), kept
        across :meth:`run` calls until :meth:`close`.
    executor : concurrent.futures.Executor, optional
        Used instead of the own pool (never shut down here; not rebuildable: if it
        breaks, the remaining tiles run in this process).
    cancel : object with ``is_set()``, optional
        E.g. a ``threading.Event``: once set, no new tile is submitted; running tiles
        finish and ``report.cancelled`` becomes True.
    emit : callable, optional
        ``emit(message, *args, level=...)`` for ``[GRID]`` messages (default: log only).
    kind : {"process", "thread"}
        "thread" makes the own pool a ``ThreadPoolExecutor`` of this process instead
        (no start-up, no crash isolation). Default "process".
    gpu_policy : GpuPolicy, optional
        The run's GPU policy, given to the tiles that run in this process.
    """

    def __init__(self, *, workers: int, executor: Executor | None = None, cancel: Any = None,
                 emit: Emit | None = None, kind: str = "process", gpu_policy: Any = None) -> None:
        self.workers = max(1, int(workers))
        self.kind = kind
        self.executor = executor
        self.cancel = cancel
        self.emit = emit or _log_emit
        self.report = ScheduleReport()
        self.gpu_policy = gpu_policy
        self.on_done: Callable[[TileOutcome], None] = lambda outcome: None
        self._cancel_seen = False
        self._max_rebuilds = 3
        self._pool: Executor | None = None

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

        Every worker is spawned at once and loads what tiles need (astropy, scipy, the
        core and its kernels for ``stack_config``; see :func:`~.worker.warm_up`) in a
        warm-up task while the parent reads the plan and builds the grid. Nothing
        happens with an external executor, with one worker, or when the pool exists.

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
                self._pool.submit(warm_up, stack_config)

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
            return list(pool.map(fn, *zip(*items))) if items else []
        except (BrokenExecutor, RuntimeError) as exc:
            logger.warning("[GRID] workers unavailable for %s (%s); running it here", fn.__name__,
                           type(exc).__name__)
            if self.executor is None:
                self.close()
            return [fn(*args) for args in items]

    def close(self) -> None:
        """Shut the own pool down (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TileScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ common
    def _cancelled(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            if not self._cancel_seen:
                self._cancel_seen = True
                self.report.cancelled = True
                self.emit("[GRID] cancel requested: no new tile is started", level=logging.WARNING)
            return True
        return False

    def _handle(self, outcome: TileOutcome, task: TileTask, retry: Callable[[TileTask], None]) -> None:
        _replay(outcome)
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
        if self.executor is None and self.workers == 1:
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
        ctx = multiprocessing.get_context("spawn")  # CUDA and threads forbid fork; same on 3.11-3.14
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=init_worker)

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
                self._recover([b for b in broken if b[0] is not None], queue, careful)
                pool = self._replace_pool(pool, own, queue, careful)
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
                    inflight[pool.submit(run_tile_task, task)] = (task, True)
                return True
            if any(is_careful for _, is_careful in inflight.values()):
                return True
            while queue and len(inflight) < self.workers:
                task = queue.popleft()
                try:
                    inflight[pool.submit(run_tile_task, task)] = (task, False)
                except BaseException:
                    queue.appendleft(task)
                    raise
        except (BrokenExecutor, RuntimeError) as exc:
            first_line = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            logger.warning("[GRID] executor refused a tile (%s)", first_line)
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
            self._handle(outcome, task, queue.append)
        return broken

    def _recover(self, broken: list[tuple[TileTask, bool]], queue: deque, careful: deque) -> None:
        """Sort the tasks of a broken pool into resubmitted, retried-alone and failed."""
        self.report.crashes += 1
        running = {task.tile_id for task, _ in broken if _marker(task).exists()}
        culprits_known = any(is_careful for _, is_careful in broken) or bool(running)
        requeue = []
        for task, is_careful in sorted(broken, key=lambda b: b[0].tile_id):
            _marker(task).unlink(missing_ok=True)
            suspect = is_careful or task.tile_id in running or not culprits_known
            if not suspect:
                requeue.append(task)
            elif task.attempt >= _MAX_ATTEMPTS:
                self._fail(task, "worker process died while making this tile (killed by the OS?)")
            else:
                self._note_retry(task.tile_id)
                careful.append(replace(task, attempt=task.attempt + 1))
        queue.extendleft(reversed(requeue))
        self.emit("[GRID] a worker process died; pool rebuilt, %d tile(s) resubmitted, %d retried alone",
                  len(requeue), len(careful), level=logging.WARNING)

    def _replace_pool(self, pool: Executor, own: bool, queue: deque, careful: deque) -> Executor | None:
        if own and self.report.crashes > self._max_rebuilds:
            pool.shutdown(wait=False, cancel_futures=True)
            self.emit("[GRID] worker processes keep dying (%d times); the remaining %d tile(s) run in "
                      "this process", self.report.crashes, len(queue) + len(careful), level=logging.ERROR)
            return None
        if not own:
            self.emit("[GRID] the executor is broken and cannot be rebuilt; the remaining %d tile(s) "
                      "run in this process", len(queue) + len(careful), level=logging.ERROR)
            return None
        pool.shutdown(wait=False, cancel_futures=True)
        return self._new_pool()


def _marker(task: TileTask) -> Path:
    return Path(task.tiles_dir) / RUNNING_DIR / f"tile_{task.tile_id:04d}"
