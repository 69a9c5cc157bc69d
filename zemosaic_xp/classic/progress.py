"""Progress of a run of several master tiles, as ZeMosaic's GUI reads it.

:func:`~.master_tile.stack_master_tile` reports each tile on its own
(``STAGE_PROGRESS`` of stages ``scan`` then ``stack``, each from 0 to its total). A
run of many tiles (ZeMosaic's Phase 3) needs one bar: :class:`MasterTileRun` gives
each tile a callback (:meth:`MasterTileRun.tile_callback`) that turns those per-tile
stages into units of the whole run, and sends, in ZeMosaic's protocol:

- ``STAGE_PROGRESS`` with progress = ``"Phase 3: master tiles"``, level = units done,
  ``total=`` units: :data:`UNITS_PER_TILE` per tile (the scan is the first
  :data:`SCAN_UNITS` of them, the stack the rest). Tiles may run at once on threads;
  the run's units are the sum of each tile's, and each tile's only grow (a GPU
  retry restarting a tile's ``stack`` stage does not move the bar back), so the bar
  is monotone and ends at 100 % in :meth:`MasterTileRun.finish`;
- ``MASTER_TILE_COUNT_UPDATE:done/total`` when a tile ends;
- ``ETA_UPDATE:HH:MM:SS``: the units left at the run's mean rate so far, at least
  1 s until :meth:`MasterTileRun.finish` sends 00:00:00;
- warnings of the run's :class:`~zemosaic_xp.gpu.GpuPolicy` (retry, CPU fallback,
  GPU disabled) and those logged while :meth:`MasterTileRun.stack` stacks a tile
  (skipped frames, repeated inputs) as level ``"WARN"``;
- ``STATS_UPDATE`` through a :class:`~zemosaic_xp.telemetry.ResourceTelemetryController`
  when one is given (throttled by it, forced at the start and the end), with
  ``phase_index`` 3, ``phase_name`` ``"Phase 3: master tiles"``, ``tiles_done``,
  ``tiles_total``, ``eta_seconds`` and ``use_gpu`` (a tile was stacked on the GPU and the
  GPU is still enabled).

Other keys of the tiles (``phase3_gpu_chunk_summary``, messages) are passed on as
they are. A callback that raises is logged once and never stops the run.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from ..compat.gui_events import callback_level
from ..gpu.policy import GpuPolicy
from ..telemetry import grid_telemetry_context

__all__ = ["MasterTileRun", "UNITS_PER_TILE", "SCAN_UNITS", "STAGE", "PHASE"]

logger = logging.getLogger(__name__)

#: Units of one tile in ``STAGE_PROGRESS``; the scan (pass 1) is the first ``SCAN_UNITS``.
UNITS_PER_TILE = 100
SCAN_UNITS = 20
#: Stage name of the run's ``STAGE_PROGRESS``.
STAGE = "Phase 3: master tiles"
#: Telemetry phase (index, name) of the run.
PHASE = (3, "Phase 3: master tiles")
_THROTTLE_SEC = 0.2
_MIN_ETA_SEC = 1.0
_POLICY_LOGGER = "zemosaic_xp.gpu.policy"


def _eta_text(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _ThreadWarnings(logging.Handler):
    """Hand the warnings this thread logs (skipped frames, repeated inputs) to the GUI.

    The policy's own warnings reach it through ``GpuPolicy.notify`` and are left out.
    """

    def __init__(self, notify: Callable[[str, int], None]) -> None:
        super().__init__(logging.WARNING)
        self.notify = notify
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and record.name != _POLICY_LOGGER:
            self.notify(record.getMessage(), record.levelno)


class MasterTileRun:
    """One bar, one ETA, one GPU policy and one telemetry stream for a run of master tiles.

    Parameters
    ----------
    tiles_total : int
        Tiles of the run (>= 1).
    progress_callback : callable or None
        ZeMosaic's ``cb(key, progress, level, **kw)``.
    telemetry : ResourceTelemetryController, optional
        Emits the run's ``STATS_UPDATE``; None = no telemetry.
    gpu_policy : GpuPolicy, optional
        The run's policy (default ``GpuPolicy("auto")``, mode C): every tile uses it, so
        a GPU disabled after repeated failures stays disabled. Its warnings are sent
        to the callback.

    Attributes
    ----------
    policy : GpuPolicy
        The run's GPU policy.
    tiles_done : int
        Tiles finished (stacked or failed).
    units_done, units_total : int
        The bar's position and end.

    Raises
    ------
    ValueError
        ``tiles_total`` is not a positive integer.
    """

    def __init__(self, tiles_total: int, progress_callback: Callable[..., Any] | None = None, *,
                 telemetry: Any = None, gpu_policy: GpuPolicy | None = None) -> None:
        if isinstance(tiles_total, bool) or not isinstance(tiles_total, int) or tiles_total < 1:
            msg = f"`tiles_total` must be an integer >= 1, got {tiles_total!r}"
            raise ValueError(msg)
        self.tiles_total = tiles_total
        self.callback = progress_callback
        self.telemetry = telemetry
        self.policy = gpu_policy if gpu_policy is not None else GpuPolicy("auto")
        self.policy.notify = self._notify
        self.tiles_done = 0
        self.units_total = tiles_total * UNITS_PER_TILE
        self._tile_units: dict[int, int] = {}
        self._next_slot = 0
        self._lock = threading.RLock()
        self._t0 = time.monotonic()
        self._last_sent = -float("inf")
        self._callback_failed = False
        self._telemetry(force=True)

    # ------------------------------------------------------------------ callback
    def _call(self, key: str, progress: Any = None, level: Any = "INFO", **kw: Any) -> None:
        if self.callback is None:
            return
        try:
            self.callback(key, progress, level, **kw)
        except Exception as exc:  # noqa: BLE001 - a GUI error must not stop the run
            if not self._callback_failed:
                logger.warning("[P3] progress_callback raised %s: %s (ignored)", type(exc).__name__, exc)
                self._callback_failed = True

    def _notify(self, text: str, level: int = logging.WARNING) -> None:
        self._call(text, None, callback_level(level))

    def message(self, text: str, level: int = logging.INFO) -> None:
        """Log a message and send it to the callback at ZeMosaic's level.

        Parameters
        ----------
        text : str
            The message (``[P3] ...``).
        level : int
            Its :mod:`logging` level (a warning reaches the GUI as ``"WARN"``).
        """
        logger.log(level, "%s", text)
        self._notify(text, level)

    @property
    def units_done(self) -> int:
        """Return the units done over the run (the sum of each tile's).

        Returns
        -------
        int
            At most ``units_total``.
        """
        with self._lock:
            return min(self.units_total, sum(self._tile_units.values()))

    # ------------------------------------------------------------------ tiles
    def tile_callback(self) -> Callable[..., None]:
        """Make the callback of the next tile, to pass to ``stack_master_tile``.

        Returns
        -------
        callable
            ``cb(key, progress, level, **kw)``: its ``STAGE_PROGRESS`` of stage
            ``scan`` or ``stack`` advances this tile's share of the run; other keys go
            to the run's callback as they are.
        """
        with self._lock:
            slot = self._next_slot
            self._next_slot += 1
            self._tile_units[slot] = 0

        def _relay(key: Any, progress: Any = None, level: Any = None, **kw: Any) -> None:
            if key == "STAGE_PROGRESS" and progress in ("scan", "stack"):
                try:
                    frac = min(max(float(level) / float(kw.get("total") or 1), 0.0), 1.0)
                except (TypeError, ValueError):
                    return
                start, span = (0, SCAN_UNITS) if progress == "scan" else (SCAN_UNITS, UNITS_PER_TILE - SCAN_UNITS)
                # Short of the whole tile: the last unit is the tile's end (tile_finished).
                units = min(UNITS_PER_TILE - 1, start + int(frac * span))
                with self._lock:
                    if units > self._tile_units.get(slot, 0):
                        self._tile_units[slot] = units
                        self._send(force=False)
            else:
                self._call(key, progress, level, **kw)

        _relay.slot = slot  # type: ignore[attr-defined]
        return _relay

    def tile_finished(self, callback: Callable[..., None] | None = None) -> None:
        """Count a tile as done (stacked or failed): ``MASTER_TILE_COUNT_UPDATE`` and its full share.

        Parameters
        ----------
        callback : callable, optional
            The tile's :meth:`tile_callback`; its share becomes whole. Without it, the
            tile that is furthest along.
        """
        with self._lock:
            slot = getattr(callback, "slot", None)
            if slot is None:
                open_slots = [s for s, u in self._tile_units.items() if u < UNITS_PER_TILE]
                slot = max(open_slots, key=lambda s: self._tile_units[s]) if open_slots else self._next_slot
                if slot == self._next_slot:
                    self._next_slot += 1
            self._tile_units[slot] = UNITS_PER_TILE
            self.tiles_done = min(self.tiles_total, self.tiles_done + 1)
            self._call(f"MASTER_TILE_COUNT_UPDATE:{self.tiles_done}/{self.tiles_total}", None, "INFO")
            self._send(force=True)

    def stack(self, inputs: Any, config: Any = None, **kwargs: Any) -> Any:
        """Stack one tile of the run with ``stack_master_tile`` and count it.

        Parameters
        ----------
        inputs : sequence of paths or arrays
            As :func:`~.master_tile.stack_master_tile`.
        config : StackConfig, optional
            As :func:`~.master_tile.stack_master_tile`.
        **kwargs
            Other keywords of :func:`~.master_tile.stack_master_tile` (not
            ``gpu_policy``, ``backend`` or ``progress_callback``: the run's).

        Returns
        -------
        MasterTileResult
            The tile.

        Raises
        ------
        Exception
            The tile's error, after a ``[P3]`` error message to the callback; the
            tile counts as done.

        Notes
        -----
        Warnings logged while the tile is stacked, in this thread (frames skipped
        for having no finite pixel, inputs listed twice), are also sent to the
        callback as ``"WARN"``.
        """
        from .master_tile import stack_master_tile

        relay = self.tile_callback()
        label = kwargs.get("tile_id", relay.slot + 1)  # type: ignore[attr-defined]
        error = None
        capture = _ThreadWarnings(self._notify)
        package = logging.getLogger("zemosaic_xp")
        package.addHandler(capture)
        try:
            return stack_master_tile(inputs, config, gpu_policy=self.policy, progress_callback=relay, **kwargs)
        except Exception as exc:
            error = exc
            raise
        finally:
            package.removeHandler(capture)
            if error is not None:
                self.message(f"[P3] master tile {label} failed: {type(error).__name__}: {error}", logging.ERROR)
            self.tile_finished(relay)

    # ------------------------------------------------------------------ reports
    def _eta_seconds(self) -> float | None:
        done = self.units_done
        if done <= 0:
            return None
        left = self.units_total - done
        if left <= 0:
            return 0.0
        rate = (time.monotonic() - self._t0) / done
        return max(_MIN_ETA_SEC, left * rate)

    def _send(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_sent < _THROTTLE_SEC:
            self._telemetry(force=False)
            return
        self._last_sent = now
        self._call("STAGE_PROGRESS", STAGE, self.units_done, total=self.units_total)
        eta = self._eta_seconds()
        if eta is not None:
            self._call(f"ETA_UPDATE:{_eta_text(eta)}", None, "ETA_LEVEL")
        self._telemetry(force=False)

    def _telemetry(self, *, force: bool, eta_seconds: float | None = None) -> None:
        if self.telemetry is None:
            return
        eta = self._eta_seconds() if eta_seconds is None else eta_seconds
        ctx = grid_telemetry_context(PHASE[0], PHASE[1], self.tiles_done, self.tiles_total, eta_seconds=eta,
                                     extra={"use_gpu": self._gpu_in_use()})
        if force:
            self.telemetry.emit_stats(ctx, force=True)
        else:
            self.telemetry.maybe_emit_stats(ctx)

    def _gpu_in_use(self) -> bool:
        # From the policy's counters: asking it for its GPU would run the health check.
        return self.policy.units_gpu > 0 and not self.policy.hard_disabled

    def finish(self) -> None:
        """End of the run: 100 %, ETA 00:00:00, telemetry with every tile done and eta 0."""
        with self._lock:
            for slot in list(self._tile_units):
                self._tile_units[slot] = UNITS_PER_TILE
            missing = self.tiles_total - len(self._tile_units)
            for _ in range(max(0, missing)):
                self._tile_units[self._next_slot] = UNITS_PER_TILE
                self._next_slot += 1
            self.tiles_done = self.tiles_total
            self._call("STAGE_PROGRESS", STAGE, self.units_total, total=self.units_total)
            self._call(f"ETA_UPDATE:{_eta_text(0)}", None, "ETA_LEVEL")
            self._telemetry(force=True, eta_seconds=0.0)
