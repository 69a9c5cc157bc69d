"""Machine-wide CPU use between two telemetry samples, never a false 0 %.

``psutil.cpu_percent(interval=None)`` compares with the previous call *of the same
thread* and returns 0.0 when that call was less than one clock tick ago (10 ms on
Linux) or never happened. A run's first sample, the back-to-back samples of a phase
change, and the first sample taken by a background thread all read 0.0 that way,
although the machine is busy. :class:`CpuMeter` keeps its own snapshot of
``psutil.cpu_times()`` instead, shared by every thread, and never reports a window
shorter than ``min_window_sec``: a reading that comes too soon repeats the previous
value, and the very first one waits for the window to fill.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

__all__ = ["CpuMeter", "MIN_WINDOW_SEC", "busy_percent"]

#: Shortest window a CPU percentage is measured over: ten ticks of Linux's 100 Hz clock.
MIN_WINDOW_SEC = 0.1


class CpuMeter:
    """CPU percentage of the whole machine since the previous reading.

    Parameters
    ----------
    min_window_sec : float
        Shortest measuring window, in seconds (default 0.1 s).
    clock : callable
        Monotonic clock in seconds (tests pass a fake).
    sleep : callable
        ``sleep(seconds)``, used once to fill the first window (tests pass a fake).

    Notes
    -----
    Thread-safe. The percentage is psutil's: busy time (everything but ``idle`` and
    ``iowait``, guest time counted once) over total time, summed over all CPUs, in
    [0, 100]. Its cost is one ``psutil.cpu_times()`` call (a read of ``/proc/stat``),
    plus, once, a wait of at most ``min_window_sec`` for the first reading.
    """

    def __init__(self, min_window_sec: float = MIN_WINDOW_SEC, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.min_window_sec = float(min_window_sec)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._start: tuple[Any, float] | None = None  # (cpu_times, clock) where the window opened
        self._value: float | None = None

    def prime(self, psutil: Any) -> None:
        """Open the first window now, unless one is open.

        Parameters
        ----------
        psutil : module
            The ``psutil`` module (or a stand-in with ``cpu_times()``).
        """
        with self._lock:
            if self._start is None:
                self._start = (psutil.cpu_times(), self._clock())

    def read(self, psutil: Any) -> float:
        """CPU percentage since the previous reading (or since :meth:`prime`).

        Parameters
        ----------
        psutil : module
            The ``psutil`` module (or a stand-in with ``cpu_times()``).

        Returns
        -------
        float
            Percent of all CPUs, in [0, 100]. A reading less than ``min_window_sec``
            after the previous one returns the previous value; the first reading
            waits until ``min_window_sec`` has passed since :meth:`prime` (or since
            this call, without one).
        """
        with self._lock:
            if self._start is None:
                self._start = (psutil.cpu_times(), self._clock())
            elapsed = self._clock() - self._start[1]
            if elapsed < self.min_window_sec:
                if self._value is not None:
                    return self._value  # too short to measure: the window stays open
                self._sleep(self.min_window_sec - elapsed)
            times, now = psutil.cpu_times(), self._clock()
            value = busy_percent(self._start[0], times)
            if value is None:  # no tick counted (a coarse clock): keep the window open
                return 0.0 if self._value is None else self._value
            self._start, self._value = (times, now), value
            return value


def busy_percent(before: Any, after: Any) -> float | None:
    """Busy share of the CPU time between two ``psutil.cpu_times()`` readings.

    Parameters
    ----------
    before, after : namedtuple
        ``psutil.cpu_times()`` results (fields in seconds, summed over CPUs).

    Returns
    -------
    float or None
        Percent in [0, 100]; None when no CPU time elapsed between the readings.
    """
    total0, busy0 = _total_and_busy(before)
    total1, busy1 = _total_and_busy(after)
    d_total = total1 - total0
    if d_total <= 0:
        return None
    return min(100.0, max(0.0, 100.0 * (busy1 - busy0) / d_total))


def _total_and_busy(times: Any) -> tuple[float, float]:
    fields = times._asdict()
    # Linux counts guest time inside user/nice too: psutil subtracts it once, so do we.
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    idle = fields.get("idle", 0.0) + fields.get("iowait", 0.0)
    return total, total - idle
