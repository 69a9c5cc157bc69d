"""``ResourceTelemetryController``: throttled ``STATS_UPDATE`` emissions and their CSV log.

A long run calls :meth:`ResourceTelemetryController.maybe_emit_stats` as often as it
likes (per tile, per chunk); at most one sample per ``interval_sec`` reaches the
``progress_callback`` as ``callback("STATS_UPDATE", None, "INFO", **payload)``, the
event ZeMosaic's Qt GUI turns into its resource label, and one row of the CSV.
:meth:`ResourceTelemetryController.start_background` adds a daemon thread that
emits through the same throttle whenever no progress did for ``interval_sec``
(:mod:`.background`), so a long phase still gets a sample every interval.
The payload is upstream's, key for key: ``gpu_sample_source``, and ``timestamp_iso``
in UTC ending in ``Z`` (``2026-03-01T22:00:05.123456Z``).
Telemetry never breaks a run: sampling, callback and CSV errors are logged and
swallowed.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from .background import BackgroundSampler
from .csvlog import TelemetryCsvWriter
from .sampler import SAMPLE_KEYS, prime_cpu_percent, sample_runtime_resources

__all__ = ["ResourceTelemetryController", "grid_telemetry_context", "CONTEXT_KEYS",
           "DEFAULT_INTERVAL_SEC", "MIN_INTERVAL_SEC"]

logger = logging.getLogger(__name__)

#: Interval used when ``interval_sec`` is falsy, not positive or not finite (upstream default).
DEFAULT_INTERVAL_SEC = 1.5
#: Shortest interval accepted; smaller values are raised to it.
MIN_INTERVAL_SEC = 0.5

#: Context keys the GUI reads (besides the sample), as built by :func:`grid_telemetry_context`.
CONTEXT_KEYS = ("phase_index", "phase_name", "tiles_done", "tiles_total", "eta_seconds",
                "files_done", "files_total")

_RESERVED_KEYS = frozenset(CONTEXT_KEYS) | frozenset(SAMPLE_KEYS) | {"timestamp_iso"}
# Upstream: datetime.utcnow().isoformat() + "Z"; we always write the microseconds.
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class ResourceTelemetryController:
    """Sample CPU/RAM/GPU at most every ``interval_sec`` and emit ``STATS_UPDATE``.

    Parameters
    ----------
    enabled : bool
        False makes every method a no-op (nothing emitted, no file written).
    interval_sec : float or None
        Minimum seconds between two unforced emissions. None, 0, negative or
        non-finite values mean 1.5 s; values below 0.5 s are raised to 0.5 s. The
        effective value is the attribute ``interval_sec``.
    callback : callable or None
        ZeMosaic's ``progress_callback(key, progress, level, **kwargs)``. None
        disables emission and the CSV, like ``enabled=False``.
    csv_path : str, os.PathLike or None
        Where to log one row per emission (usually ``resource_telemetry.csv`` in the
        output folder, which must exist). Truncated by the first emission. None: no CSV.

    Raises
    ------
    TypeError
        If `callback` is neither None nor callable.
    ValueError
        If `interval_sec` is not a number.

    Notes
    -----
    Thread-safe: one lock serialises emissions and :meth:`close`; an emission after
    :meth:`close` is a no-op. Unforced emissions, including those of the background
    sampler (:meth:`start_background`), are never closer than ``interval_sec``;
    forced ones (phase boundaries, the final state) are sent at once, as upstream.
    The callback runs under that lock (in the sampler's thread for background
    samples), so it must accept calls from any thread and must not wait on another
    thread that emits. Errors never reach the caller: a callback that raises is logged
    (WARNING once, then DEBUG) and called again next time; a CSV error is logged once
    and stops the CSV only. The controller is also a context manager; :meth:`close`
    (or garbage collection, once no background sampler holds it) closes it.

    Examples
    --------
    >>> events = []
    >>> tel = ResourceTelemetryController(True, 0.3, lambda *a, **kw: events.append((a, kw)))
    >>> tel.interval_sec
    0.5
    >>> tel.maybe_emit_stats({"phase_index": 0, "phase_name": "Grid: Init"})
    True
    >>> tel.maybe_emit_stats({"phase_index": 0, "phase_name": "Grid: Init"})  # throttled
    False
    >>> events[0][0]
    ('STATS_UPDATE', None, 'INFO')
    >>> tel.close()
    """

    def __init__(self, enabled: bool, interval_sec: float | None,
                 callback: Callable[..., Any] | None, csv_path: str | os.PathLike[str] | None = None) -> None:
        if callback is not None and not callable(callback):
            msg = f"`callback` must be callable (progress_callback protocol) or None; got {type(callback).__name__}"
            raise TypeError(msg)
        self.enabled = bool(enabled)
        self.interval_sec = _effective_interval(interval_sec)
        self.callback = callback
        self.csv_path = None if csv_path is None else os.fspath(csv_path)
        self._lock = threading.RLock()  # re-entrant: a callback may emit again without deadlock
        self._closed = False
        self._last_emit: float | None = None
        self._writer: TelemetryCsvWriter | None = None
        self._csv_failed = False
        self._callback_failures = 0
        self._last_context: dict[str, Any] | None = None
        self._sampler: BackgroundSampler | None = None
        if self.active:
            prime_cpu_percent()  # so the first emission measures CPU since construction, not 0.0

    @property
    def active(self) -> bool:
        """Whether emissions can happen.

        Returns
        -------
        bool
            True when enabled, with a callback, and not closed.
        """
        return self.enabled and self.callback is not None and not self._closed

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran.

        Returns
        -------
        bool
            True once closed; emissions are then no-ops.
        """
        return self._closed

    @property
    def last_context(self) -> dict[str, Any] | None:
        """The context of the latest emission request, throttled or not.

        Returns
        -------
        dict or None
            A copy; None before the first request (or when it was not a mapping).
        """
        ctx = self._last_context
        return None if ctx is None else dict(ctx)

    def seconds_until_due(self) -> float | None:
        """Return the seconds until an unforced emission would pass the throttle.

        Returns
        -------
        float or None
            0.0 when one would pass now (or nothing was emitted yet); None when the
            controller is inactive or closed (nothing will be emitted).
        """
        if not self.active:
            return None
        with self._lock:
            if self._last_emit is None:
                return 0.0
            return max(0.0, self._last_emit + self.interval_sec - time.monotonic())

    def start_background(self, context: Callable[[], Mapping[str, Any] | None] | None = None
                         ) -> BackgroundSampler | None:
        """Start a daemon thread that samples every ``interval_sec`` between progress emissions.

        Parameters
        ----------
        context : callable, optional
            Returns the context of each background sample (fresh run state: phase,
            counters, ETA); called in the sampler's thread, so it must be
            thread-safe. Default: the context of the latest emission request
            (:attr:`last_context`).

        Returns
        -------
        BackgroundSampler or None
            The running sampler (the one already running if called twice); None when
            the controller is inactive (disabled, no callback, closed). :meth:`close`
            stops it.

        Notes
        -----
        Its samples go through the same throttle as :meth:`maybe_emit_stats`: a
        progress emission pushes the next background one back by ``interval_sec``,
        so the two never come closer than that.
        """
        if not self.active:
            return None
        with self._lock:
            if self._sampler is None:
                self._sampler = BackgroundSampler(self, context).start()
            return self._sampler

    def maybe_emit_stats(self, context: Mapping[str, Any] | None = None) -> bool:
        """Emit unless the previous emission is less than ``interval_sec`` old.

        Parameters
        ----------
        context : mapping, optional
            Run state to send with the sample; see :meth:`emit_stats`.

        Returns
        -------
        bool
            True if a payload was emitted.
        """
        return self.emit_stats(context, force=False)

    def emit_stats(self, context: Mapping[str, Any] | None = None, *, force: bool = False) -> bool:
        """Sample resources and emit one ``STATS_UPDATE`` (throttled unless `force`).

        Parameters
        ----------
        context : mapping, optional
            ``phase_index``, ``phase_name``, ``tiles_done``, ``tiles_total``,
            ``eta_seconds`` (seconds; dropped unless finite and >= 0),
            ``files_done``, ``files_total`` and any extra keys (plan values, stats).
            Sample keys in it are overwritten by the sample.
        force : bool
            Emit even within ``interval_sec`` of the previous emission (phase changes,
            the final state). The first emission is never throttled.

        Returns
        -------
        bool
            True if a payload was emitted; False when inactive, closed or throttled.
        """
        if not self.active:
            return False
        with self._lock:
            if self._closed:
                return False
            if isinstance(context, Mapping):
                self._last_context = dict(context)
            if not self._take_turn(force):
                return False
            self._send(context)
            return True

    def emit_due(self, context: Callable[[], Mapping[str, Any] | None] | None = None) -> bool:
        """Emit if ``interval_sec`` has passed since the last emission, with a context made now.

        What the background sampler calls. ``context`` is called under the
        controller's lock, after the throttle let the emission through, so the
        context and the order of emissions agree (a sample made before a phase change
        cannot arrive after it).

        Parameters
        ----------
        context : callable, optional
            Returns the context mapping (or None). Default, or when it returns None
            or raises: :attr:`last_context`.

        Returns
        -------
        bool
            True if a payload was emitted; False when inactive, closed or not due.
        """
        if not self.active:
            return False
        with self._lock:
            if self._closed or not self._take_turn(False):
                return False
            ctx = None
            if context is not None:
                try:
                    ctx = context()
                except Exception as exc:  # noqa: BLE001 - a context bug must not stop telemetry
                    logger.debug("[TELEMETRY] background context failed: %s", exc)
            self._send(self._last_context if ctx is None else ctx)
            return True

    def _take_turn(self, force: bool) -> bool:
        """Throttle (under the lock): True, and the clock restarts, if this emission may go."""
        now = time.monotonic()
        if not force and self._last_emit is not None and now - self._last_emit < self.interval_sec:
            return False
        self._last_emit = now
        return True

    def _send(self, context: Mapping[str, Any] | None) -> None:
        payload = self._build_payload(context)
        self._write_csv(payload)
        self._call_back(payload)

    def close(self) -> None:
        """Stop the background sampler, close the CSV and stop emitting; idempotent, any thread."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # __init__ failed before the lock existed
            return
        with lock:
            sampler, self._sampler = self._sampler, None
        if sampler is not None:
            # Outside the lock: the sampler may be inside an emission that needs it.
            sampler.stop()
        with lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:
                logger.debug("[TELEMETRY] closing %s failed: %s", self.csv_path, exc)

    def __enter__(self) -> ResourceTelemetryController:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - a finaliser must never raise
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("active" if self.active else "inactive")
        return (f"ResourceTelemetryController({state}, interval_sec={self.interval_sec}, "
                f"csv_path={self.csv_path!r})")

    def _build_payload(self, context: Mapping[str, Any] | None) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if context is not None:
            if isinstance(context, Mapping):
                payload.update((str(k), v) for k, v in context.items())
            else:
                logger.warning("[TELEMETRY] `context` must be a mapping; got %s, ignored",
                               type(context).__name__)
        if "eta_seconds" in payload and _valid_eta(payload["eta_seconds"]) is None:
            del payload["eta_seconds"]
        try:
            payload.update(sample_runtime_resources())
        except Exception as exc:  # noqa: BLE001 - the sampler does not raise; belt and braces
            logger.debug("[TELEMETRY] sampling failed: %s", exc)
            payload.update(dict.fromkeys(SAMPLE_KEYS))
        payload["timestamp_iso"] = datetime.now(timezone.utc).strftime(_TIMESTAMP_FORMAT)
        return payload

    def _write_csv(self, payload: dict[str, Any]) -> None:
        if self.csv_path is None or self._csv_failed:
            return
        try:
            if self._writer is None:
                self._writer = TelemetryCsvWriter(self.csv_path)
            self._writer.write_row(payload)
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop the run
            logger.warning("[TELEMETRY] cannot write %s (%s); telemetry CSV disabled for this run",
                           self.csv_path, exc)
            self._csv_failed = True
            writer, self._writer = self._writer, None
            if writer is not None:
                try:
                    writer.close()
                except OSError:
                    pass

    def _call_back(self, payload: dict[str, Any]) -> None:
        logger.debug("[TELEMETRY] STATS_UPDATE phase=%s cpu=%s%% ram=%s MiB gpu=%s MiB",
                     payload.get("phase_name"), payload.get("cpu_percent"),
                     payload.get("ram_used_mb"), payload.get("gpu_used_mb"))
        try:
            self.callback("STATS_UPDATE", None, "INFO", **payload)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - a GUI error must not stop the run
            self._callback_failures += 1
            level = logging.WARNING if self._callback_failures == 1 else logging.DEBUG
            logger.log(level, "[TELEMETRY] STATS_UPDATE callback raised %s: %s (failure %d; "
                       "telemetry goes on)", type(exc).__name__, exc, self._callback_failures)


def grid_telemetry_context(phase_index: int, phase_name: str, tiles_done: int, tiles_total: int,
                           eta_seconds: float | None = None, files_done: int | None = None,
                           files_total: int | None = None,
                           extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the context a grid run passes to :meth:`ResourceTelemetryController.emit_stats`.

    Parameters
    ----------
    phase_index : int
        0 "Grid: Init", 1 "Grid: Setup", 2 "Grid: tile stacking",
        3 "Grid: photometry & blending", 4 "Grid: Completed" (upstream's phases).
    phase_name : str
        Shown by the GUI.
    tiles_done, tiles_total : int
        Tile counter, global over the run.
    eta_seconds : float, optional
        Seconds left; kept only if finite and >= 0.
    files_done, files_total : int, optional
        Frame counter; each is kept only when given.
    extra : mapping, optional
        More keys (``cpu_workers``, ``use_gpu``, ...), appended after the others.

    Returns
    -------
    dict
        ``phase_index``, ``phase_name``, ``tiles_done``, ``tiles_total``, then
        ``eta_seconds``, ``files_done``, ``files_total`` when present, then `extra`.

    Raises
    ------
    ValueError
        If a counter is not an integer, or an `extra` key is a context, sample or
        ``timestamp_iso`` key (pass those as arguments; the sample is not yours to set).
    """
    ctx: dict[str, Any] = {
        "phase_index": _as_int(phase_index, "phase_index"),
        "phase_name": str(phase_name),
        "tiles_done": _as_int(tiles_done, "tiles_done"),
        "tiles_total": _as_int(tiles_total, "tiles_total"),
    }
    eta = _valid_eta(eta_seconds)
    if eta is not None:
        ctx["eta_seconds"] = eta
    if files_done is not None:
        ctx["files_done"] = _as_int(files_done, "files_done")
    if files_total is not None:
        ctx["files_total"] = _as_int(files_total, "files_total")
    for key, value in (extra or {}).items():
        if key in _RESERVED_KEYS:
            msg = (f"`extra` key {key!r} is reserved (context, sample or timestamp key); "
                   "pass context values as arguments and leave sample keys to the sampler")
            raise ValueError(msg)
        ctx[str(key)] = value
    return ctx


def _effective_interval(interval_sec: Any) -> float:
    if not interval_sec:
        return DEFAULT_INTERVAL_SEC
    try:
        value = float(interval_sec)
    except (TypeError, ValueError):
        msg = f"`interval_sec` must be a number of seconds (or None for {DEFAULT_INTERVAL_SEC}); got {interval_sec!r}"
        raise ValueError(msg) from None
    if not math.isfinite(value) or value <= 0:
        return DEFAULT_INTERVAL_SEC
    return max(value, MIN_INTERVAL_SEC)


def _valid_eta(eta_seconds: Any) -> float | None:
    """`eta_seconds` as a float if it is a finite number >= 0, else None."""
    if eta_seconds is None or isinstance(eta_seconds, bool):
        return None
    try:
        value = float(eta_seconds)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _as_int(value: Any, name: str) -> int:
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        as_int = None
    if as_int is None or isinstance(value, bool) or as_int != value:
        msg = f"`{name}` must be an integer; got {value!r}"
        raise ValueError(msg)
    return as_int
