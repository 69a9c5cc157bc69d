"""A dependency-free progress bar driven by ZeMosaic's ``progress_callback`` protocol."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """Render ``STAGE_PROGRESS`` events as a one-line bar on a terminal stream.

    Use an instance as the ``progress_callback`` of any long-running function:
    ``cb(key, progress, level, **kw)``. ``STAGE_PROGRESS`` (progress = stage name,
    level = units done, ``total=``) moves the bar; ``ETA_UPDATE:HH:MM:SS`` is shown
    beside it; other keys are ignored (they are logged by the library itself).

    Parameters
    ----------
    stream : text stream, optional
        Where to draw (default ``sys.stderr``).
    enabled : bool
        False makes every call a no-op (``--quiet``).
    width : int
        Characters of the bar itself.
    min_interval_sec : float
        Redraws are throttled to this interval, except the final one.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True,
                 width: int = 30, min_interval_sec: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.min_interval_sec = min_interval_sec
        self._last_draw = 0.0
        self._eta = ""
        self._drawn = False

    def __call__(self, key: Any, progress: Any = None, level: Any = None, **kw: Any) -> None:
        if not self.enabled or not isinstance(key, str):
            return
        if key.startswith("ETA_UPDATE:"):
            self._eta = key.split(":", 1)[1]
            return
        if key != "STAGE_PROGRESS":
            return
        total = kw.get("total")
        try:
            done = float(level)
            total = float(total)
        except (TypeError, ValueError):
            return
        if total <= 0:
            return
        now = time.monotonic()
        final = done >= total
        if not final and now - self._last_draw < self.min_interval_sec:
            return
        self._last_draw = now
        frac = min(max(done / total, 0.0), 1.0)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        eta = f" ETA {self._eta}" if self._eta and not final else ""
        line = f"\r{str(progress)[:28]:<28} [{bar}] {frac * 100:5.1f}%{eta}"
        self.stream.write(line)
        if final:
            self.stream.write("\n")
        self.stream.flush()
        self._drawn = not final

    def close(self) -> None:
        """End the current line if a bar is still drawn."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
