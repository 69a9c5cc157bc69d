"""A daemon thread that keeps telemetry flowing while a run makes no progress.

Progress-driven emissions arrive only when something finishes (a tile, a block): a
long phase (the frame normalisation, a big tile, the assembly) leaves the GUI's
resource monitor without a sample for many seconds. :class:`BackgroundSampler` wakes
when the controller's last emission is ``interval_sec`` old and emits through the
same throttle (:meth:`~.controller.ResourceTelemetryController.maybe_emit_stats`),
so samples come about every ``interval_sec`` and never closer than that, whoever
emits them. Use it through
:meth:`~.controller.ResourceTelemetryController.start_background`; the controller's
``close()`` stops and joins it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from .controller import ResourceTelemetryController

__all__ = ["BackgroundSampler", "STOP_TIMEOUT_SEC"]

logger = logging.getLogger(__name__)

#: How long :meth:`BackgroundSampler.stop` waits for the thread (a callback that hangs).
STOP_TIMEOUT_SEC = 5.0
# Pause after an emission the throttle refused although it was due (a clock race): no spin.
_RETRY_SEC = 0.01


class BackgroundSampler:
    """Emit ``STATS_UPDATE`` every ``interval_sec`` from a daemon thread.

    Parameters
    ----------
    controller : ResourceTelemetryController
        Whose throttle, callback and CSV the samples go through.
    context : callable, optional
        Called (in the sampler's thread, under the controller's lock:
        :meth:`~.controller.ResourceTelemetryController.emit_due`) for the context of
        each background sample; it must be cheap and thread-safe. Returns a mapping (see
        :meth:`~.controller.ResourceTelemetryController.emit_stats`) or None. Default,
        or when it returns None or raises: the context of the controller's latest
        emission request (throttled or not).

    Notes
    -----
    The thread runs the callback, so the callback must accept calls from another
    thread (ZeMosaic's puts events on a queue; the CLI's progress bar holds a lock).
    It is a daemon: it never keeps the interpreter alive, and :meth:`stop` joins it.
    """

    def __init__(self, controller: ResourceTelemetryController,
                 context: Callable[[], Mapping[str, Any] | None] | None = None) -> None:
        self.controller = controller
        self.context = context
        self.emitted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """Whether the thread is running.

        Returns
        -------
        bool
            True between :meth:`start` and the end of :meth:`stop`.
        """
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> BackgroundSampler:
        """Start the thread (once; later calls do nothing).

        Returns
        -------
        BackgroundSampler
            ``self``.
        """
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="zemosaic-xp-telemetry", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_SEC) -> bool:
        """Stop the thread and wait for it; idempotent, callable from any thread.

        Parameters
        ----------
        timeout : float
            Seconds to wait for an emission in progress (its callback) to return.

        Returns
        -------
        bool
            True when the thread has ended (or never started); False if it is still
            in a callback after `timeout` (logged; it ends when that returns).
        """
        self._stop.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("[TELEMETRY] background sampler still in a callback after %.1f s; left to finish",
                           timeout)
            return False
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            wait = self.controller.seconds_until_due()
            if wait is None:  # closed or inactive: nothing more to sample
                return
            if wait > 0:
                self._stop.wait(wait)
                continue
            if self.controller.emit_due(self.context):
                self.emitted += 1
            else:
                self._stop.wait(_RETRY_SEC)
