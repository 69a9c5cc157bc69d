"""A dependency-free progress bar driven by ZeMosaic's ``progress_callback`` protocol.

On a terminal the bar redraws one line with ``\\r``, and log lines (the root logger's
stream handlers on the same stream) are printed above it: the bar's line is blanked,
the log line written, the bar drawn again. Into a file or a pipe no ``\\r`` is written:
a plain line when a stage completes, and at most one every ``plain_interval_sec`` in
between, so a CI log or ``2> run.log`` stays readable.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["ProgressBar"]

_LABEL = 28  # characters of the stage name
_MIN_BAR = 10  # characters of the bar on a narrow terminal, before the label shrinks below _LABEL


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _Above:
    """A stream for log handlers that writes through :meth:`ProgressBar.print_above`."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar

    def write(self, text: str) -> int:
        self.bar.print_above(text, end="")
        return len(text)

    def flush(self) -> None:
        self.bar.stream.flush()


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
        Characters of the bar itself (fewer when the terminal is narrower).
    min_interval_sec : float
        Terminal redraws are throttled to this interval, except the final one.
    plain_interval_sec : float
        Not a terminal: a plain progress line when a stage completes, and at most one
        per this interval while it runs.
    terminal : bool, optional
        Draw the bar (True) or plain lines (False); default: whether ``stream`` is a
        terminal (``isatty``).
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True, width: int = 30,
                 min_interval_sec: float = 0.1, plain_interval_sec: float = 30.0,
                 terminal: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.width = width
        self.min_interval_sec = min_interval_sec
        self.plain_interval_sec = plain_interval_sec
        self.terminal = _is_terminal(self.stream) if terminal is None else terminal
        self._lock = threading.RLock()
        self._last_draw = 0.0
        self._eta = ""
        self._line = ""        # the bar as drawn, to redraw it under a log line
        self._drawn = False    # the bar is on screen, its line not ended
        self._blanked = False  # its line is blank: a log line is being written there
        self._stage: Any = None
        # Handlers are swapped under their own lock, never while holding the bar's: a
        # handler emitting holds its lock and then asks for the bar's (lock order).
        self._handlers_lock = threading.Lock()
        self._handlers: list[tuple[logging.StreamHandler, Any]] | None = None

    def __call__(self, key: Any, progress: Any = None, level: Any = None, **kw: Any) -> None:
        if not self.enabled or not isinstance(key, str):
            return
        if key.startswith("ETA_UPDATE:"):
            self._eta = key.split(":", 1)[1]
            return
        if key != "STAGE_PROGRESS":
            return
        try:
            done, total = float(level), float(kw.get("total"))
        except (TypeError, ValueError):
            return
        if total > 0:
            if self.terminal and self._handlers is None:
                self._attach_logging()
            with self._lock:
                self._update(str(progress), min(max(done / total, 0.0), 1.0), done >= total)

    def _update(self, stage: str, frac: float, final: bool) -> None:
        now = time.monotonic()
        new_stage = stage != self._stage
        self._stage = stage
        if self.terminal:
            if final or now - self._last_draw >= self.min_interval_sec:
                self._last_draw = now
                self._draw(stage, frac, final)
        elif final or (not new_stage and now - self._last_draw >= self.plain_interval_sec):
            self._last_draw = now
            eta = f" (ETA {self._eta})" if self._eta and not final else ""
            self.stream.write(f"{stage}: {frac * 100:5.1f}%{eta}\n")
            self.stream.flush()
        elif new_stage:
            self._last_draw = now  # the interval runs from the stage's start

    def _draw(self, stage: str, frac: float, final: bool) -> None:
        tail = f" {frac * 100:5.1f}%" + (f" ETA {self._eta}" if self._eta and not final else "")
        # One character short of the terminal: a full line would wrap, and \r then
        # returns to the start of the wrapped part only. The label, then the bar, shrink.
        room = shutil.get_terminal_size().columns - 1 - len(tail) - len(" []")
        label = max(8, min(_LABEL, room - _MIN_BAR))
        width = max(_MIN_BAR // 2, min(self.width, room - label))
        filled = int(round(frac * width))
        line = f"{stage[:label]:<{label}} [{'#' * filled}{'-' * (width - filled)}]{tail}"
        # Blanks over what a longer previous line (its ETA) left on screen.
        self.stream.write("\r" + line.ljust(len(self._line)) + ("\n" if final else ""))
        self.stream.flush()
        self._line = line
        self._drawn, self._blanked = not final, False

    def print_above(self, text: str, *, end: str = "\n") -> None:
        """Print text on the stream without breaking the bar.

        On a terminal with the bar drawn, the bar's line is blanked, the text written
        and the bar redrawn below it; otherwise the text is simply written.

        Parameters
        ----------
        text : str
            What to print.
        end : str
            Appended to ``text``, as for ``print``; the bar is redrawn once a line ends.
        """
        with self._lock:
            if self._drawn and not self._blanked:
                self.stream.write("\r" + " " * len(self._line) + "\r")
                self._blanked = True
            self.stream.write(text + end)
            if self._blanked and (text + end).endswith("\n"):
                self.stream.write(self._line)
                self._blanked = False
            self.stream.flush()

    def _attach_logging(self) -> None:
        """Route the root logger's handlers on our stream through :meth:`print_above`."""
        with self._handlers_lock:
            if self._handlers is not None:
                return
            self._handlers = []
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                    handler.setStream(_Above(self))
                    self._handlers.append((handler, self.stream))

    def close(self) -> None:
        """End the current line if a bar is still drawn, and give the log handlers their stream back."""
        with self._handlers_lock:
            for handler, stream in self._handlers or ():
                handler.setStream(stream)
            self._handlers = None
        with self._lock:
            if self.enabled and self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False
