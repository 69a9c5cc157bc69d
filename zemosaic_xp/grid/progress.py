"""Progress of a grid run in ZeMosaic's ``progress_callback`` protocol, and its telemetry.

Keys sent (``reference/upstream_spec.md`` §3.11, DESIGN §8):

- ``"[GRID] ..."`` messages (also logged);
- ``STAGE_PROGRESS`` with progress = stage name, level = units done, ``total=`` units
  (1 setup + 1 per tile stacked + 1 per tile assembled + 1 final save, the last unit
  sent by :meth:`GridProgress.finish` once the outputs are written);
- ``ETA_UPDATE:HH:MM:SS``: the units left (tiles, the assembly's units, the final save)
  times an EMA (α = 0.25) of the seconds per unit, measured on tiles and on the
  assembly alike; at least 1 s until :meth:`GridProgress.finish` sends 00:00:00;
- ``MASTER_TILE_COUNT_UPDATE:done/total``;
- ``STATS_UPDATE`` through the :class:`~zemosaic_xp.telemetry.ResourceTelemetryController`,
  at every progress update (throttled), from its background sampler between them
  (:meth:`GridProgress.telemetry_context`), and forced at phase boundaries, with the
  run's global, monotonic ``tiles_done`` out of ``tiles_total``.

A callback that raises is logged once and never stops the run.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

from ..compat.gui_events import callback_level
from ..telemetry import ResourceTelemetryController, grid_telemetry_context

__all__ = ["GridProgress", "format_eta", "PHASES"]

logger = logging.getLogger(__name__)

#: Telemetry phases of a grid run (upstream's indices and names).
PHASES = {0: "Grid: Init", 1: "Grid: Setup", 2: "Grid: tile stacking", 3: "Grid: photometry & blending",
          4: "Grid: Completed"}
_THROTTLE_SEC = 0.3
_EMA_ALPHA = 0.25
# The ETA sent while work is left never rounds to 00:00:00.
_MIN_ETA_SEC = 1.0


def format_eta(seconds: float) -> str:
    """Format a duration as ``HH:MM:SS``.

    Parameters
    ----------
    seconds : float
        The duration; rounded to whole seconds, negative values count as 0.

    Returns
    -------
    str
        ``HH:MM:SS``; the hours grow past two digits when needed.
    """
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class GridProgress:
    """Progress, ETA and telemetry of one grid run.

    Parameters
    ----------
    callback : callable or None
        ``progress_callback(key, progress, level, **kwargs)``. An exception it raises
        is logged once and ignored.
    telemetry : ResourceTelemetryController
        Emits the run's ``STATS_UPDATE`` (throttled between phase boundaries).
    """

    def __init__(self, callback: Callable[..., Any] | None, telemetry: ResourceTelemetryController) -> None:
        self.callback = callback
        self.telemetry = telemetry
        self.phase = (0, PHASES[0])
        self.tiles_total = 0
        self.tiles_done = 0
        self.units_total = 1
        self.units_done = 0
        self.stage = "GRID: setup"
        self.extra: dict[str, Any] = {}
        self._last_tick: float | None = None
        self._sec_per_unit: float | None = None
        self._last_sent = -math.inf
        self._callback_failed = False
        self._final_eta: float | None = None

    # ------------------------------------------------------------------ callback
    def _call(self, key: str, progress: Any = None, level: Any = "INFO", **kw: Any) -> None:
        if self.callback is None:
            return
        try:
            self.callback(key, progress, level, **kw)
        except Exception as exc:  # noqa: BLE001 - a GUI error must not stop the run
            if not self._callback_failed:
                logger.warning("[GRID] progress_callback raised %s: %s (ignored)", type(exc).__name__, exc)
                self._callback_failed = True

    def message(self, message: str, *args: Any, level: int = logging.INFO, gui_level: int | None = None) -> None:
        """Log a ``[GRID]`` message and send it to the callback.

        Parameters
        ----------
        message : str
            %-style format, starting with ``[GRID]``.
        *args : object
            Its arguments (the callback gets the formatted text).
        level : int
            ``logging`` level; the callback gets ZeMosaic's name for it
            (:func:`~zemosaic_xp.compat.gui_events.callback_level`: ``"WARN"`` for a
            warning). Default INFO.
        gui_level : int, optional
            Another :mod:`logging` level for the callback only: a cancel is logged at
            INFO (the command line reports it itself) and reaches the GUI as ``"WARN"``.
        """
        logger.log(level, message, *args)
        text = message % args if args else message
        self._call(text, None, callback_level(level if gui_level is None else gui_level))

    def notify(self, text: str, level: int = logging.WARNING) -> None:
        """Send an already-logged message to the callback only.

        Parameters
        ----------
        text : str
            The message (``[GRID] ...``).
        level : int
            Its :mod:`logging` level.
        """
        self._call(text, None, callback_level(level))

    # ------------------------------------------------------------------ phases
    def set_totals(self, tiles_total: int) -> None:
        """Fix the run's tile count (units = 1 + 2·tiles + 1).

        Parameters
        ----------
        tiles_total : int
            Tiles of the run, over every mount group.
        """
        self.tiles_total = int(tiles_total)
        self.units_total = 2 + 2 * self.tiles_total

    def set_phase(self, index: int, *, extra: dict[str, Any] | None = None, eta_seconds: float | None = None) -> None:
        """Enter telemetry phase ``index`` (forced emission).

        Parameters
        ----------
        index : int
            A key of ``PHASES``.
        extra : dict, optional
            Fields merged into the telemetry context of this and later emissions.
        eta_seconds : float, optional
            ETA to report; default the EMA estimate for the tiles left (none until a
            timed tile has finished).
        """
        self.phase = (index, PHASES[index])
        if extra:
            # Rebound, not updated in place: the background sampler reads it from its thread.
            self.extra = {**self.extra, **extra}
        self._final_eta = eta_seconds
        self._telemetry(force=True, eta_seconds=eta_seconds)

    def telemetry_context(self, eta_seconds: float | None = None) -> dict[str, Any] | None:
        """The run's telemetry context now (phase, tile counter, ETA, extras).

        Also what the background sampler sends between progress updates
        (:meth:`~zemosaic_xp.telemetry.ResourceTelemetryController.start_background`),
        so it only reads attributes that are replaced whole.

        Parameters
        ----------
        eta_seconds : float, optional
            ETA to report; default the one given to the last :meth:`set_phase`, else
            the EMA estimate for the tiles left.

        Returns
        -------
        dict or None
            :func:`~zemosaic_xp.telemetry.grid_telemetry_context`; None if it refused
            the values (logged at DEBUG).
        """
        if eta_seconds is None:
            eta_seconds = self._final_eta
        eta = self._eta_seconds() if eta_seconds is None else eta_seconds
        phase = self.phase
        try:
            return grid_telemetry_context(phase[0], phase[1], self.tiles_done, self.tiles_total,
                                          eta_seconds=eta, extra=self.extra)
        except ValueError as exc:
            logger.debug("[GRID] telemetry context refused: %s", exc)
            return None

    def _telemetry(self, *, force: bool, eta_seconds: float | None = None) -> None:
        ctx = self.telemetry_context(eta_seconds)
        if ctx is None:
            return
        if force:
            self.telemetry.emit_stats(ctx, force=True)
        else:
            self.telemetry.maybe_emit_stats(ctx)

    # ------------------------------------------------------------------ units
    def advance(self, units: int = 1, *, stage: str | None = None, force: bool = False,
                measured: bool = True) -> None:
        """Mark ``units`` more work done and report it (throttled).

        Parameters
        ----------
        units : int
            Units of work done since the last call; the total never exceeds
            ``units_total``.
        stage : str, optional
            New stage name for ``STAGE_PROGRESS``; default the current one.
        force : bool
            Send ``STAGE_PROGRESS`` and the ETA even within the throttle interval
            (0.3 s).
        measured : bool
            Whether the time since the previous measured unit counts towards the ETA's
            rate (once the clock runs: :meth:`start_clock`).
        """
        if stage is not None:
            self.stage = stage
        if measured and self._last_tick is not None:
            self._measure(units)
        self.units_done = min(self.units_total, self.units_done + units)
        self._send(force=force)

    def tile_finished(self, *, measured: bool = True) -> None:
        """Count one more tile of the run as done (stacked, failed or skipped by resume).

        Sends ``MASTER_TILE_COUNT_UPDATE`` and advances one unit; the last tile forces
        the report.

        Parameters
        ----------
        measured : bool
            Whether the time since the previous unit counts towards the ETA (False for
            a tile skipped by resume).
        """
        self.tiles_done = min(self.tiles_total, self.tiles_done + 1)
        self._call(f"MASTER_TILE_COUNT_UPDATE:{self.tiles_done}/{self.tiles_total}", None, "INFO")
        self.advance(1, stage="GRID: tile stacking", force=self.tiles_done == self.tiles_total,
                     measured=measured)

    def start_clock(self) -> None:
        """Start timing units of work (the first tile's time counts from here)."""
        self._last_tick = time.monotonic()

    def _measure(self, units: int) -> None:
        """Fold the time since the last measured unit into the EMA of seconds per unit."""
        now = time.monotonic()
        if self._last_tick is not None and units > 0:
            dt = (now - self._last_tick) / units
            self._sec_per_unit = dt if self._sec_per_unit is None else \
                _EMA_ALPHA * dt + (1 - _EMA_ALPHA) * self._sec_per_unit
        self._last_tick = now

    def _eta_seconds(self) -> float | None:
        """Seconds left: the units left (tiles, assembly, final save) at the EMA rate.

        None until a measured unit has finished; at least 1 s while work is left, so
        the GUI never reads 00:00:00 before :meth:`finish`.
        """
        if self._sec_per_unit is None or self.tiles_total == 0:
            return None
        left = self.units_total - self.units_done
        return max(_MIN_ETA_SEC, left * self._sec_per_unit) if left > 0 else 0.0

    def _send(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_sent < _THROTTLE_SEC:
            self._telemetry(force=False)
            return
        self._last_sent = now
        self._call("STAGE_PROGRESS", self.stage, self.units_done, total=self.units_total)
        eta = self._eta_seconds()
        if eta is not None:
            self._call(f"ETA_UPDATE:{format_eta(eta)}", None, "ETA_LEVEL")
        self._telemetry(force=False)

    def sub_progress(self, stage: str, start_units: int, span_units: int) -> Callable[..., None]:
        """Make a progress callback for a sub-step (the assembly) that reports as part of the run.

        Parameters
        ----------
        stage : str
            Stage name reported while the sub-step runs.
        start_units : int
            Units done when the sub-step starts.
        span_units : int
            Units the whole sub-step is worth.

        Returns
        -------
        callable
            ``cb(key, progress, level, **kw)`` in ZeMosaic's protocol: its
            ``STAGE_PROGRESS`` (``level`` done out of ``total=``) advances this run to
            ``start_units + fraction · span_units``; ``[...]`` messages are passed on to
            the run's callback; other keys are dropped.
        """
        def _relay(key: Any, progress: Any = None, level: Any = None, **kw: Any) -> None:
            if key == "STAGE_PROGRESS":
                try:
                    frac = float(level) / float(kw.get("total") or 1)
                except (TypeError, ValueError):
                    return
                target = start_units + int(round(min(max(frac, 0.0), 1.0) * span_units))
                if target > self.units_done:
                    self.advance(target - self.units_done, stage=stage)
            elif isinstance(key, str) and key.startswith("["):
                self._call(key, progress, level, **kw)
        return _relay

    def finish(self) -> None:
        """Normal completion: 100 %, ETA 0, telemetry with every tile done and eta 0."""
        self.tiles_done = self.tiles_total
        self.units_done = self.units_total
        self.stage = "GRID: completed"
        self._call("STAGE_PROGRESS", self.stage, self.units_done, total=self.units_total)
        self._call(f"ETA_UPDATE:{format_eta(0)}", None, "ETA_LEVEL")
        self.set_phase(4, eta_seconds=0.0)
